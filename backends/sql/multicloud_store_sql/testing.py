"""Throwaway database servers for tests, a fault injector, and the worker of the multi-replica test.

`PostgresServer` runs Debian's PostgreSQL (``initdb`` and ``pg_ctl``, as the ``postgres`` user when we are
root, since they refuse root) and `MariaDBServer` runs MariaDB (``mariadb-install-db`` and ``mariadbd``, installed
with apt when missing), each on 127.0.0.1 with a free port and a data directory of its own that is removed on
`stop`. Readiness is polled with a generous deadline, never waited out with a fixed sleep.

Nothing here is imported by the driver; it imports pytest nowhere, so other projects can use the servers too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "ServerStartError",
    "SqlFaults",
    "SqlLostAnswers",
    "free_port",
    "pg_dump",
    "replica_worker",
    "running",
    "unique_table_name",
]

READY_DEADLINE = 120.0  # seconds: a loaded 2-core CI machine can be slow to start a server
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ServerStartError(RuntimeError):
    """A test server could not be installed or started; the message says why and what to set instead."""


def unique_table_name() -> str:
    """Return a table name of its own, so a test starts from an empty table on a shared database.

    Returns:
        ``t_`` and 12 hex digits.
    """
    return "t_" + secrets.token_hex(6)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Returns:
        The port.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _run(command: list[str], *, timeout: float = READY_DEADLINE, what: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed binaries and our own arguments
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerStartError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise ServerStartError(f"{what} failed (exit {done.returncode}): {tail}")
    return done.stdout


def _wait_until(probe: Any, deadline: float, what: str, log: Path | None = None) -> None:
    last: BaseException | None = None
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except Exception as exc:  # any failure means "not yet"
            last = exc
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise ServerStartError(f"{what} was not ready within {READY_DEADLINE:.0f} s ({last!r}). Log:\n{tail}")


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, with password authentication over TCP.

    Args:
        port: The port; default: a free one.
        password: The ``postgres`` superuser's password; default: random.
    """

    user = "postgres"

    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password or "pw-" + secrets.token_hex(8)
        self.base = Path(tempfile.mkdtemp(prefix="mcs-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._as_postgres = os.geteuid() == 0

    def _bin(self, name: str) -> str:
        found = shutil.which(name)
        if found is None and (PG_BIN / name).exists():
            found = str(PG_BIN / name)
        if found is None:
            raise ServerStartError(
                f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql-15); or set "
                "MULTICLOUD_STORE_TEST_POSTGRES_URL to a server the tests may use"
            )
        return found

    def _command(self, *args: str) -> list[str]:
        command = [self._bin(args[0]), *args[1:]]
        return ["runuser", "-u", self.user, "--", *command] if self._as_postgres else command

    def url(self, database: str = "postgres", *, user: str | None = None, password: str | None = None) -> str:
        """Return a SQLAlchemy URL for a database of this server.

        Args:
            database: The database name.
            user: The user (default: the superuser).
            password: Its password (default: the superuser's).

        Returns:
            ``postgresql+psycopg://user:password@127.0.0.1:port/database``.
        """
        return f"postgresql+psycopg://{user or self.user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        """Create the cluster (first time) and start the server; return when it accepts logins.

        Returns:
            This server.

        Raises:
            ServerStartError: It cannot be created or started.
        """
        if self._as_postgres:
            try:
                owner = pwd.getpwnam(self.user)
            except KeyError:
                raise ServerStartError(
                    "running as root, but there is no 'postgres' user to run PostgreSQL as"
                ) from None
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        if not self.data.exists():
            password_file = self.base / "pwfile"
            password_file.write_text(self.password + "\n")
            if self._as_postgres:
                os.chown(password_file, owner.pw_uid, owner.pw_gid)
            _run(
                self._command(
                    "initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={password_file}",
                    "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync",
                ),
                what="initdb",
            )  # fmt: skip
            password_file.unlink()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.base} -c fsync=off -c synchronous_commit=off -c max_connections=200"
        _run(
            self._command(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start"
            ),
            timeout=READY_DEADLINE + 10,
            what="pg_ctl start",
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        def probe() -> None:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname="postgres",
                connect_timeout=5,
            ) as connection:  # fmt: skip
                connection.execute("SELECT 1")

        _wait_until(probe, time.monotonic() + READY_DEADLINE, "PostgreSQL", self.log)

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown) and, unless told otherwise, remove its data directory."""
        if self.data.exists():
            with contextlib.suppress(ServerStartError):
                _run(
                    self._command("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"),
                    what="pg_ctl stop",
                )
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        """Restart the server (every open connection is cut) and return when it accepts logins again."""
        self.stop(remove=False)
        self.start()

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run SQL as the superuser (autocommit) and return the rows, if any.

        Args:
            sql: One statement.
            database: The database.

        Returns:
            The rows.
        """
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=database,
            autocommit=True,
        ) as connection:  # fmt: skip
            cursor = connection.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its URL (as the superuser).

        Args:
            name: Its name; default: random.

        Returns:
            The URL.
        """
        name = name or "mcs_" + secrets.token_hex(6)
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def dump(self, database: str) -> str:
        """Return ``pg_dump`` of a database (schema and data, as SQL text).

        Args:
            database: The database.

        Returns:
            The dump.
        """
        return pg_dump(self.url(database))


def pg_dump(url: str) -> str:
    """Dump a PostgreSQL database named by a SQLAlchemy URL with ``pg_dump``.

    Args:
        url: ``postgresql+psycopg://...``.

    Returns:
        The SQL text.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    binary = shutil.which("pg_dump") or str(PG_BIN / "pg_dump")
    environment = {**os.environ, "PGPASSWORD": parsed.password or ""}
    done = subprocess.run(  # noqa: S603 - fixed binaries and our own arguments
        [binary, "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "",
         "--no-password", parsed.database or ""],
        capture_output=True, text=True, timeout=READY_DEADLINE, env=environment, check=True,
    )  # fmt: skip
    return done.stdout


class MariaDBServer:
    """A throwaway MariaDB server on 127.0.0.1, with a password user ``mcs`` owning a database ``mcs``.

    Args:
        port: The port; default: a free one.
        install: Install ``mariadb-server`` with apt-get when ``mariadbd`` is missing (CI machines are fresh).
    """

    user = "mcs"
    database = "mcs"

    def __init__(self, port: int | None = None, *, install: bool = True) -> None:
        self.port = port or free_port()
        self.password = "pw-" + secrets.token_hex(8)
        self.base = Path(tempfile.mkdtemp(prefix="mcs-maria-"))
        self.data = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "server.log"
        self.install = install
        self._process: subprocess.Popen[bytes] | None = None
        self._initialised = False

    @staticmethod
    def _find(name: str) -> str | None:
        return shutil.which(name) or next(
            (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
        )

    def _ensure_installed(self) -> None:
        if self._find("mariadbd") and self._find("mariadb-install-db"):
            return
        if not self.install:
            raise ServerStartError("mariadbd is not installed; or set MULTICLOUD_STORE_TEST_MYSQL_URL")
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise ServerStartError(
                "mariadbd is not installed and cannot be installed here (needs root and apt-get): "
                "apt-get install mariadb-server, or set MULTICLOUD_STORE_TEST_MYSQL_URL"
            )
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=600"],
            ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600", "mariadb-server"],
        ):
            done = subprocess.run(  # noqa: S603 - fixed binaries and our own arguments
                command, capture_output=True, text=True, timeout=900, env=environment, check=False
            )
            if done.returncode != 0:
                raise ServerStartError(f"{' '.join(command)} failed: {(done.stderr or done.stdout)[-2000:]}")
        if not self._find("mariadbd"):
            raise ServerStartError("apt-get installed mariadb-server, but mariadbd is still not found")

    def url(
        self, database: str | None = None, *, user: str | None = None, password: str | None = None
    ) -> str:
        """Return a SQLAlchemy URL (PyMySQL) for a database of this server.

        Args:
            database: The database (default ``mcs``).
            user: The user (default ``mcs``, which may do anything on every database).
            password: Its password.

        Returns:
            ``mysql+pymysql://user:password@127.0.0.1:port/database``.
        """
        return (
            f"mysql+pymysql://{user or self.user}:{password or self.password}@127.0.0.1:{self.port}/"
            f"{database or self.database}"
        )

    def start(self) -> MariaDBServer:
        """Install (if needed), initialise (first time) and start the server; return when it accepts logins.

        Returns:
            This server.

        Raises:
            ServerStartError: It cannot be installed or started.
        """
        self._ensure_installed()
        if not self.data.exists():
            _run(
                [self._find("mariadb-install-db") or "mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                 "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"],
                what="mariadb-install-db",
            )  # fmt: skip
        log = self.log.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - fixed binaries and our own arguments
            [
                self._find("mariadbd") or "mariadbd", "--no-defaults", "--user=root", f"--datadir={self.data}",
                "--bind-address=127.0.0.1", f"--port={self.port}", f"--socket={self.socket}",
                f"--pid-file={self.base / 'mariadbd.pid'}", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve", "--max-connections=300",
                f"--log-error={self.log}",
            ],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + READY_DEADLINE

        def probe() -> None:
            if self._process is not None and self._process.poll() is not None:
                raise ServerStartError(f"mariadbd exited with {self._process.returncode}")
            self.execute("SELECT 1", database=None)

        try:
            _wait_until(probe, deadline, "MariaDB", self.log)
        except ServerStartError:
            self.stop(remove=False)
            raise
        if not self._initialised:
            self.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}", database=None)
            self.execute(
                f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'",
                database=None,
            )
            self.execute(
                f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1' WITH GRANT OPTION", database=None
            )
            self._initialised = True
        return self

    def execute(self, sql: str, database: str | None = "mcs") -> list[tuple[Any, ...]]:
        """Run SQL as root over the server's socket (autocommit) and return the rows, if any.

        Args:
            sql: One statement.
            database: The database, or None.

        Returns:
            The rows.
        """
        import pymysql  # type: ignore[import-untyped,unused-ignore]

        connection = pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True, connect_timeout=5
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its URL (as ``mcs``).

        Args:
            name: Its name; default: random.

        Returns:
            The URL.
        """
        name = name or "mcs_" + secrets.token_hex(6)
        self.execute(f"CREATE DATABASE {name}", database=None)
        return self.url(name)

    def dump(self, database: str | None = None) -> str:
        """Return ``mariadb-dump`` of a database (schema and data, as SQL text).

        Args:
            database: The database (default ``mcs``).

        Returns:
            The dump.
        """
        binary = self._find("mariadb-dump") or "mariadb-dump"
        done = subprocess.run(  # noqa: S603 - fixed binaries and our own arguments
            [binary, f"--socket={self.socket}", "-u", "root", "--hex-blob", database or self.database],
            capture_output=True, text=True, timeout=READY_DEADLINE, check=True,
        )  # fmt: skip
        return done.stdout

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server and, unless told otherwise, remove its data directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=READY_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        """Restart the server (every open connection is cut) and return when it accepts logins again."""
        self.stop(remove=False)
        self.start()


class SqlFaults:
    """A `multicloud_store.testing.FaultInjector` for SQL engines: raises the database driver's own exceptions.

    Attached to an engine, it raises, just before a statement reaches the driver's cursor, the exception the
    DBAPI driver raises when the server is unreachable or refuses a grant (psycopg's ``OperationalError`` and
    ``InsufficientPrivilege``, PyMySQL's errors 2003 and 1142, sqlite3's "readonly database"). SQLAlchemy wraps
    it exactly as it wraps a real one, so the driver's whole error path runs.

    Attributes:
        raised: How many statements it failed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mode: str | None = None
        self._remaining: int | None = None
        self._custom: BaseException | None = None
        self.raised = 0

    def attach(self, engine: Any) -> None:
        """Hook into an engine's ``before_cursor_execute`` event."""
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", self._before)

    def detach(self, engine: Any) -> None:
        """Remove the hook again."""
        from sqlalchemy import event

        event.remove(engine, "before_cursor_execute", self._before)

    def unavailable(self) -> None:
        """Every statement fails as if the server were unreachable, until `clear`."""
        self._set("unavailable")

    def permission_denied(self) -> None:
        """Every statement fails as if a grant were missing, until `clear`."""
        self._set("denied")

    def raise_exception(self, exc: BaseException, times: int | None = None) -> None:
        """Raise this DBAPI exception on the next ``times`` statements (every one when None)."""
        self._set("custom", times)
        self._custom = exc

    def clear(self) -> None:
        """Stop failing."""
        self._set(None)

    def _set(self, mode: str | None, times: int | None = None) -> None:
        with self._lock:
            self._mode, self._remaining, self._custom = mode, times, None

    def _before(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        with self._lock:
            mode = self._mode
            if mode is None:
                return
            if self._remaining is not None:
                if self._remaining <= 0:
                    return
                self._remaining -= 1
            self.raised += 1
            custom = self._custom
        if custom is not None:
            raise custom
        raise _dbapi_error(conn.dialect.name, mode)


class SqlLostAnswers:
    """A `multicloud_store.testing.LostAnswerInjector` for SQL engines: the write commits, its answer is lost.

    Attached to an engine, it lets an armed write statement (``INSERT`` for ``create``, ``UPDATE`` for
    ``replace``, ``DELETE`` for ``delete``, on the secrets table) run, commits it on the server through the DBAPI
    connection, and then raises the driver's "connection lost" error, as when the server (or a proxy) drops the
    connection after the ``COMMIT`` but before its answer arrives.

    Args:
        table: The secrets table's name (the meta table is never affected).
    """

    _VERBS: dict[str, str] = {"create": "INSERT", "replace": "UPDATE", "delete": "DELETE"}

    def __init__(self, table: str) -> None:
        self._table = table
        self._lock = threading.Lock()
        self._verb: str | None = None
        self.lost = 0

    def attach(self, engine: Any) -> None:
        """Hook into an engine's ``after_cursor_execute`` event."""
        from sqlalchemy import event

        event.listen(engine, "after_cursor_execute", self._after)

    def lose_answers(self, operation: str) -> None:
        """Until `clear`, commit every ``operation`` statement and then lose its answer."""
        with self._lock:
            self._verb = self._VERBS[operation]

    def clear(self) -> None:
        """Answer normally again."""
        with self._lock:
            self._verb = None

    def _after(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        with self._lock:
            verb = self._verb
        words = statement.replace('"', " ").replace("`", " ").split()
        if verb is None or not words or words[0].upper() != verb or self._table not in words[:4]:
            return
        conn.connection.dbapi_connection.commit()
        with self._lock:
            self.lost += 1
        raise _dbapi_error(conn.dialect.name, "unavailable")


def _dbapi_error(dialect: str, mode: str) -> Exception:
    if dialect == "postgresql":
        import psycopg

        if mode == "denied":
            return psycopg.errors.InsufficientPrivilege(
                "permission denied for table multicloud_store_secrets"
            )
        return psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused'
        )
    if dialect in ("mysql", "mariadb"):
        import pymysql  # type: ignore[import-untyped,unused-ignore]

        error: Exception
        if mode == "denied":
            error = pymysql.err.OperationalError(
                1142, "SELECT command denied to user 'mcs'@'127.0.0.1' for table 'multicloud_store_secrets'"
            )
        else:
            error = pymysql.err.OperationalError(
                2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111])"
            )
        return error
    import sqlite3

    if mode == "denied":
        return sqlite3.OperationalError("attempt to write a readonly database")
    return sqlite3.OperationalError("disk I/O error")


