"""Key ids on every row, several keys, and online key rotation of the local backend."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from multicloud_store.cli import main as cli_main
from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.errors import ConfigurationError
from multicloud_store.sealing import Keyring, fingerprint
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore


def make(path: Path, key: str | None = None) -> SecretsStore:
    return SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(LocalSettings(path=path, key=key)))


def key_ids_of_rows(path: Path) -> dict[str, str]:
    connection = sqlite3.connect(path)
    rows = dict(connection.execute("SELECT name, key_id FROM secrets").fetchall())
    connection.close()
    return rows


def _downgrade_to_schema_0(path: Path, raw_key: bytes) -> None:
    """Turn a database into what the driver wrote before key ids: no key_id column, one legacy key check."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    connection = sqlite3.connect(path)
    connection.execute("ALTER TABLE secrets DROP COLUMN key_id")
    connection.execute("DELETE FROM meta")
    nonce = os.urandom(12)
    check = nonce + AESGCM(raw_key).encrypt(nonce, b"multicloud-store key check v1", b"key-check")
    connection.execute("INSERT INTO meta (k, v) VALUES ('key_check', ?)", (check,))
    connection.execute("PRAGMA user_version = 0")
    connection.commit()
    connection.close()


def test_a_database_without_key_ids_is_upgraded_in_place(tmp_path: Path, random_key: str) -> None:
    database = tmp_path / "secrets.db"
    store = make(database, random_key)
    ids = [uuid.uuid4() for _ in range(5)]
    for sid in ids:
        store.store_secret_values(sid, {"sid": str(sid)})
    store.close()
    raw = base64.b64decode(random_key)
    _downgrade_to_schema_0(database, raw)

    store = make(database, random_key)
    assert [store.get_secret_values(sid) for sid in ids] == [{"sid": str(sid)} for sid in ids]
    store.close()
    assert set(key_ids_of_rows(database).values()) == {fingerprint(raw)}
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
    connection.close()

    # The same key given with an explicit id later is a different id: the fingerprint id stays the row's id,
    # and writes with a new key in front keep the old rows readable.
    new = base64.b64encode(os.urandom(32)).decode()
    store = make(database, f"k2:{new},{random_key}")
    extra = uuid.uuid4()
    store.store_secret_values(extra, {"a": "b"})
    assert [store.get_secret_values(sid) for sid in ids] == [{"sid": str(sid)} for sid in ids]
    store.close()
    assert key_ids_of_rows(database)[store.secret_name(extra)] == "k2"


