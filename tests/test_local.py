"""The embedded local backend: encryption, keys, file modes, tampering, several processes."""

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

from multicloud_store.drivers.local import LocalDriver, LocalSettings, default_path
from multicloud_store.errors import ConfigurationError, SecretCorruptedError, SecretNotFoundError
from multicloud_store.store import SecretsStore


def make(env: dict[str, str], **extra: str) -> SecretsStore:
    return SecretsStore.from_env({**env, **extra})


def test_values_are_encrypted_at_rest(local_env: dict[str, str]) -> None:
    store = make(local_env)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"password": "plain-text-canary"})
    store.close()
    raw = Path(local_env["MULTICLOUD_STORE_LOCAL_PATH"]).read_bytes()
    assert b"plain-text-canary" not in raw
    assert str(sid).encode() in raw  # names and labels are not secret and stay searchable


def test_files_are_private(local_env: dict[str, str], tmp_path: Path) -> None:
    store = make(local_env, MULTICLOUD_STORE_LOCAL_PATH=str(tmp_path / "new-dir" / "secrets.db"))
    store.store_secret_values(uuid.uuid4(), {"a": "b"})
    database = tmp_path / "new-dir" / "secrets.db"
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    for path in (database, database.with_name("secrets.db.key"), database.with_name("secrets.db-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    store.close()


def test_key_from_environment_is_used_and_no_key_file_written(
    local_env: dict[str, str], random_key: str
) -> None:
    store = make(local_env, MULTICLOUD_STORE_LOCAL_KEY=random_key)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    store.close()
    assert not Path(local_env["MULTICLOUD_STORE_LOCAL_PATH"] + ".key").exists()
    assert make(local_env, MULTICLOUD_STORE_LOCAL_KEY=random_key).get_secret_values(sid) == {"a": "b"}


def test_wrong_key_is_a_clear_error_not_garbage(local_env: dict[str, str], random_key: str) -> None:
    store = make(local_env, MULTICLOUD_STORE_LOCAL_KEY=random_key)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    store.close()
    other = base64.b64encode(os.urandom(32)).decode()
    wrong = make(local_env, MULTICLOUD_STORE_LOCAL_KEY=other)
    with pytest.raises(ConfigurationError, match=r"MULTICLOUD_STORE_LOCAL_KEY.*not the key") as info:
        wrong.get_secret_values(sid)
    assert info.value.variable == "MULTICLOUD_STORE_LOCAL_KEY"
    assert other not in str(info.value)
    assert make(local_env, MULTICLOUD_STORE_LOCAL_KEY=random_key).get_secret_values(sid) == {"a": "b"}


@pytest.mark.parametrize(
    ("key", "message"),
    [("not base64!", "must be base64"), (base64.b64encode(b"short").decode(), "32 bytes"), ("", "base64|32")],
)
def test_bad_key_setting(local_env: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="MULTICLOUD_STORE_LOCAL_KEY") as info:
        make(local_env, MULTICLOUD_STORE_LOCAL_KEY=key)
    assert info.value.variable == "MULTICLOUD_STORE_LOCAL_KEY"


def test_bad_key_file(local_env: dict[str, str], tmp_path: Path) -> None:
    key_file = tmp_path / "bad.key"
    key_file.write_text("garbage")
    key_file.chmod(0o600)
    store = make(local_env, MULTICLOUD_STORE_LOCAL_KEY_FILE=str(key_file))
    with pytest.raises(ConfigurationError, match=r"MULTICLOUD_STORE_LOCAL_KEY_FILE|does not hold"):
        store.get_secret_values(uuid.uuid4())


def _tamper(path: str, sql: str, *params: object) -> None:
    connection = sqlite3.connect(path)
    connection.execute(sql, params)
    connection.commit()
    connection.close()


def test_tampered_ciphertext_is_detected(local_env: dict[str, str]) -> None:
    store = make(local_env)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    _tamper(
        local_env["MULTICLOUD_STORE_LOCAL_PATH"],
        "UPDATE secrets SET ciphertext = zeroblob(length(ciphertext))",
    )
    with pytest.raises(SecretCorruptedError, match="integrity"):
        store.get_secret_values(sid)


def test_row_copied_onto_another_id_fails_to_decrypt(local_env: dict[str, str]) -> None:
    store = make(local_env)
    a, b = uuid.uuid4(), uuid.uuid4()
    store.store_secret_values(a, {"who": "a"})
    store.store_secret_values(b, {"who": "b"})
    _tamper(
        local_env["MULTICLOUD_STORE_LOCAL_PATH"],
        "UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE name = ?), "
        "ciphertext = (SELECT ciphertext FROM secrets WHERE name = ?) WHERE name = ?",
        store.secret_name(a),
        store.secret_name(a),
        store.secret_name(b),
    )
    with pytest.raises(SecretCorruptedError):
        store.get_secret_values(b)
    assert store.get_secret_values(a) == {"who": "a"}


def test_relabelled_row_is_detected(local_env: dict[str, str]) -> None:
    store = make(local_env)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    _tamper(local_env["MULTICLOUD_STORE_LOCAL_PATH"], "UPDATE secrets SET labels = '{}'")
    with pytest.raises(SecretCorruptedError):
        store.get_secret_values(sid)


def test_not_a_database(local_env: dict[str, str]) -> None:
    Path(local_env["MULTICLOUD_STORE_LOCAL_PATH"]).write_bytes(b"this is not sqlite" * 100)
    store = make(local_env)
    with pytest.raises(SecretCorruptedError):
        store.get_secret_values(uuid.uuid4())


def test_unwritable_location_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SecretsStore.from_env({"MULTICLOUD_STORE_LOCAL_PATH": str(blocker / "sub" / "s.db")})
    with pytest.raises(ConfigurationError, match="MULTICLOUD_STORE_LOCAL"):
        store.get_secret_values(uuid.uuid4())


def test_default_path_is_in_the_user_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_path() == tmp_path / "multicloud-store" / "secrets.db"
    assert LocalSettings().resolved_key_file() == tmp_path / "multicloud-store" / "secrets.db.key"


def test_several_processes_share_one_file(local_env: dict[str, str]) -> None:
    script = textwrap.dedent(
        """
        import sys, uuid
        from multicloud_store import SecretsStore
        store = SecretsStore.from_env({"MULTICLOUD_STORE_LOCAL_PATH": sys.argv[1]})
        for i in range(40):
            sid = uuid.uuid4()
            store.store_secret_values(sid, {"i": str(i)})
            store.update_secret_values(sid, {"i": str(i), "updated": "yes"})
            assert store.get_secret_values(sid) == {"i": str(i), "updated": "yes"}
        """
    )
    path = local_env["MULTICLOUD_STORE_LOCAL_PATH"]
    processes = [subprocess.Popen([sys.executable, "-c", script, path]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0, 0]
    store = make(local_env)
    assert len(list(store.list_secret_ids())) == 160


def test_driver_close_then_use_is_an_error(tmp_path: Path) -> None:
    driver = LocalDriver(LocalSettings(path=tmp_path / "x.db"))
    driver.health_check()
    driver.close()
    with pytest.raises(Exception, match="closed"):
        driver.read("x")


def test_missing_row(tmp_path: Path) -> None:
    driver = LocalDriver(LocalSettings(path=tmp_path / "x.db"))
    with pytest.raises(SecretNotFoundError):
        driver.read("nope")
    with pytest.raises(SecretNotFoundError):
        driver.replace("nope", "{}", {})
    with pytest.raises(SecretNotFoundError):
        driver.delete("nope")
    assert "x.db" in repr(driver)
