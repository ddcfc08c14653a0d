"""The local backend's key lifecycle: never a guessed key, no stray files, checks that cannot be stripped, modes."""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from multicloud_store.cli import main as cli_main
from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.errors import ConfigurationError, MultiCloudStoreError, SecretCorruptedError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore


def make(path: Path, key: str | None = None, key_file: Path | None = None) -> SecretsStore:
    settings = LocalSettings(path=path, key=key, key_file=key_file)
    return SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(settings))


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_missing_key_file_is_an_error_naming_it_and_no_key_is_created(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    store.close()
    key_file = tmp_path / "secrets.db.key"
    key_file.unlink()

    for call in (
        lambda s: s.get_secret_values(sid),
        lambda s: s.store_secret_values(uuid.uuid4(), {"c": "d"}),
        lambda s: list(s.list_secret_ids()),
    ):
        store = make(database)
        with pytest.raises(ConfigurationError) as info:
            call(store)
        store.close()
        message = str(info.value)
        assert str(key_file) in message and "missing" in message and "restore" in message
        assert info.value.variable == "MULTICLOUD_STORE_LOCAL_KEY_FILE"
        assert not key_file.exists()


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    store = make(directory / "secrets.db")
    with pytest.raises(KeyError):
        store.get_secret_values(uuid.uuid4())
    assert list(store.list_secret_ids()) == []
    assert not store.secret_exists(uuid.uuid4())
    store.check()
    with pytest.raises(KeyError):
        store.update_secret_values(uuid.uuid4(), {"a": "b"})
    with pytest.raises(KeyError):
        store.delete_secret_values(uuid.uuid4())
    store.close()
    assert not directory.exists()
    # The first write creates the database and its key together.
    store = make(directory / "secrets.db")
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    store.close()
    assert {"secrets.db", "secrets.db.key"} <= set(files_in(directory))


def test_cli_info_and_list_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "fresh"
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "local")
    monkeypatch.setenv("MULTICLOUD_STORE_LOCAL_PATH", str(directory / "secrets.db"))
    for argv in (["info"], ["list"]):
        cli_main(argv)
    assert not directory.exists()


def test_a_file_that_is_not_a_database_gets_no_key_file(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    database.write_bytes(b"this is not sqlite" * 100)
    store = make(database)
    with pytest.raises(SecretCorruptedError):
        store.get_secret_values(uuid.uuid4())
    with pytest.raises(SecretCorruptedError):
        store.store_secret_values(uuid.uuid4(), {"a": "b"})
    store.close()
    assert files_in(tmp_path) == ["secrets.db"]


def _strip_checks(database: Path) -> None:
    connection = sqlite3.connect(database)
    connection.execute("DELETE FROM meta WHERE k LIKE 'key_check%'")
    connection.commit()
    connection.close()


def _snapshot(database: Path) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database)
    rows = connection.execute("SELECT * FROM secrets ORDER BY name").fetchall()
    rows += connection.execute("SELECT * FROM meta ORDER BY k").fetchall()
    connection.close()
    return rows


def test_a_stripped_key_check_does_not_let_a_wrong_key_in(tmp_path: Path, random_key: str) -> None:
    database = tmp_path / "secrets.db"
    store = make(database, key=random_key)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    store.close()
    _strip_checks(database)
    before = _snapshot(database)

    wrong = base64.b64encode(os.urandom(32)).decode()
    store = make(database, key=wrong)
    with pytest.raises((SecretCorruptedError, ConfigurationError)):
        store.store_secret_values(uuid.uuid4(), {"x": "y"})
    with pytest.raises((SecretCorruptedError, ConfigurationError)):
        store.get_secret_values(sid)
    store.close()
    assert _snapshot(database) == before  # the wrong key wrote nothing

    # The right key, proven by opening the rows, restores the check; the wrong key stays out afterwards.
    store = make(database, key=random_key)
    assert store.get_secret_values(sid) == {"a": "b"}
    store.close()
    store = make(database, key=wrong)
    with pytest.raises(ConfigurationError, match="not the key"):
        store.get_secret_values(sid)
    store.close()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    store.close()
    key_file = tmp_path / "secrets.db.key"
    key_file.chmod(0o644)
    store = make(database)
    with pytest.raises(ConfigurationError) as info:
        list(store.list_secret_ids())
    store.close()
    assert f"chmod 600 {key_file}" in str(info.value)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644  # reported, not changed behind the user's back


def test_database_files_are_tightened_to_0600_with_one_warning(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    store.close()
    paths = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    for path in paths:
        if path.exists():
            path.chmod(0o644)
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.WARNING)
    library = logging.getLogger("multicloud_store")
    library.addHandler(handler)  # on the library logger itself: counted whatever propagation is set to
    try:
        for _ in range(2):
            store = make(database)
            assert store.get_secret_values(sid) == {"a": "b"}
            store.close()
    finally:
        library.removeHandler(handler)
    for path in paths:
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    warnings = [r.getMessage() for r in records if "0600" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(database) in warnings[0]


def test_wrong_key_error_does_not_echo_the_key(tmp_path: Path, random_key: str) -> None:
    database = tmp_path / "secrets.db"
    store = make(database, key=random_key)
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    store.close()
    wrong = base64.b64encode(os.urandom(32)).decode()
    store = make(database, key=f"k9:{wrong}")
    with pytest.raises(MultiCloudStoreError) as info:
        list(store.list_secret_ids())
    store.close()
    assert wrong not in str(info.value) and random_key not in str(info.value)


def test_dry_run_migration_into_a_new_local_store_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.db"
    store = make(source)
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    store.close()
    (tmp_path / "source.env").write_text(
        f"MULTICLOUD_STORE_BACKEND=local\nMULTICLOUD_STORE_LOCAL_PATH={source}\n"
    )
    target = tmp_path / "target-dir" / "target.db"
    (tmp_path / "target.env").write_text(
        f"MULTICLOUD_STORE_BACKEND=local\nMULTICLOUD_STORE_LOCAL_PATH={target}\n"
    )
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "local")
    monkeypatch.setenv("MULTICLOUD_STORE_LOCAL_PATH", str(source))
    cli_main(
        [
            "migrate",
            "--source-env-file",
            str(tmp_path / "source.env"),
            "--target-env-file",
            str(tmp_path / "target.env"),
            "--dry-run",
            "--no-progress",
        ]
    )
    assert not target.parent.exists()
