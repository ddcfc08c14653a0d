"""Update and delete on the local backend: one driver call (`OwnedWrites`) instead of an ownership read and a write.

The driver reads the row, runs the dispatcher's ownership check on it and writes it if unchanged (compare-and-swap).
These tests count the driver calls and SQL statements, and check that the guarantee and the errors are those of
the read-first path: another deployment's secret is never changed, a missing one is reported, a damaged one refused.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from multicloud_store.driver import OwnedWrites
from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.drivers.memory import MemoryDriver, MemorySettings
from multicloud_store.errors import (
    BackendUnavailableError,
    ConfigurationError,
    SecretCorruptedError,
    SecretNotFoundError,
)
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore

_METHODS = ("create", "read", "replace", "delete", "replace_owned", "delete_owned", "list_names", "read_many")


def _count_calls(monkeypatch: pytest.MonkeyPatch, driver: object) -> list[str]:
    """Record every protocol call the store makes on ``driver`` (methods it lacks stay absent)."""
    calls: list[str] = []

    def counting(method: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            calls.append(method)
            return original(*args)

        return wrapper

    for method in _METHODS:
        original = getattr(driver, method, None)
        if original is not None:
            monkeypatch.setattr(driver, method, counting(method, original))
    return calls


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets.db"


@pytest.fixture
def stores(path: Path) -> Iterator[Callable[[str], SecretsStore]]:
    """``stores(deployment)``: a local store on the one database file, each with its own driver."""
    made: list[SecretsStore] = []

    def make(deployment: str) -> SecretsStore:
        store = SecretsStore(
            StoreSettings(backend="local", deployment_id=deployment),
            driver=LocalDriver(LocalSettings(path=path)),
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _statements(store: SecretsStore) -> list[str]:
    """Trace the SQL statements on every connection the local driver opens (call before its first use)."""
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    seen: list[str] = []
    original = driver._connect

    def connect(*, create: bool) -> sqlite3.Connection:
        connection = original(create=create)
        connection.set_trace_callback(seen.append)
        return connection

    driver._connect = connect  # type: ignore[method-assign]
    return seen


def _on_secrets(statements: list[str]) -> list[str]:
    """The first word of each statement on the secrets table, and of the transaction control around them."""
    out = []
    for statement in statements:
        word = statement.split()[0].upper()
        if word in ("BEGIN", "COMMIT", "ROLLBACK") or " secrets " in f" {statement} ".replace("\n", " "):
            out.append(word)
    return out


def test_local_driver_offers_owned_writes() -> None:
    assert isinstance(LocalDriver(LocalSettings(path=Path("unused.db"))), OwnedWrites)
    assert not isinstance(MemoryDriver(MemorySettings()), OwnedWrites)


def test_update_is_one_driver_call(
    stores: Callable[[str], SecretsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    calls = _count_calls(monkeypatch, store.driver)
    store.update_secret_values(sid, {"v": "2"})
    assert calls == ["replace_owned"]
    assert store.get_secret_values(sid) == {"v": "2"}


def test_delete_is_one_driver_call(
    stores: Callable[[str], SecretsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    calls = _count_calls(monkeypatch, store.driver)
    store.delete_secret_values(sid)
    assert calls == ["delete_owned"]
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


def test_update_and_delete_are_one_transaction_each(stores: Callable[[str], SecretsStore]) -> None:
    store = stores("prod")
    seen = _statements(store)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    seen.clear()
    store.update_secret_values(sid, {"v": "2"})
    # A read and a compare-and-swap write on one connection, no transaction held open (each is atomic).
    assert _on_secrets(seen) == ["SELECT", "UPDATE"]
    seen.clear()
    store.delete_secret_values(sid)
    assert _on_secrets(seen) == ["SELECT", "DELETE"]


def test_another_deployments_secret_is_neither_updated_nor_deleted(
    stores: Callable[[str], SecretsStore],
) -> None:
    ours, theirs = stores("prod"), stores("staging")
    sid = uuid.uuid4()
    theirs.store_secret_values(sid, {"owner": "staging"})
    with pytest.raises(SecretNotFoundError) as updated:
        ours.update_secret_values(sid, {"owner": "prod"})
    with pytest.raises(SecretNotFoundError) as deleted:
        ours.delete_secret_values(sid)
    # Exactly what a missing secret says: nothing tells that the id exists elsewhere.
    assert str(updated.value) == str(deleted.value) == f"secret {sid} not found"
    assert updated.value.secret_id == sid and updated.value.backend == "local"
    assert theirs.get_secret_values(sid) == {"owner": "staging"}


def test_missing_secret_is_not_found(
    stores: Callable[[str], SecretsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores("prod")
    store.store_secret_values(uuid.uuid4(), {"v": "1"})  # the database exists
    sid = uuid.uuid4()
    calls = _count_calls(monkeypatch, store.driver)
    with pytest.raises(SecretNotFoundError) as updated:
        store.update_secret_values(sid, {"v": "2"})
    with pytest.raises(SecretNotFoundError):
        store.delete_secret_values(sid)
    assert updated.value.secret_id == sid and updated.value.backend == "local"
    assert calls == ["replace_owned", "delete_owned"]
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


def test_missing_database_is_not_found(stores: Callable[[str], SecretsStore], path: Path) -> None:
    store = stores("prod")
    with pytest.raises(SecretNotFoundError):
        store.update_secret_values(uuid.uuid4(), {"v": "2"})
    with pytest.raises(SecretNotFoundError):
        store.delete_secret_values(uuid.uuid4())
    assert not path.exists()  # neither created the database


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE secrets SET ciphertext = zeroblob(length(ciphertext))",  # a damaged payload, labelled as ours
        "UPDATE secrets SET labels = '{}'",  # relabelled: the labels are sealed with the payload
    ],
)
def test_a_damaged_row_is_refused_and_left_alone(
    stores: Callable[[str], SecretsStore], path: Path, tamper: str
) -> None:
    """As on the read-first path: update and delete raise what a read raises, and `delete_corrupted` removes it."""
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    connection = sqlite3.connect(path)
    connection.execute(tamper)
    connection.commit()
    before = connection.execute("SELECT nonce, ciphertext, labels FROM secrets").fetchall()
    with pytest.raises(SecretCorruptedError) as updated:
        store.update_secret_values(sid, {"v": "2"})
    with pytest.raises(SecretCorruptedError):
        store.delete_secret_values(sid)
    assert updated.value.secret_id == sid
    assert connection.execute("SELECT nonce, ciphertext, labels FROM secrets").fetchall() == before
    connection.close()


def test_a_row_sealed_with_an_unknown_key_is_refused(tmp_path: Path, random_key: str) -> None:
    key_file = tmp_path / "secrets.db.key"
    first = SecretsStore(
        StoreSettings(backend="local", deployment_id="prod"),
        driver=LocalDriver(LocalSettings(path=tmp_path / "secrets.db")),
    )
    sid = uuid.uuid4()
    first.store_secret_values(sid, {"v": "1"})
    first.close()
    # A process that holds only a newer key (the old one is missing from its keyring).
    newer = SecretsStore(
        StoreSettings(backend="local", deployment_id="prod"),
        driver=LocalDriver(
            LocalSettings(path=tmp_path / "secrets.db", key=f"k9:{random_key},{key_file.read_text().strip()}")
        ),
    )
    newest = uuid.uuid4()
    newer.store_secret_values(newest, {"v": "1"})  # sealed with k9
    newer.close()
    only_old = SecretsStore(
        StoreSettings(backend="local", deployment_id="prod"),
        driver=LocalDriver(LocalSettings(path=tmp_path / "secrets.db")),
    )
    with pytest.raises(ConfigurationError, match="k9"):
        only_old.update_secret_values(newest, {"v": "2"})
    with pytest.raises(ConfigurationError, match="k9"):
        only_old.delete_secret_values(newest)
    only_old.close()


def test_labels_stored_in_another_form_do_not_matter(
    stores: Callable[[str], SecretsStore], path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ownership is judged from the payload's envelope, as on the read-first path, not from the labels' text."""
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    name = store.secret_name(sid)
    payload = driver.read(name).payload
    spaced = {"mcs_secret_id": str(sid), "mcs_deployment": "prod", "managed_by": "multicloud-store"}
    other_form = json.dumps(spaced)  # default separators, keys not sorted: not the canonical text
    sealed = driver._seal(name, payload, other_form)
    connection = sqlite3.connect(path)
    connection.execute(
        "UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, labels = ? WHERE name = ?",
        (sealed.key_id, sealed.nonce, sealed.ciphertext, other_form, name),
    )
    connection.commit()
    connection.close()
    calls = _count_calls(monkeypatch, driver)
    store.update_secret_values(sid, {"v": "2"})
    assert calls == ["replace_owned"]
    assert store.get_secret_values(sid) == {"v": "2"}


