"""SQL-specific behaviour: settings, masking, real grants and logins, key checks, schema, rotation, retries."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text, update

from multicloud_store.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.sealing import Keyring
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_sql import SqlDriver, SqlSettings
from multicloud_store_sql.driver import SCHEMA_VERSION
from multicloud_store_sql.errors import error_code, rule_for
from multicloud_store_sql.testing import (
    MariaDBServer,
    PostgresServer,
    SqlFaults,
    free_port,
    unique_table_name,
)

SENTINEL = "sql-sentinel-VALUE-never-leaks-4e2a"
PASSWORD = "pa55-w0rd-SHOULD-NOT-SHOW"

MakeDriver = Callable[..., SqlDriver]


def _store(driver: SqlDriver, deployment_id: str = "tests") -> SecretsStore:
    return SecretsStore(StoreSettings(backend="sql", deployment_id=deployment_id), driver=driver)


@pytest.fixture(params=["postgres_url", "mysql_url", "sqlite_url"], ids=["postgresql", "mariadb", "sqlite"])
def any_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


# -- settings -------------------------------------------------------------------------------------------------


class TestSettings:
    def test_url_and_key_are_required_and_named(self, key_text: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ({"MULTICLOUD_STORE_SQL_KEY": key_text})
        assert "MULTICLOUD_STORE_SQL_URL" in str(info.value)
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ({"MULTICLOUD_STORE_SQL_URL": "sqlite://"})
        assert info.value.variable == "MULTICLOUD_STORE_SQL_KEY"

    def test_key_and_key_file_are_exclusive(self, key_text: str, tmp_key_file: Path) -> None:
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ(
                {
                    "MULTICLOUD_STORE_SQL_URL": "sqlite://",
                    "MULTICLOUD_STORE_SQL_KEY": key_text,
                    "MULTICLOUD_STORE_SQL_KEY_FILE": str(tmp_key_file),
                }
            )
        assert info.value.variable == "MULTICLOUD_STORE_SQL_KEY_FILE"

    def test_bad_url_is_named_never_echoed(self, key_text: str) -> None:
        bad = f"not a url :// {PASSWORD}"
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ({"MULTICLOUD_STORE_SQL_URL": bad, "MULTICLOUD_STORE_SQL_KEY": key_text})
        assert "MULTICLOUD_STORE_SQL_URL" in str(info.value)
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)

    def test_bad_key_is_named_never_echoed(self) -> None:
        secret_looking = "k1:" + "A" * 10
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ(
                {"MULTICLOUD_STORE_SQL_URL": "sqlite://", "MULTICLOUD_STORE_SQL_KEY": secret_looking}
            )
        assert "MULTICLOUD_STORE_SQL_KEY" in str(info.value)
        assert "A" * 10 not in str(info.value)

    def test_control_characters_in_credentials_are_refused(self, key_text: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ(
                {"MULTICLOUD_STORE_SQL_URL": "sqlite:///x\x07.db", "MULTICLOUD_STORE_SQL_KEY": key_text}
            )
        assert "MULTICLOUD_STORE_SQL_URL" in str(info.value)

    def test_surrounding_whitespace_is_stripped(self, key_text: str) -> None:
        settings = SqlSettings(url="  sqlite://  ", key=f"\n{key_text}\n")
        assert settings.url.get_secret_value() == "sqlite://"

    @pytest.mark.parametrize("table", ["1abc", "a-b", "a b", "x" * 52, "t;drop"])
    def test_bad_table_name(self, key_text: str, table: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            SqlSettings.from_environ(
                {
                    "MULTICLOUD_STORE_SQL_URL": "sqlite://",
                    "MULTICLOUD_STORE_SQL_KEY": key_text,
                    "MULTICLOUD_STORE_SQL_TABLE": table,
                }
            )
        assert info.value.variable == "MULTICLOUD_STORE_SQL_TABLE"

    def test_password_masked_in_info_repr_and_settings(self, key_text: str) -> None:
        url = f"postgresql+psycopg://store:{PASSWORD}@db.example:5432/secrets"
        settings = SqlSettings(url=url, key=key_text)
        assert (
            settings.redacted()["MULTICLOUD_STORE_SQL_URL"]
            == "postgresql+psycopg://store:***@db.example:5432/secrets"
        )
        assert settings.redacted()["MULTICLOUD_STORE_SQL_KEY"] == "**********"
        driver = SqlDriver(settings)
        texts = [repr(settings), str(settings), repr(driver), driver.display_url]
        assert not [t for t in texts if PASSWORD in t]
        assert "store:***@db.example" in repr(driver)
        driver.close()

    def test_cli_info_masks_the_password(self, key_text: str) -> None:
        from multicloud_store.cli import main

        out = io.StringIO()
        environ = {
            "MULTICLOUD_STORE_BACKEND": "sql",
            "MULTICLOUD_STORE_SQL_URL": f"mysql+pymysql://store:{PASSWORD}@db.example/secrets",
            "MULTICLOUD_STORE_SQL_KEY": key_text,
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            code = main(["info"], stdout=out)
        assert code == 0
        assert PASSWORD not in out.getvalue()
        assert key_text.split(":")[1].strip() not in out.getvalue()
        assert "mysql+pymysql://store:***@db.example/secrets" in out.getvalue()

    def test_selected_by_the_backend_variable(self, key_text: str, sqlite_url: str) -> None:
        store = SecretsStore.from_env(
            {
                "MULTICLOUD_STORE_BACKEND": "sql",
                "MULTICLOUD_STORE_SQL_URL": sqlite_url,
                "MULTICLOUD_STORE_SQL_KEY": key_text,
            }
        )
        assert isinstance(store.driver, SqlDriver)
        store.check()
        store.close()

    def test_key_file(self, tmp_key_file: Path, sqlite_url: str, tmp_path: Path) -> None:
        settings = SqlSettings(url=sqlite_url, key_file=tmp_key_file, table=unique_table_name())
        driver = SqlDriver(settings)
        store = _store(driver)
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"a": "1"})
        assert store.get_secret_values(sid) == {"a": "1"}
        driver.close()
        with pytest.raises(ConfigurationError) as info:
            SqlDriver(SqlSettings(url=sqlite_url, key_file=tmp_path / "missing.key"))
        assert info.value.variable == "MULTICLOUD_STORE_SQL_KEY_FILE"
        garbage = tmp_path / "garbage.key"
        garbage.write_text("k1:not-base64-" + SENTINEL)
        garbage.chmod(0o600)
        with pytest.raises(ConfigurationError) as info:
            SqlDriver(SqlSettings(url=sqlite_url, key_file=garbage))
        assert info.value.variable == "MULTICLOUD_STORE_SQL_KEY_FILE"
        assert SENTINEL not in str(info.value)
        tmp_key_file.chmod(0o644)
        with pytest.raises(ConfigurationError) as info:
            SqlDriver(SqlSettings(url=sqlite_url, key_file=tmp_key_file))
        assert "chmod 600" in str(info.value)

    def test_location_ignores_password_and_driver(self, key_text: str) -> None:
        def location(url: str, table: str = "t") -> tuple[str | None, ...]:
            return SqlDriver(SqlSettings(url=url, key=key_text, table=table)).location()

        same = location("postgresql+psycopg://u:one@DB.example:5432/s")
        assert same == location("postgresql+psycopg2://u:two@db.example:5432/s")
        assert PASSWORD not in repr(location(f"postgresql+psycopg://u:{PASSWORD}@db.example:5432/s"))
        assert same != location("postgresql+psycopg://u:one@db.example:5432/other")
        assert same != location("postgresql+psycopg://u:one@db.example:5432/s", table="t2")

    def test_no_network_at_construction(self, key_text: str) -> None:
        # A port nothing listens on: constructing the driver and the store must not try to connect.
        driver = SqlDriver(
            SqlSettings(url=f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/x", key=key_text)
        )
        _store(driver)
        driver.close()


# -- logins, reachability and real grants ---------------------------------------------------------------------


class TestFailures:
    def test_wrong_password_is_permission_and_masked(
        self, postgres: PostgresServer | None, make_driver: MakeDriver
    ) -> None:
        if postgres is None:
            pytest.skip("needs the tests' own PostgreSQL server")
        driver = make_driver(postgres.url(password=PASSWORD))
        with pytest.raises(BackendPermissionError) as info:
            _store(driver).check()
        assert PASSWORD not in str(info.value)
        assert "postgres:***@127.0.0.1" in str(info.value)
        assert "28P01" in str(info.value)

    def test_wrong_password_on_mariadb(self, mariadb: MariaDBServer | None, make_driver: MakeDriver) -> None:
        if mariadb is None:
            pytest.skip("needs the tests' own MariaDB server")
        driver = make_driver(mariadb.url(password=PASSWORD))
        with pytest.raises(BackendPermissionError) as info:
            _store(driver).check()
        assert PASSWORD not in str(info.value)
        assert "mysql:1045" in str(info.value)

    @pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
    def test_unreachable_server_is_unavailable(self, make_driver: MakeDriver, scheme: str) -> None:
        driver = make_driver(f"{scheme}://u:{PASSWORD}@127.0.0.1:{free_port()}/db", connect_timeout=3)
        store = _store(driver)
        with pytest.raises(BackendUnavailableError) as info:
            store.get_secret_values(uuid.uuid4())
        assert PASSWORD not in str(info.value)
        assert "u:***@127.0.0.1" in str(info.value)

    def test_missing_database_is_configuration(
        self, postgres: PostgresServer | None, make_driver: MakeDriver
    ) -> None:
        if postgres is None:
            pytest.skip("needs the tests' own PostgreSQL server")
        with pytest.raises(ConfigurationError) as info:
            _store(make_driver(postgres.url("no_such_db"))).check()
        assert info.value.variable == "MULTICLOUD_STORE_SQL_URL"

    def test_missing_driver_is_configuration(self, make_driver: MakeDriver) -> None:
        with pytest.raises(ConfigurationError) as info:
            _store(make_driver(f"postgresql+nosuchdriver://u:{PASSWORD}@h/db")).check()
        assert PASSWORD not in str(info.value)

    def test_postgres_grants(self, postgres: PostgresServer | None, make_driver: MakeDriver) -> None:
        """A reader-only role may read but not write; a role without grants may do nothing: permission errors."""
        if postgres is None:
            pytest.skip("needs the tests' own PostgreSQL server")
        database = "grants_" + uuid.uuid4().hex[:8]
        postgres.execute(f"CREATE DATABASE {database}")
        owner = _store(make_driver(postgres.url(database)))
        sid = uuid.uuid4()
        owner.store_secret_values(sid, {"v": "1"})
        table = "multicloud_store_secrets"
        postgres.execute(f"CREATE ROLE reader_{database} LOGIN PASSWORD 'r-pw'")
        postgres.execute(f"CREATE ROLE nobody_{database} LOGIN PASSWORD 'n-pw'")
        postgres.execute(f"GRANT SELECT ON {table}, {table}_meta TO reader_{database}", database)
        reader = _store(make_driver(postgres.url(database, user=f"reader_{database}", password="r-pw")))
        assert reader.get_secret_values(sid) == {"v": "1"}
        calls: list[Callable[[], None]] = [
            lambda: reader.store_secret_values(uuid.uuid4(), {"v": "1"}),
            lambda: reader.update_secret_values(sid, {"v": "2"}),
            lambda: reader.delete_secret_values(sid),
        ]
        for call in calls:
            with pytest.raises(BackendPermissionError) as info:
                call()
            assert "42501" in str(info.value)
        nobody = _store(make_driver(postgres.url(database, user=f"nobody_{database}", password="n-pw")))
        with pytest.raises(BackendPermissionError):
            nobody.get_secret_values(sid)
        assert owner.get_secret_values(sid) == {"v": "1"}

    def test_postgres_least_privilege_grants_of_the_docs(
        self, postgres: PostgresServer | None, make_driver: MakeDriver
    ) -> None:
        """The tables made by their owner; the application role has exactly the grants docs/backends/sql.md lists."""
        if postgres is None:
            pytest.skip("needs the tests' own PostgreSQL server")
        database = "least_" + uuid.uuid4().hex[:8]
        postgres.execute(f"CREATE DATABASE {database}")
        make_driver(postgres.url(database)).health_check()  # the owner creates the tables
        role = f"app_{database}"
        postgres.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-pw'")
        postgres.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON multicloud_store_secrets TO {role}", database
        )
        postgres.execute(f"GRANT SELECT, INSERT ON multicloud_store_secrets_meta TO {role}", database)
        app = _store(make_driver(postgres.url(database, user=role, password="app-pw")))
        sid = uuid.uuid4()
        app.store_secret_values(sid, {"v": "1"})
        app.update_secret_values(sid, {"v": "2"})
        assert app.get_secret_values(sid) == {"v": "2"}
        assert list(app.list_secret_ids()) == [sid]
        app.delete_secret_values(sid)
        assert not app.secret_exists(sid)

    def test_postgres_database_owner_sets_up_the_tables(
        self, postgres: PostgresServer | None, make_driver: MakeDriver
    ) -> None:
        """PostgreSQL 15 took CREATE on schema public from PUBLIC; the database's owner may still create tables."""
        if postgres is None:
            pytest.skip("needs the tests' own PostgreSQL server")
        database = "owned_" + uuid.uuid4().hex[:8]
        role = f"owner_{database}"
        postgres.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'own-pw'")
        postgres.execute(f"CREATE DATABASE {database} OWNER {role}")
        store = _store(make_driver(postgres.url(database, user=role, password="own-pw")))
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        assert store.get_secret_values(sid) == {"v": "1"}

    def test_mariadb_least_privilege_grants_of_the_docs(
        self, mariadb: MariaDBServer | None, make_driver: MakeDriver
    ) -> None:
        if mariadb is None:
            pytest.skip("needs the tests' own MariaDB server")
        url = mariadb.create_database()
        database = url.rsplit("/", 1)[1]
        make_driver(url).health_check()
        user = f"app_{database}"
        mariadb.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'app-pw'", None)
        mariadb.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {database}.multicloud_store_secrets TO '{user}'@'127.0.0.1'",
            None,
        )
        mariadb.execute(
            f"GRANT SELECT, INSERT ON {database}.multicloud_store_secrets_meta TO '{user}'@'127.0.0.1'", None
        )
        app = _store(make_driver(mariadb.url(database, user=user, password="app-pw")))
        sid = uuid.uuid4()
        app.store_secret_values(sid, {"v": "1"})
        app.update_secret_values(sid, {"v": "2"})
        assert app.get_secret_values(sid) == {"v": "2"}
        assert list(app.list_secret_ids()) == [sid]
        app.delete_secret_values(sid)
        assert not app.secret_exists(sid)

    def test_mariadb_grants(self, mariadb: MariaDBServer | None, make_driver: MakeDriver) -> None:
        if mariadb is None:
            pytest.skip("needs the tests' own MariaDB server")
        url = mariadb.create_database()
        database = url.rsplit("/", 1)[1]
        owner = _store(make_driver(url))
        sid = uuid.uuid4()
        owner.store_secret_values(sid, {"v": "1"})
        mariadb.execute(f"CREATE USER 'reader_{database}'@'127.0.0.1' IDENTIFIED BY 'r-pw'", None)
        mariadb.execute(f"GRANT SELECT ON {database}.* TO 'reader_{database}'@'127.0.0.1'", None)
        reader = _store(make_driver(mariadb.url(database, user=f"reader_{database}", password="r-pw")))
        assert reader.get_secret_values(sid) == {"v": "1"}
        with pytest.raises(BackendPermissionError) as info:
            reader.update_secret_values(sid, {"v": "2"})
        assert "mysql:1142" in str(info.value)
        assert owner.get_secret_values(sid) == {"v": "1"}


