"""Update and delete on the SQL backend: one transaction each (read, check, compare-and-swap write).

On real PostgreSQL, real MariaDB and SQLite: the transactions and statements on the secrets table are counted, and
the guarantee and the errors are those of the read-first path (another deployment's secret untouched, a missing
one reported, a damaged one refused).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update

from multicloud_store.driver import OwnedWrites
from multicloud_store.errors import SecretCorruptedError, SecretNotFoundError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_sql import SqlDriver, SqlSettings
from multicloud_store_sql.testing import unique_table_name

URLS = ["sqlite_url", "postgres_url", "mysql_url"]


@pytest.fixture(params=URLS)
def driver(request: pytest.FixtureRequest, key_text: str) -> Iterator[SqlDriver]:
    url: str = request.getfixturevalue(request.param)
    built = SqlDriver(SqlSettings(url=url, key=key_text, table=unique_table_name()))
    yield built
    built.close()


@pytest.fixture
def stores(driver: SqlDriver) -> Callable[[str], SecretsStore]:
    """``stores(deployment)``: stores of several deployments on one table, as replicas share a database."""

    def make(deployment: str) -> SecretsStore:
        return SecretsStore(StoreSettings(backend="sql", deployment_id=deployment), driver=driver)

    return make


def _statements(driver: SqlDriver) -> list[str]:
    """From now on: each statement on the secrets table (its first word), and each transaction's COMMIT or ROLLBACK.

    A read-only statement outside ``engine.begin()`` ends with the pool's reset (a ROLLBACK) when its connection is
    returned: each connection checkout is one transaction here.
    """
    seen: list[str] = []
    table = driver.settings.table

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.replace('"', " ").replace("`", " ").replace(".", " ").replace(",", " ").split()
        if table in words:
            seen.append(words[0].upper())

    event.listen(driver.engine, "before_cursor_execute", record)
    event.listen(driver.engine, "commit", lambda conn: seen.append("COMMIT"))
    event.listen(driver.engine, "rollback", lambda conn: seen.append("ROLLBACK"))
    event.listen(driver.engine.pool, "checkout", lambda *args: seen.append("CHECKOUT"))
    event.listen(driver.engine.pool, "reset", lambda *args: seen.append("RESET"))
    return seen


def _deletes_returning(driver: SqlDriver) -> bool:
    dialect = driver.engine.dialect
    return bool(dialect.delete_returning) and dialect.name != "sqlite"


def test_sql_driver_offers_owned_writes(driver: SqlDriver) -> None:
    assert isinstance(driver, OwnedWrites)


def test_update_and_delete_are_one_transaction_each(
    stores: Callable[[str], SecretsStore], driver: SqlDriver
) -> None:
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    seen = _statements(driver)
    store.update_secret_values(sid, {"v": "2"})
    # UPDATE ... FROM (SELECT ... FOR UPDATE) ... RETURNING, then the check (PostgreSQL); else read, check, write.
    one_update = driver.engine.dialect.name == "postgresql"
    expected = ["CHECKOUT", "UPDATE", "COMMIT"] if one_update else ["CHECKOUT", "SELECT", "UPDATE", "COMMIT"]
    assert [s for s in seen if s != "RESET"] == expected
    assert store.get_secret_values(sid) == {"v": "2"}
    seen.clear()
    store.delete_secret_values(sid)
    # DELETE ... RETURNING, then the check (PostgreSQL, MariaDB); else read, check, delete.
    one_statement = _deletes_returning(driver)
    expected = (
        ["CHECKOUT", "DELETE", "COMMIT"] if one_statement else ["CHECKOUT", "SELECT", "DELETE", "COMMIT"]
    )
    assert [s for s in seen if s != "RESET"] == expected
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


def test_another_deployments_secret_is_neither_updated_nor_deleted(
    stores: Callable[[str], SecretsStore], driver: SqlDriver
) -> None:
    ours, theirs = stores("prod"), stores("staging")
    sid = uuid.uuid4()
    theirs.store_secret_values(sid, {"owner": "staging"})
    seen = _statements(driver)
    with pytest.raises(SecretNotFoundError) as updated:
        ours.update_secret_values(sid, {"owner": "prod"})
    with pytest.raises(SecretNotFoundError) as deleted:
        ours.delete_secret_values(sid)
    assert str(updated.value) == str(deleted.value) == f"secret {sid} not found"
    assert updated.value.secret_id == sid and updated.value.backend == "sql"
    # The check refused the row inside the transaction: nothing written, the transaction rolled back.
    read_for_delete = "DELETE" if _deletes_returning(driver) else "SELECT"
    read_for_update = "UPDATE" if driver.engine.dialect.name == "postgresql" else "SELECT"
    assert [s for s in seen if s != "RESET"] == [
        *("CHECKOUT", read_for_update, "ROLLBACK"),
        *("CHECKOUT", read_for_delete, "ROLLBACK"),
    ]
    assert theirs.get_secret_values(sid) == {"owner": "staging"}


def test_missing_secret_is_not_found(stores: Callable[[str], SecretsStore]) -> None:
    store = stores("prod")
    sid = uuid.uuid4()
    with pytest.raises(SecretNotFoundError) as updated:
        store.update_secret_values(sid, {"v": "2"})
    with pytest.raises(SecretNotFoundError):
        store.delete_secret_values(sid)
    assert updated.value.secret_id == sid
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


@pytest.mark.parametrize("column", ["ciphertext", "labels"])
def test_a_damaged_row_is_refused_and_left_alone(
    stores: Callable[[str], SecretsStore], driver: SqlDriver, column: str
) -> None:
    """As on the read-first path: update and delete raise what a read raises, and nothing is written."""
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    t = driver.table
    damage = {"ciphertext": b"x" * 40} if column == "ciphertext" else {"labels": "{}"}
    with driver.engine.begin() as connection:
        connection.execute(update(t).where(t.c.name == store.secret_name(sid)).values(**damage))
        before = connection.execute(select(t.c.nonce, t.c.ciphertext, t.c.labels)).all()
    with pytest.raises(SecretCorruptedError) as updated:
        store.update_secret_values(sid, {"v": "2"})
    with pytest.raises(SecretCorruptedError):
        store.delete_secret_values(sid)
    assert updated.value.secret_id == sid
    with driver.engine.begin() as connection:
        assert connection.execute(select(t.c.nonce, t.c.ciphertext, t.c.labels)).all() == before


def test_a_concurrent_writer_is_not_overwritten_unchecked(
    stores: Callable[[str], SecretsStore], driver: SqlDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write is a compare-and-swap on the nonce checked: a row replaced in between is read and checked again."""
    ours, theirs = stores("prod"), stores("staging")
    sid = uuid.uuid4()
    ours.store_secret_values(sid, {"v": "1"})
    t = driver.table
    name = ours.secret_name(sid)
    original = driver._unseal
    swapped: list[bool] = []

    def unseal_then_swap(*args: Any) -> str:
        payload = original(*args)
        if not swapped:
            # After our transaction has read the row, another deployment takes the name (nothing locks it).
            swapped.append(True)
            with driver.engine.begin() as connection:
                connection.execute(delete(t).where(t.c.name == name))
            theirs.store_secret_values(sid, {"v": "theirs"})
        return payload

    if driver.engine.dialect.name == "postgresql":
        pytest.skip(
            "PostgreSQL locks the row from the read to the write: another writer waits for our COMMIT"
        )
    monkeypatch.setattr(driver, "_unseal", unseal_then_swap)
    with pytest.raises(SecretNotFoundError):
        ours.update_secret_values(sid, {"v": "2"})
    monkeypatch.undo()
    assert theirs.get_secret_values(sid) == {"v": "theirs"}


def test_mysql_without_returning_deletes_by_compare_and_swap(
    mysql_url: str, key_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MySQL proper has no DELETE ... RETURNING; SQLAlchemy's dialect reports that only after connecting (MariaDB
    # >= 10.0.5 turns it on). Forced off here, the MariaDB server must see no RETURNING: the read, check, CAS path.
    driver = SqlDriver(SqlSettings(url=mysql_url, key=key_text, table=unique_table_name()))
    try:
        store = SecretsStore(StoreSettings(backend="sql", deployment_id="prod"), driver=driver)
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        monkeypatch.setattr(driver.engine.dialect, "delete_returning", False)
        sent: list[str] = []
        event.listen(
            driver.engine, "before_cursor_execute", lambda c, cur, statement, *a: sent.append(statement)
        )
        store.delete_secret_values(sid)
        assert sent and not any("RETURNING" in s.upper() for s in sent)
        assert any(s.upper().startswith("DELETE") for s in sent)
        with pytest.raises(SecretNotFoundError):
            store.get_secret_values(sid)
    finally:
        driver.close()