def test_a_lost_answer_is_verified(
    stores: Callable[[str], SecretsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write committed but its answer was lost: one verification read, as on the read-first path."""
    store = stores("prod")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    for method in ("replace_owned", "delete_owned"):
        original = getattr(driver, method)

        def lose(*args: Any, original: Callable[..., Any] = original) -> None:
            original(*args)
            raise BackendUnavailableError("injected: answer lost")

        monkeypatch.setattr(driver, method, lose)
    store.update_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "2"}
    store.delete_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


def test_a_row_replaced_between_check_and_write_is_checked_again(
    stores: Callable[[str], SecretsStore], path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another deployment takes the name after our check read the row: the compare-and-swap misses, the re-check refuses."""
    ours, theirs = stores("prod"), stores("staging")
    sid = uuid.uuid4()
    ours.store_secret_values(sid, {"v": "1"})
    driver = ours.driver
    assert isinstance(driver, LocalDriver)
    original = driver._unseal
    swapped: list[bool] = []

    def unseal_then_swap(*args: Any) -> str:
        payload = original(*args)
        if not swapped:
            swapped.append(True)
            connection = sqlite3.connect(path)
            connection.execute("DELETE FROM secrets")
            connection.commit()
            connection.close()
            theirs.store_secret_values(sid, {"v": "theirs"})
        return payload

    monkeypatch.setattr(driver, "_unseal", unseal_then_swap)
    with pytest.raises(SecretNotFoundError):
        ours.update_secret_values(sid, {"v": "2"})
    with pytest.raises(SecretNotFoundError):
        ours.delete_secret_values(sid)
    assert theirs.get_secret_values(sid) == {"v": "theirs"}


def test_memory_driver_keeps_the_ownership_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver without the extension keeps the read-then-write path, call for call."""
    driver = MemoryDriver(MemorySettings())
    store = SecretsStore(StoreSettings(backend="memory"), driver=driver)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    calls = _count_calls(monkeypatch, driver)
    store.update_secret_values(sid, {"v": "2"})
    store.delete_secret_values(sid)
    assert calls == ["read", "replace", "read", "delete"]


def test_a_row_replaced_in_every_round_gives_up_unwritten(
    stores: Callable[[str], SecretsStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that replaces the row after every check: a bounded number of rounds, then unavailable, nothing written."""
    ours, other_replica = stores("prod"), stores("prod")
    sid = uuid.uuid4()
    ours.store_secret_values(sid, {"v": "1"})
    driver = ours.driver
    assert isinstance(driver, LocalDriver)
    name = ours.secret_name(sid)
    original = driver._unseal
    rounds: list[int] = []

    def unseal_then_replace(*args: Any) -> str:
        payload = original(*args)
        rounds.append(1)
        other_replica.update_secret_values(sid, {"v": f"replica-{len(rounds)}"})
        return payload

    monkeypatch.setattr(driver, "_unseal", unseal_then_replace)
    checked: list[str] = []
    with pytest.raises(BackendUnavailableError):
        driver.replace_owned(name, "ours", {}, lambda secret: checked.append("replace"))
    with pytest.raises(BackendUnavailableError):
        driver.delete_owned(name, lambda secret: checked.append("delete"))
    monkeypatch.undo()
    # Each call checked the row again in every round, a bounded number of rounds.
    assert len(checked) == len(rounds)
    assert 1 < checked.count("replace") == checked.count("delete") < 20
    assert ours.get_secret_values(sid) == {"v": f"replica-{len(rounds)}"}