class TestRealServerFailures:
    def test_read_only_database_is_unavailable_not_denied(
        self, postgres: PostgresServer | None, make_driver: MakeDriver
    ) -> None:
        """A standby (or a database set read-only) refuses writes with 25006: unavailable, reads still work."""
        if postgres is None:
            pytest.skip("needs the tests' own PostgreSQL server")
        database = "ro_" + uuid.uuid4().hex[:8]
        postgres.execute(f"CREATE DATABASE {database}")
        store = _store(make_driver(postgres.url(database)))
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        postgres.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
        readonly = _store(make_driver(postgres.url(database)))  # new sessions pick the setting up
        assert readonly.get_secret_values(sid) == {"v": "1"}
        with pytest.raises(BackendUnavailableError) as info:
            readonly.update_secret_values(sid, {"v": "2"})
        assert "25006" in str(info.value) and "read-only" in str(info.value)
        assert readonly.get_secret_values(sid) == {"v": "1"}

    @pytest.mark.parametrize("url_fixture", ["postgres_url", "mysql_url"])
    def test_statement_timeout_on_a_locked_row(
        self, request: pytest.FixtureRequest, make_driver: MakeDriver, url_fixture: str
    ) -> None:
        """A row locked by another transaction: the write gives up after the statement timeout, changes nothing."""
        url: str = request.getfixturevalue(url_fixture)
        # The test is about the statement timeout: short, and the lock never lifts while the write waits, so
        # the outcome does not depend on the machine's speed.
        driver = make_driver(url, table=unique_table_name(), statement_timeout=2)
        store = _store(driver)
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        name = store.secret_name(sid)
        locker = make_driver(url, table=driver.settings.table)
        with locker.engine.connect() as connection:
            transaction = connection.begin()
            t = locker.table
            connection.execute(select(t.c.name).where(t.c.name == name).with_for_update()).all()
            with pytest.raises(BackendUnavailableError):
                driver.replace(name, "changed", {})
            transaction.rollback()
        assert store.get_secret_values(sid) == {"v": "1"}
        store.update_secret_values(sid, {"v": "2"})  # the pool recovered from the timed-out connection
        assert store.get_secret_values(sid) == {"v": "2"}


