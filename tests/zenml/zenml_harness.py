"""Machinery shared by the ZenML end-to-end tests: clean environments, driver processes, servers, backends.

Every ZenML process (a `Client` driven by ``zenml_driver.py``, or a ZenML server under uvicorn) starts from
`clean_env`, so nothing from the developer's shell (ZenML, multicloud-store or cloud variables, proxies) leaks in,
and is told everything by environment variables, the way a deployment is.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from multicloud_store.store import SecretsStore

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "zenml_driver.py"
CLASS_PATH = "multicloud_store.integrations.zenml.MultiCloudSecretsStore"
PREFIX = "MULTICLOUD_STORE_"

# The emulated clouds: moto accepts any key; the GCP emulator any project.
AWS_REGION = "us-east-1"
AWS_KEY_ID = "testing"
AWS_SECRET_KEY = "testing-secret-key"
GCP_PROJECT = "zenml-tests"

# No test here asserts how long an operation took (that depends on the machine's load; speed is measured by
# benchmarks/run.py): a failure that hangs or retries without end fails through `ZenmlProcess.call`'s bounded
# wait instead.

# Waiting for a server: poll until it answers, within a deadline generous enough for a loaded 2-core machine;
# one attempt may block this long before the next (a slow answer is still an answer).
READY_DEADLINE = 180.0
ATTEMPT_TIMEOUT = 30.0


def new_sentinel(label: str = "value") -> str:
    """Return a unique, recognisable secret value to look for in files (long enough to be unique in base64)."""
    return f"sentinel-{label}-{uuid.uuid4().hex}{uuid.uuid4().hex}"


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Return an environment for a ZenML process with its own config directory and SQLite database in ``workdir``.

    Args:
        workdir: The scenario's directory; ``config/`` and ``zenml.db`` live there.
        **extra: Variables to add.

    Returns:
        The environment.
    """
    dropped = ("ZENML_", PREFIX, "AWS_", "GOOGLE_", "AZURE_", "GRPC_")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "no_grpc_proxy"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k.lower() not in proxies}
    empty = workdir / "empty-aws-config"
    empty.touch()
    env.update(
        ZENML_CONFIG_PATH=str(workdir / "config"),
        ZENML_STORE_URL=f"sqlite:///{workdir / 'zenml.db'}",
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        ZENML_LOGGING_COLORS_DISABLED="true",
        # No developer AWS profile, no instance-metadata probe: every credential is given explicitly.
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# -- backends -------------------------------------------------------------------------------------------------


@dataclass
class Backend:
    """One configured backend of multicloud-store, as a ZenML deployment would select it.

    Attributes:
        label: The test id (``gcp-rest``).
        kind: The backend name (``gcp``).
        env: Its ``MULTICLOUD_STORE_*`` variables, ``MULTICLOUD_STORE_BACKEND`` included.
        raw_names: Lists the names that exist in the service itself, read without multicloud-store.
        raw_delete: Deletes a name in the service itself, the way an operator would, behind everyone's back.
    """

    label: str
    kind: str
    env: dict[str, str]
    raw_names: Callable[[], set[str]]
    raw_delete: Callable[[str], None]
    _stores: dict[str, SecretsStore] = field(default_factory=dict, repr=False)

    def store(self, deployment_id: str) -> SecretsStore:
        """Our own store on this backend, owned by ``deployment_id`` (the ZenML server id), to look behind ZenML."""
        if deployment_id not in self._stores:
            self._stores[deployment_id] = SecretsStore.from_env(
                {**self.env, f"{PREFIX}DEPLOYMENT_ID": deployment_id}
            )
        return self._stores[deployment_id]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def plugin_env(
    backend: Backend, *, via: Literal["zenml", "mcs"] = "zenml", prefix: str = "ZENML_SECRETS_STORE_"
) -> dict[str, str]:
    """Return the variables that make ZenML use our plug-in on ``backend``.

    Args:
        backend: The backend.
        via: Pass the backend options as ``ZENML_SECRETS_STORE_<OPTION>`` (``zenml``) or as the
            ``MULTICLOUD_STORE_<OPTION>`` variables (``mcs``).
        prefix: ``ZENML_SECRETS_STORE_`` for the primary store, ``ZENML_BACKUP_SECRETS_STORE_`` for the backup.

    Returns:
        The variables.
    """
    env = {f"{prefix}TYPE": "custom", f"{prefix}CLASS_PATH": CLASS_PATH, f"{prefix}BACKEND": backend.kind}
    for key, value in backend.env.items():
        if key == f"{PREFIX}BACKEND":
            continue
        env[f"{prefix}{key[len(PREFIX) :]}" if via == "zenml" else key] = value
    return env


def local_raw(path: Path) -> tuple[Callable[[], set[str]], Callable[[str], None]]:
    """Raw access to the local backend's SQLite file."""

    def names() -> set[str]:
        if not path.exists():
            return set()
        with sqlite3.connect(path) as db:
            return {row[0] for row in db.execute("SELECT name FROM secrets")}

    def delete(name: str) -> None:
        with sqlite3.connect(path) as db:
            assert db.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount == 1

    return names, delete


# -- looking for values where they must not be ------------------------------------------------------------------


def _needles(value: str) -> list[bytes]:
    """The value as bytes, and as it looks inside base64 at each of the three alignments (ZenML's SQL store)."""
    raw = value.encode()
    needles = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = -(-shift // 3) * 4  # the first group made of value bytes only
        end = ((shift + len(raw)) // 3) * 4
        needles.append(encoded[start:end])
    return needles


def files_containing(root: Path, value: str) -> list[str]:
    """Return the files under ``root`` that hold ``value``, plainly or base64-encoded.

    Args:
        root: A directory (a ZenML config directory, database, logs).
        value: The sentinel.

    Returns:
        Relative paths, sorted.
    """
    needles = _needles(value)
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if any(needle in data for needle in needles):
            hits.append(str(path.relative_to(root)))
    return hits


def zenml_secret_column(db_path: Path, secret_id: str) -> bytes | None:
    """Return the ``values`` column of a row of ZenML's ``secret`` table (None when NULL)."""
    with sqlite3.connect(db_path) as db:
        row = db.execute('SELECT "values" FROM secret WHERE id = ?', (uuid.UUID(secret_id).hex,)).fetchone()
    assert row is not None, f"no row for secret {secret_id} in ZenML's database"
    return row[0]


def zenml_secret_exists(db_path: Path, secret_id: str) -> bool:
    """Tell whether ZenML's ``secret`` table has a row for this id."""
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT 1 FROM secret WHERE id = ?", (uuid.UUID(secret_id).hex,)).fetchone()
    return row is not None


def zenml_sql_values(db_path: Path, secret_id: str) -> dict[str, str] | None:
    """Decode the values ZenML's own SQL secrets store keeps for a secret (base64 of JSON, no encryption key)."""
    column = zenml_secret_column(db_path, secret_id)
    return None if column is None else dict(json.loads(base64.b64decode(column)))


def lose_zenml_sql_values(db_path: Path, secret_id: str) -> None:
    """Blank a secret's values in ZenML's SQL secrets store, as its own ``delete_secret_values`` does."""
    with sqlite3.connect(db_path) as db:
        cursor = db.execute('UPDATE secret SET "values" = NULL WHERE id = ?', (uuid.UUID(secret_id).hex,))
        assert cursor.rowcount == 1


def zenml_connector_secret_id(db_path: Path, connector_name: str) -> str:
    """Return the id of the (internal) secret that holds a service connector's credentials."""
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT secret_id FROM service_connector WHERE name = ?", (connector_name,)
        ).fetchone()
    assert row is not None and row[0], f"service connector {connector_name!r} has no secret"
    return str(uuid.UUID(row[0]))


# -- processes ------------------------------------------------------------------------------------------------


def log_tail(path: Path, lines: int = 60) -> str:
    """Return the end of a process log, for failure messages (ZenML logs ids and errors, never secret values)."""
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class Failure(AssertionError):
    """A driver command that failed when it was expected to succeed."""


@dataclass
class Reply:
    """One answer of the driver."""

    ok: bool
    seconds: float
    result: Any = None
    error: str | None = None
    kinds: list[str] = field(default_factory=list)
    message: str = ""

    def is_a(self, name: str) -> bool:
        """Tell whether the error is an instance of the class called ``name`` (by its MRO)."""
        return name in self.kinds


class ZenmlProcess:
    """``zenml_driver.py`` in a fresh process: ZenML's `Client`, configured by the environment alone.

    Args:
        env: The complete environment.
        workdir: Where it runs and logs.
        name: Names the log file.
    """

    def __init__(self, env: Mapping[str, str], workdir: Path, name: str = "driver") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self._answers: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(env),
            cwd=workdir,
            text=True,
            encoding="utf-8",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def call(self, op: str, *, timeout: float = READY_DEADLINE, **args: Any) -> Reply:
        """Send one command and wait for its answer.

        Raises:
            AssertionError: No answer within ``timeout`` seconds, or the process died.
        """
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise AssertionError(f"the ZenML driver is gone:\n{log_tail(self.log_path)}") from None
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"ZenML did not answer {op!r} within {timeout} s:\n{log_tail(self.log_path)}"
            ) from None
        if line is None:
            raise AssertionError(f"the ZenML driver exited during {op!r}:\n{log_tail(self.log_path)}")
        return Reply(**json.loads(line))

    def run(self, op: str, **args: Any) -> Any:
        """Run a command that must succeed and return its result."""
        reply = self.call(op, **args)
        if not reply.ok:
            raise Failure(f"{op} failed with {reply.error}: {reply.message}\n{log_tail(self.log_path)}")
        return reply.result

    def fail(self, op: str, **args: Any) -> Reply:
        """Run a command that must fail and return the answer."""
        reply = self.call(op, **args)
        assert not reply.ok, f"{op} succeeded but was expected to fail"
        return reply

    def close(self) -> None:
        """Ask the driver to exit; kill it if it does not."""
        if self.proc.poll() is None:
            # A driver that does not answer is killed below.
            with suppress(AssertionError):
                self.call("exit", timeout=30)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._reader.join(timeout=60)  # ends at the output's end: the process is gone by now
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@contextmanager
def zenml_process(env: Mapping[str, str], workdir: Path, name: str = "driver") -> Iterator[ZenmlProcess]:
    """Run a `ZenmlProcess` for the duration of a block."""
    process = ZenmlProcess(env, workdir, name)
    try:
        yield process
    finally:
        process.close()


class ZenmlServer:
    """A real ZenML server (FastAPI under uvicorn) on 127.0.0.1, with a local SQLite database.

    Authentication is ``NO_AUTH`` with the server auto-activated: every request acts as the ``default`` user,
    as in ZenML's own local server (``zenml login --local``), so a test client logs in as ``default`` without a
    password.
    """

    def __init__(self, env: Mapping[str, str], workdir: Path, name: str = "server") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        full_env = {
            **env,
            "ZENML_SERVER_AUTH_SCHEME": "NO_AUTH",
            "ZENML_SERVER_AUTO_ACTIVATE": "true",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "zenml.zen_server.zen_server_api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=workdir,
        )

    def wait_healthy(self, timeout: float = READY_DEADLINE) -> None:
        """Wait until the server is ready: ``/health`` answers, then ``/api/v1/info`` (the first API call).

        Both are polled until one shared, generous deadline: right after ``/health`` answers, the first API
        call can still take long on a loaded machine (it once took over 10 s at load 20 on 2 cores).

        Raises:
            AssertionError: The server exited or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        self._get("/health", deadline)  # answers a plain "ok", not JSON
        self._get("/api/v1/info", deadline)

    def _get(self, path: str, deadline: float) -> bytes:
        """GET ``path`` until it answers 200 or ``deadline`` (a `time.monotonic` value) passes; return its body.

        Each attempt may take what is left of the deadline (at most `ATTEMPT_TIMEOUT`): a slow answer is waited
        for, a refused connection or an error status is retried after a short pause.
        """
        last: object = None
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the ZenML server exited with {self.proc.returncode}:\n{log_tail(self.log_path)}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"the ZenML server did not answer GET {path} in time (last: {last!r}):\n"
                    f"{log_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(
                    f"{self.url}{path}", timeout=min(ATTEMPT_TIMEOUT, left)
                ) as response:
                    if response.status == 200:
                        return bytes(response.read())
                    last = response.status
            except OSError as exc:  # refused, reset, timed out, an HTTP error status
                last = exc
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def info(self) -> dict[str, Any]:
        """Return ``GET /api/v1/info`` (public: no login needed), polled until `READY_DEADLINE`."""
        return dict(json.loads(self._get("/api/v1/info", time.monotonic() + READY_DEADLINE)))

    def client_env(self, workdir: Path) -> dict[str, str]:
        """The environment of a `Client` that talks to this server over REST."""
        env = clean_env(workdir)
        env.update(ZENML_STORE_URL=self.url, ZENML_STORE_USERNAME="default", ZENML_STORE_PASSWORD="")
        return env

    def wait_exit(self, timeout: float) -> int:
        """Wait for the server process to exit on its own and return its exit code."""
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        self._log.close()


@contextmanager
def zenml_server(env: Mapping[str, str], workdir: Path) -> Iterator[ZenmlServer]:
    """Run a healthy `ZenmlServer` for the duration of a block."""
    server = ZenmlServer(env, workdir)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def cli_command() -> list[str]:
    """The ``multicloud-store`` command of this environment (the console script when installed)."""
    script = shutil.which("multicloud-store", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "multicloud_store.cli"]


def write_env_file(path: Path, variables: Mapping[str, str]) -> Path:
    """Write ``KEY=VALUE`` lines, as ``--env-file`` and ``--source-env-file`` read them."""
    path.write_text("".join(f"{key}={value}\n" for key, value in variables.items()), encoding="utf-8")
    return path


def run_cli(
    *args: str, cwd: Path, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``multicloud-store ARGS`` with a clean environment: everything it needs comes from env files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((PREFIX, "ZENML_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return subprocess.run(
        [*cli_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
