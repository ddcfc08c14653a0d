"""The shared contract suite on real PostgreSQL, real MariaDB and SQLite, plus once through the variables only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing import StoreContract, StoreFactory
from multicloud_store_sql import SqlDriver, SqlSettings
from multicloud_store_sql.testing import SqlFaults, SqlLostAnswers, unique_table_name


class _SharedDriver(StoreContract):
    """The stores of all deployments share one driver (one table), as replicas share a database."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})
    url_fixture: ClassVar[str]

    @pytest.fixture(scope="class")
    @classmethod
    def shared(
        cls, request: pytest.FixtureRequest, key_text: str
    ) -> Iterator[tuple[SqlDriver, SqlFaults, SqlLostAnswers]]:
        url: str = request.getfixturevalue(cls.url_fixture)
        table = unique_table_name()
        driver = SqlDriver(SqlSettings(url=url, key=key_text, table=table, page_size=100))
        injector, loser = SqlFaults(), SqlLostAnswers(table)
        injector.attach(driver.engine)
        loser.attach(driver.engine)
        yield driver, injector, loser
        driver.close()

    @pytest.fixture
    def faults(self, shared: tuple[SqlDriver, SqlFaults, SqlLostAnswers]) -> SqlFaults:
        return shared[1]

    @pytest.fixture
    def lost_answers(self, shared: tuple[SqlDriver, SqlFaults, SqlLostAnswers]) -> SqlLostAnswers:
        return shared[2]

    @pytest.fixture
    def make_store(self, shared: tuple[SqlDriver, SqlFaults, SqlLostAnswers]) -> StoreFactory:
        driver = shared[0]
        return lambda deployment_id: SecretsStore(
            StoreSettings(backend="sql", deployment_id=deployment_id), driver=driver
        )


class TestPostgres(_SharedDriver):
    """PostgreSQL 15 through psycopg 3."""

    url_fixture = "postgres_url"


class TestMariaDB(_SharedDriver):
    """MariaDB through PyMySQL."""

    url_fixture = "mysql_url"


class TestSQLite(_SharedDriver):
    """A SQLite file through the standard library's sqlite3."""

    url_fixture = "sqlite_url"


class TestPostgresFromVariables(StoreContract):
    """PostgreSQL configured only through ``MULTICLOUD_STORE_*`` variables, one store (and pool) per deployment."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture(scope="class")
    @classmethod
    def table(cls) -> str:
        return unique_table_name()

    @pytest.fixture
    def lost_answers(self, table: str) -> SqlLostAnswers:
        return SqlLostAnswers(table)

    @pytest.fixture
    def make_store(
        self, postgres_url: str, key_text: str, table: str, faults: SqlFaults, lost_answers: SqlLostAnswers
    ) -> Iterator[StoreFactory]:
        stores: list[SecretsStore] = []

        def make(deployment_id: str) -> SecretsStore:
            store = SecretsStore.from_env(
                {
                    "MULTICLOUD_STORE_BACKEND": "sql",
                    "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment_id,
                    "MULTICLOUD_STORE_SQL_URL": postgres_url,
                    "MULTICLOUD_STORE_SQL_KEY": key_text,
                    "MULTICLOUD_STORE_SQL_TABLE": table,
                    "MULTICLOUD_STORE_SQL_POOL_SIZE": "4",
                }
            )
            assert isinstance(store.driver, SqlDriver)
            faults.attach(store.driver.engine)
            lost_answers.attach(store.driver.engine)
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()