# -- deadlocks and serialization failures ---------------------------------------------------------------------


def _deadlock(dialect: str) -> Exception:
    if dialect == "postgresql":
        import psycopg

        return psycopg.errors.DeadlockDetected("deadlock detected")
    import pymysql  # type: ignore[import-untyped,unused-ignore]

    error: Exception = pymysql.err.OperationalError(
        1213, "Deadlock found when trying to get lock; try restarting transaction"
    )
    return error


class TestRetries:
    @pytest.mark.parametrize("url_fixture", ["postgres_url", "mysql_url"])
    def test_deadlock_is_retried_a_bounded_number_of_times(
        self, request: pytest.FixtureRequest, make_driver: MakeDriver, url_fixture: str
    ) -> None:
        driver = make_driver(request.getfixturevalue(url_fixture), table=unique_table_name(), max_retries=3)
        store = _store(driver)
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        faults = SqlFaults()
        faults.attach(driver.engine)
        faults.raise_exception(_deadlock(driver.engine.dialect.name), times=2)
        store.update_secret_values(
            sid, {"v": "2"}
        )  # the dispatcher's read and the UPDATE: 2 deadlocks in all
        assert faults.raised == 2
        assert store.get_secret_values(sid) == {"v": "2"}
        faults.raise_exception(_deadlock(driver.engine.dialect.name))  # every attempt
        with pytest.raises(BackendUnavailableError) as info:
            driver.replace(store.secret_name(sid), "x", {})
        assert faults.raised == 2 + 4  # the first attempt and 3 retries
        assert "deadlock" in str(info.value)
        faults.clear()
        assert store.get_secret_values(sid) == {"v": "2"}

    def test_serialization_failure_is_retried(self, postgres_url: str, make_driver: MakeDriver) -> None:
        import psycopg

        driver = make_driver(postgres_url, table=unique_table_name(), max_retries=1)
        store = _store(driver)
        faults = SqlFaults()
        faults.attach(driver.engine)
        driver.health_check()
        faults.raise_exception(psycopg.errors.SerializationFailure("could not serialize access"), times=1)
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        assert faults.raised == 1
        assert store.get_secret_values(sid) == {"v": "1"}

    def test_error_table_codes(self) -> None:
        import sqlite3

        import psycopg
        import pymysql  # type: ignore[import-untyped,unused-ignore]
        from sqlalchemy import exc as sa_exc

        def wrap(orig: Exception) -> sa_exc.StatementError:
            return sa_exc.DBAPIError.instance("SELECT 1", None, orig, type(orig))

        assert error_code(wrap(psycopg.errors.DeadlockDetected("x"))) == "postgresql:40P01"
        assert rule_for(wrap(psycopg.errors.DeadlockDetected("x"))).retry
        assert rule_for(wrap(pymysql.err.OperationalError(1213, "x"))).retry
        assert rule_for(wrap(psycopg.errors.InsufficientPrivilege("x"))).error is BackendPermissionError
        assert rule_for(wrap(pymysql.err.OperationalError(1142, "x"))).error is BackendPermissionError
        assert rule_for(wrap(psycopg.errors.ReadOnlySqlTransaction("x"))).error is BackendUnavailableError
        assert rule_for(wrap(sqlite3.OperationalError("database is locked"))).error is BackendUnavailableError
        assert rule_for(wrap(sqlite3.OperationalError("attempt to write a readonly database"))).error is (
            BackendPermissionError
        )
        assert rule_for(wrap(psycopg.OperationalError("whatever"))).error is BackendUnavailableError