def replica_worker(
    environ: dict[str, str], index: int, own: int, shared_ids: list[str], start_at: float
) -> dict[str, Any]:
    """One replica of the multi-process test: a process of its own, configured only by variables.

    It stores ``own`` secrets of its own and updates each twice, and tries to store every id of ``shared_ids``
    (which every replica tries at the same moment). Run it in a ``spawn`` process pool.

    Args:
        environ: The ``MULTICLOUD_STORE_*`` variables.
        index: This replica's number.
        own: How many secrets of its own to write.
        shared_ids: Ids every replica tries to store.
        start_at: A `time.time` at which to start, so that the replicas collide.

    Returns:
        ``{"own": {id: final values}, "won": [ids it stored], "lost": [ids refused as existing], "errors": [...]}``.
    """
    import uuid

    from multicloud_store.errors import SecretExistsError
    from multicloud_store.store import SecretsStore

    store = SecretsStore.from_env(environ)
    store.check()  # connect and set up before the starting line
    time.sleep(max(0.0, start_at - time.time()))
    won: list[str] = []
    lost: list[str] = []
    errors: list[str] = []
    own_final: dict[str, dict[str, str]] = {}
    for n, sid in enumerate(shared_ids):
        try:
            store.store_secret_values(uuid.UUID(sid), {"winner": str(index)})
            won.append(sid)
        except SecretExistsError:
            lost.append(sid)
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(f"shared {n}: {type(exc).__name__}: {exc}")
        if n < own:
            mine = uuid.uuid4()
            try:
                store.store_secret_values(mine, {"replica": str(index), "n": str(n), "v": "0"})
                store.update_secret_values(mine, {"replica": str(index), "n": str(n), "v": "1"})
                store.update_secret_values(mine, {"replica": str(index), "n": str(n), "v": "2"})
                own_final[str(mine)] = {"replica": str(index), "n": str(n), "v": "2"}
            except Exception as exc:
                errors.append(f"own {n}: {type(exc).__name__}: {exc}")
    store.close()
    return {"own": own_final, "won": won, "lost": lost, "errors": errors}


@contextlib.contextmanager
def running(server: PostgresServer | MariaDBServer) -> Iterator[PostgresServer | MariaDBServer]:
    """Start a server for the duration of a block; stop it and remove its data afterwards.

    Args:
        server: The server.

    Yields:
        The started server.
    """
    try:
        server.start()
        yield server
    finally:
        server.stop()