def test_a_wrong_key_does_not_open_an_old_database(tmp_path: Path, random_key: str) -> None:
    database = tmp_path / "secrets.db"
    store = make(database, random_key)
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    store.close()
    _downgrade_to_schema_0(database, base64.b64decode(random_key))
    store = make(database, base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(ConfigurationError, match="not the key"):
        list(store.list_secret_ids())
    store.close()
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 0  # nothing upgraded by a wrong key
    connection.close()


def test_reads_use_the_rows_key_and_writes_the_newest(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    k1 = "k1:" + base64.b64encode(os.urandom(32)).decode()
    k2 = "k2:" + base64.b64encode(os.urandom(32)).decode()
    store = make(database, k1)
    old = uuid.uuid4()
    store.store_secret_values(old, {"v": "old"})
    store.close()
    store = make(database, f"{k2},{k1}")
    new = uuid.uuid4()
    store.store_secret_values(new, {"v": "new"})
    assert store.get_secret_values(old) == {"v": "old"}
    store.update_secret_values(old, {"v": "old, rewritten"})
    store.close()
    assert set(key_ids_of_rows(database).values()) == {"k2"}
    # Without k1 every row still reads; with k1 alone the store refuses rows it cannot open by id.
    store = make(database, k2)
    assert store.get_secret_values(old) == {"v": "old, rewritten"}
    store.close()


def test_rotation_resumes_after_an_interruption(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    ids = [uuid.uuid4() for _ in range(30)]
    for sid in ids:
        store.store_secret_values(sid, {"sid": str(sid)})
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    new_id = driver.add_new_key("k2")

    def crash(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        driver.rotate_keys(crash, batch_size=10)
    assert 0 < sum(1 for k in key_ids_of_rows(database).values() if k == new_id) < 30
    seen: list[tuple[int, int]] = []
    report = driver.rotate_keys(lambda done, total: seen.append((done, total)), batch_size=10)
    assert report.complete and report.failed == 0
    assert report.rewritten == 20 and seen[-1] == (20, 20)
    assert set(key_ids_of_rows(database).values()) == {new_id}
    assert len(report.removable) == 1
    store.close()


def test_a_process_picks_up_a_key_added_by_another(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    first = make(database)
    old = uuid.uuid4()
    first.store_secret_values(old, {"v": "1"})
    second = make(database)
    driver = second.driver
    assert isinstance(driver, LocalDriver)
    driver.add_new_key("k2")
    new = uuid.uuid4()
    second.store_secret_values(new, {"v": "2"})
    assert first.get_secret_values(new) == {"v": "2"}  # the row names k2; the key file now has it
    first.close()
    second.close()


def test_adding_a_key_needs_a_key_file(tmp_path: Path, random_key: str) -> None:
    store = make(tmp_path / "secrets.db", random_key)
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    with pytest.raises(ConfigurationError, match="MULTICLOUD_STORE_LOCAL_KEY") as info:
        driver.add_new_key()
    assert random_key not in str(info.value)
    store.close()


def test_cli_rotate_key_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    ids = [uuid.uuid4() for _ in range(12)]
    for sid in ids:
        store.store_secret_values(sid, {"sid": str(sid)})
    store.close()
    key_file = tmp_path / "secrets.db.key"
    old_ring = Keyring.parse(key_file.read_text())
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "local")
    monkeypatch.setenv("MULTICLOUD_STORE_LOCAL_PATH", str(database))

    assert cli_main(["rotate-key", "--new", "--key-id", "k2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    ring = Keyring.parse(key_file.read_text())
    assert ring.ids == ("k2", *old_ring.ids)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "re-encrypted 12 rows under key k2" in out and old_ring.newest_id in out
    assert base64.b64encode(ring._by_id["k2"].key).decode() not in out
    assert set(key_ids_of_rows(database).values()) == {"k2"}

    # Running it again is a no-op that still reports the removable key.
    assert cli_main(["rotate-key", "--no-progress"]) == 0
    assert "re-encrypted 0 rows" in capsys.readouterr().out

    key_file.write_text(ring.without(old_ring.ids).dumps())
    key_file.chmod(0o600)
    store = make(database)
    assert [store.get_secret_values(sid) for sid in ids] == [{"sid": str(sid)} for sid in ids]
    store.close()


_WORKER = textwrap.dedent(
    """
    import random, sys, uuid
    from pathlib import Path
    from multicloud_store.drivers.local import LocalDriver, LocalSettings
    from multicloud_store.settings import StoreSettings
    from multicloud_store.store import SecretsStore

    database, ready, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    store = SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(LocalSettings(path=database)))
    ids = [sid for sid in store.list_secret_ids()]
    failures, calls = [], 0
    while not stop.exists() or calls < 200:
        calls += 1
        sid = random.choice(ids)
        try:
            choice = random.random()
            if choice < 0.5:
                assert store.get_secret_values(sid)["sid"] == str(sid)
            elif choice < 0.8:
                store.update_secret_values(sid, {"sid": str(sid), "n": str(calls)})
            elif choice < 0.95:
                new = uuid.uuid4()
                store.store_secret_values(new, {"sid": str(new)})
                ids.append(new)
            else:
                assert len(list(store.list_secret_ids())) >= len(ids) // 2
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        if calls == 50:
            ready.touch()
    store.close()
    print(len(failures), calls)
    for failure in failures[:5]:
        print(failure)
    """
)


def test_rotate_while_four_processes_read_and_write(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    for _ in range(200):
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"sid": str(sid)})
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    old_ids = driver.key_ids()
    new_id = driver.add_new_key("k2")  # the workers start with both keys, writing under k2

    stop = tmp_path / "stop"
    readies = [tmp_path / f"ready-{i}" for i in range(4)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(database), str(ready), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    try:
        import time

        deadline = time.monotonic() + 120
        while not all(r.exists() for r in readies) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(r.exists() for r in readies)
        report = driver.rotate_keys(batch_size=7)
    finally:
        stop.touch()
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], outputs
    assert [o.split()[0] for o in outputs] == ["0"] * 4, outputs
    assert report.failed == 0
    assert set(key_ids_of_rows(database).values()) == {new_id}
    assert driver.rotate_keys().removable == old_ids
    store.close()

    key_file = tmp_path / "secrets.db.key"
    key_file.write_text(Keyring.parse(key_file.read_text()).without(old_ids).dumps())
    key_file.chmod(0o600)
    store = make(database)
    names = list(store.list_secret_ids())
    assert len(names) >= 200
    for sid in names:
        assert store.get_secret_values(sid)["sid"] == str(sid)
    store.close()


def test_a_row_written_without_a_key_id_by_an_older_version_still_reads(tmp_path: Path) -> None:
    database = tmp_path / "secrets.db"
    store = make(database)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.close()
    # What an older version writes into an upgraded file: its INSERT names no key_id, so the column default ('').
    connection = sqlite3.connect(database)
    connection.execute("UPDATE secrets SET key_id = ''")
    connection.commit()
    connection.close()
    store = make(database)
    assert store.get_secret_values(sid) == {"v": "1"}
    driver = store.driver
    assert isinstance(driver, LocalDriver)
    report = driver.rotate_keys()
    assert report.rewritten == 1 and report.complete
    newest = driver.key_ids()[0]
    store.close()
    assert set(key_ids_of_rows(database).values()) == {newest}


def test_cli_rotate_key_on_a_backend_without_own_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "memory")
    assert cli_main(["rotate-key", "--no-progress"]) == 5
    assert "no keys of its own" in capsys.readouterr().err