# -- keys, tampering and schema -------------------------------------------------------------------------------


class TestKeysAndSchema:
    def test_schema_columns_version_and_index(self, any_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        driver = make_driver(any_url, table=table)
        driver.health_check()
        inspector = inspect(driver.engine)
        columns = {c["name"] for c in inspector.get_columns(table)}
        assert columns == {
            "name",
            "key_id",
            "nonce",
            "ciphertext",
            "labels",
            "deployment",
            "created",
            "updated",
        }
        assert inspector.get_pk_constraint(table)["constrained_columns"] == ["name"]
        assert any(ix["column_names"][:2] == ["deployment", "name"] for ix in inspector.get_indexes(table))
        with driver.engine.connect() as connection:
            version = connection.execute(
                text(f"SELECT v FROM {table}_meta WHERE k = 'schema_version'")
            ).scalar_one()
        assert int(version) == SCHEMA_VERSION

    def test_newer_schema_is_refused(self, any_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        make_driver(any_url, table=table).health_check()
        with make_driver(any_url, table=table).engine.begin() as connection:
            connection.execute(text(f"UPDATE {table}_meta SET v = '99' WHERE k = 'schema_version'"))
        with pytest.raises(ConfigurationError) as info:
            make_driver(any_url, table=table).health_check()
        assert "99" in str(info.value) and "newer" in str(info.value)

    def test_rows_hold_only_ciphertext_and_the_key_id(self, any_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        driver = make_driver(any_url, table=table)
        store = _store(driver, "dep-a")
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"password": SENTINEL})
        with driver.engine.connect() as connection:
            row = connection.execute(select(driver.table)).one()._mapping
        assert row["key_id"] == "k1"
        assert row["deployment"] == "dep-a"
        assert SENTINEL.encode() not in bytes(row["ciphertext"])
        assert json.loads(row["labels"])["mcs_secret_id"] == str(sid)

    def test_wrong_key_under_a_known_id_is_a_configuration_error(
        self, any_url: str, make_driver: MakeDriver
    ) -> None:
        table = unique_table_name()
        _store(make_driver(any_url, table=table)).store_secret_values(uuid.uuid4(), {"a": "1"})
        impostor = Keyring.generate("k1").dumps()
        with pytest.raises(ConfigurationError) as info:
            make_driver(any_url, table=table, key=impostor).health_check()
        assert info.value.variable == "MULTICLOUD_STORE_SQL_KEY"
        assert "'k1'" in str(info.value)
        assert impostor.split(":")[1].strip() not in str(info.value)

    def test_only_unknown_keys_is_a_configuration_error(self, any_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        make_driver(any_url, table=table).health_check()
        with pytest.raises(ConfigurationError) as info:
            make_driver(any_url, table=table, key=Keyring.generate("k9").dumps()).health_check()
        assert "k9" in str(info.value) and "k1" in str(info.value)

    def test_tampered_or_copied_row_is_corrupted_not_wrong_key(
        self, any_url: str, make_driver: MakeDriver
    ) -> None:
        table = unique_table_name()
        driver = make_driver(any_url, table=table)
        store = _store(driver)
        a, b = uuid.uuid4(), uuid.uuid4()
        store.store_secret_values(a, {"v": "a"})
        store.store_secret_values(b, {"v": "b"})
        t = driver.table
        name_a, name_b = store.secret_name(a), store.secret_name(b)
        with driver.engine.begin() as connection:
            row_a = connection.execute(select(t.c.nonce, t.c.ciphertext).where(t.c.name == name_a)).one()
            # Copy a's sealed value onto b: same key, other name: must not open as b.
            connection.execute(
                update(t).where(t.c.name == name_b).values(nonce=row_a[0], ciphertext=row_a[1])
            )
            flipped = bytes([row_a[1][0] ^ 1]) + bytes(row_a[1][1:])
            connection.execute(update(t).where(t.c.name == name_a).values(ciphertext=flipped))
        for sid in (a, b):
            with pytest.raises(SecretCorruptedError):
                store.get_secret_values(sid)
        outcomes = store.get_many([a, b])
        assert all(isinstance(outcomes[s].error, SecretCorruptedError) for s in (a, b))

    def test_exists_error_on_duplicate_name(self, any_url: str, make_driver: MakeDriver) -> None:
        driver = make_driver(any_url, table=unique_table_name())
        driver.create("n-1", "payload", {"mcs_deployment": "d"})
        with pytest.raises(SecretExistsError):
            driver.create("n-1", "other", {"mcs_deployment": "d"})
        assert driver.read("n-1").payload == "payload"
        with pytest.raises(SecretNotFoundError):
            driver.replace("n-2", "x", {})
        with pytest.raises(SecretNotFoundError):
            driver.delete("n-2")

    def test_names_are_case_sensitive(self, any_url: str, make_driver: MakeDriver) -> None:
        # MySQL's default collation is case-insensitive: the table's binary collation must keep these apart.
        driver = make_driver(any_url, table=unique_table_name())
        driver.create("Name-A", "upper", {})
        driver.create("name-a", "lower", {})
        assert driver.read("Name-A").payload == "upper"
        assert driver.read("name-a").payload == "lower"

    def test_listing_pages_by_keyset_and_filters_by_deployment(
        self, any_url: str, make_driver: MakeDriver
    ) -> None:
        driver = make_driver(any_url, table=unique_table_name(), page_size=7)
        mine, theirs = _store(driver, "mine"), _store(driver, "theirs")
        ours = {uuid.uuid4() for _ in range(30)}
        for sid in ours:
            mine.store_secret_values(sid, {})
        for _ in range(10):
            theirs.store_secret_values(uuid.uuid4(), {})
        listed = list(mine.list_secret_ids())
        assert len(listed) == 30 and set(listed) == ours

    def test_concurrent_first_use_of_one_table(self, any_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        drivers = [make_driver(any_url, table=table) for _ in range(4)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(drivers))

        def first_use(driver: SqlDriver) -> None:
            barrier.wait()
            try:
                driver.health_check()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=first_use, args=(d,)) for d in drivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors


# -- rotation -------------------------------------------------------------------------------------------------


class TestRotation:
    def test_rotate_moves_every_row_to_the_newest_key(self, any_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        old = Keyring.generate("k-old")
        store_old = _store(make_driver(any_url, table=table, key=old.dumps()))
        ids = [uuid.uuid4() for _ in range(12)]
        for n, sid in enumerate(ids):
            store_old.store_secret_values(sid, {"n": str(n)})
        both = old.with_new_key("k-new")
        rotating = make_driver(any_url, table=table, key=both.dumps())
        assert rotating.key_usage() == {"k-old": 12}
        first = rotating.rotate(batch_size=5, limit=5)  # interrupted after 5 rows
        assert first.rewritten == 5 and not first.complete and first.remaining == {"k-old": 7}
        assert first.removable == ()
        second = rotating.rotate(batch_size=5)  # resumed
        assert second.rewritten == 7 and second.complete
        assert second.removable == ("k-old",)
        assert rotating.key_usage() == {"k-new": 12}
        new_only = _store(make_driver(any_url, table=table, key=both.without(["k-old"]).dumps()))
        assert [new_only.get_secret_values(sid) for sid in ids] == [{"n": str(n)} for n in range(12)]

    def test_cli_rotate_key_with_a_key_file(self, sqlite_url: str, tmp_path: Path) -> None:
        from multicloud_store.cli import main

        key_file = tmp_path / "keys"
        key_file.write_text(Keyring.generate("k-old").dumps())
        key_file.chmod(0o600)
        environ = {
            "MULTICLOUD_STORE_BACKEND": "sql",
            "MULTICLOUD_STORE_SQL_URL": sqlite_url,
            "MULTICLOUD_STORE_SQL_KEY_FILE": str(key_file),
            "MULTICLOUD_STORE_SQL_TABLE": unique_table_name(),
        }
        store = SecretsStore.from_env(environ)
        ids = [uuid.uuid4() for _ in range(3)]
        for sid in ids:
            store.store_secret_values(sid, {"v": str(sid)})
        store.close()
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            assert main(["rotate-key", "--new", "--key-id", "k-new", "--no-progress"], stdout=out) == 0
        assert "every row is under key k-new" in out.getvalue()
        assert Keyring.parse(key_file.read_text()).ids == ("k-new", "k-old")
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        store = SecretsStore.from_env(environ)
        assert isinstance(store.driver, SqlDriver)
        assert store.driver.key_usage() == {"k-new": 3}
        assert [store.get_secret_values(sid) for sid in ids] == [{"v": str(sid)} for sid in ids]
        store.close()
        with pytest.raises(ConfigurationError) as info:
            SqlDriver(SqlSettings(url=sqlite_url, key=Keyring.generate().dumps())).add_new_key()
        assert info.value.variable == "MULTICLOUD_STORE_SQL_KEY"

    def test_rotate_leaves_rows_changed_meanwhile(self, postgres_url: str, make_driver: MakeDriver) -> None:
        table = unique_table_name()
        old = Keyring.generate("k-old")
        store_old = _store(make_driver(postgres_url, table=table, key=old.dumps()))
        ids = [uuid.uuid4() for _ in range(4)]
        for sid in ids:
            store_old.store_secret_values(sid, {"v": "old"})
        both = old.with_new_key("k-new").dumps()
        rotating = make_driver(postgres_url, table=table, key=both)
        writer = _store(make_driver(postgres_url, table=table, key=both))
        from sqlalchemy import event

        def write_between(conn: object, cursor: object, statement: str, *args: object) -> None:
            # After the rotation's SELECT, before its UPDATEs: another replica updates one row and deletes another.
            if "key_id !=" in statement and not done:
                done.append(True)
                writer.update_secret_values(ids[0], {"v": "new"})
                writer.delete_secret_values(ids[1])

        done: list[bool] = []
        event.listen(rotating.engine, "after_cursor_execute", write_between)
        report = rotating.rotate()
        assert (report.rewritten, report.skipped, report.failed) == (2, 2, 0)
        assert report.complete
        assert writer.get_secret_values(ids[0]) == {"v": "new"}
        assert not writer.secret_exists(ids[1])
        assert writer.get_secret_values(ids[2]) == {"v": "old"}


# -- secrecy ------------------------------------------------------------------------------------------------


def test_no_value_or_password_in_logs(
    postgres: PostgresServer | None, make_driver: MakeDriver, caplog: pytest.LogCaptureFixture
) -> None:
    if postgres is None:
        pytest.skip("needs the tests' own PostgreSQL server")
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        driver = make_driver(postgres.url(postgres.create_database().rsplit("/", 1)[1]))
        store = _store(driver)
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"password": SENTINEL})
        store.get_secret_values(sid)
        store.update_secret_values(sid, {"password": SENTINEL + "2"})
        with pytest.raises(SecretExistsError) as info:
            store.store_secret_values(sid, {"password": SENTINEL + "3"})
    finally:
        for name in ("sqlalchemy.engine", "sqlalchemy.pool"):
            logging.getLogger(name).setLevel(logging.WARNING)
    assert "INSERT INTO" in caplog.text  # the engine did log its statements
    for text_ in (caplog.text, str(info.value), repr(info.value), repr(driver)):
        assert SENTINEL not in text_
        assert postgres.password not in text_


def test_dump_of_the_database_holds_no_plaintext(
    any_url: str, make_driver: MakeDriver, request: pytest.FixtureRequest, key_text: str
) -> None:
    driver = make_driver(any_url, table=unique_table_name())
    store = _store(driver)
    for _ in range(5):
        store.store_secret_values(uuid.uuid4(), {"password": SENTINEL, "user": "admin-" + SENTINEL})
    dialect = driver.engine.dialect.name
    if dialect == "postgresql":
        from multicloud_store_sql.testing import pg_dump

        dump = pg_dump(any_url)
    elif dialect in ("mysql", "mariadb"):
        mariadb: MariaDBServer | None = request.getfixturevalue("mariadb")
        if mariadb is None:
            pytest.skip("dumping MariaDB needs the tests' own server")
        dump = mariadb.dump(any_url.rsplit("/", 1)[1])
    else:
        import sqlite3

        connection = sqlite3.connect(any_url.removeprefix("sqlite:///"))
        dump = "\n".join(connection.iterdump())
        connection.close()
        dump += Path(any_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")
    assert driver.table.name in dump  # the dump does hold the table
    assert SENTINEL not in dump
    key_material = key_text.split(":", 1)[1].strip()
    assert key_material not in dump


def test_pool_timeout_is_unavailable(sqlite_url: str, make_driver: MakeDriver, postgres_url: str) -> None:
    driver = make_driver(
        postgres_url, table=unique_table_name(), pool_size=1, max_overflow=0, pool_timeout=0.5
    )
    driver.health_check()
    with driver.engine.connect():  # holds the only connection
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            driver.read("n")
        assert "POOL" in str(info.value)
    assert time.monotonic() - started < 60  # bounded by the setting, not by a hang
