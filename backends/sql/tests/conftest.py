"""Fixtures for the SQL backend tests: real PostgreSQL and MariaDB servers on 127.0.0.1, and SQLite files.

Each server is started once per session in a throwaway data directory (or taken from
``MULTICLOUD_STORE_TEST_POSTGRES_URL`` / ``MULTICLOUD_STORE_TEST_MYSQL_URL``). A server that cannot be started
fails the tests that need it with the reason; set ``MULTICLOUD_STORE_TEST_ALLOW_SKIP=1`` on a workstation to skip
them instead (CI never sets it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from multicloud_store.sealing import Keyring
from multicloud_store_sql import SqlDriver, SqlSettings
from multicloud_store_sql.testing import MariaDBServer, PostgresServer, ServerStartError, SqlFaults

ALLOW_SKIP = os.environ.get("MULTICLOUD_STORE_TEST_ALLOW_SKIP", "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if ALLOW_SKIP:
        pytest.skip(reason)
    pytest.fail(f"{reason} (set MULTICLOUD_STORE_TEST_ALLOW_SKIP=1 to skip instead)", pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _clean_environment() -> Iterator[None]:
    """Keep the developer's MULTICLOUD_STORE_* variables out (the test-server ones are read before this runs)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MULTICLOUD_STORE_") and not name.startswith("MULTICLOUD_STORE_TEST_"):
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    """A PostgreSQL server started for the session; None when an external one is named by the variable."""
    if os.environ.get("MULTICLOUD_STORE_TEST_POSTGRES_URL"):
        yield None
        return
    server = PostgresServer()
    try:
        server.start()
    except ServerStartError as exc:
        server.stop()
        _unavailable(f"cannot start PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer | None]:
    """A MariaDB server started for the session; None when an external one is named by the variable."""
    if os.environ.get("MULTICLOUD_STORE_TEST_MYSQL_URL"):
        yield None
        return
    server = MariaDBServer()
    try:
        server.start()
    except ServerStartError as exc:
        server.stop()
        _unavailable(f"cannot start MariaDB: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer | None) -> str:
    """The URL of a PostgreSQL database the tests may use (a fresh one on our own server)."""
    if postgres is None:
        return os.environ["MULTICLOUD_STORE_TEST_POSTGRES_URL"]
    return postgres.create_database()


@pytest.fixture(scope="session")
def mysql_url(mariadb: MariaDBServer | None) -> str:
    """The URL of a MySQL or MariaDB database the tests may use."""
    if mariadb is None:
        return os.environ["MULTICLOUD_STORE_TEST_MYSQL_URL"]
    return mariadb.create_database()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file URL."""
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'secrets.db'}"


@pytest.fixture(scope="session")
def key_text() -> str:
    """One keyring for the session (every driver of a database must share it)."""
    return Keyring.generate("k1").dumps()


@pytest.fixture
def sql_settings(key_text: str) -> Callable[..., SqlSettings]:
    """``sql_settings(url, **overrides)``: settings with the session key and short timeouts."""

    def make(url: str, **overrides: Any) -> SqlSettings:
        values: dict[str, Any] = {
            "url": url,
            "key": key_text,
            "connect_timeout": 5,
            "statement_timeout": 30,
            "pool_timeout": 30,
        }
        values.update(overrides)
        return SqlSettings(**values)

    return make


@pytest.fixture
def make_driver(sql_settings: Callable[..., SqlSettings]) -> Iterator[Callable[..., SqlDriver]]:
    """``make_driver(url, **settings)``: a driver, closed after the test."""
    drivers: list[SqlDriver] = []

    def make(url: str, **overrides: Any) -> SqlDriver:
        driver = SqlDriver(sql_settings(url, **overrides))
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.close()


@pytest.fixture
def faults() -> SqlFaults:
    """A fault injector; attach it to the engines it should affect."""
    return SqlFaults()


@pytest.fixture
def tmp_key_file(tmp_path: Path, key_text: str) -> Path:
    """The session key in a file."""
    path = tmp_path / "sql.key"
    path.write_text(key_text)
    path.chmod(0o600)
    return path
