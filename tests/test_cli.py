"""The `multicloud-store` console script, run for real in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SCRIPT = shutil.which("multicloud-store") or ""
CANARY = "cli-canary-value-93b1"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}
    return {**base, "MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "cli.db")}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "multicloud_store.cli"]
    return subprocess.run(
        [*command, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_console_script_is_installed() -> None:
    assert SCRIPT, "the multicloud-store console script is not on PATH"


def test_check_round_trip_on_the_default_backend(env: dict[str, str]) -> None:
    result = run(env, "check", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "local" and report["ok"] is True
    assert [s["step"] for s in report["steps"]] == [
        "health_check",
        "store_secret_values",
        "get_secret_values",
        "update_secret_values",
        "delete_secret_values",
    ]
    human = run(env, "check")
    assert human.returncode == 0 and "backend local: ok" in human.stdout


def test_put_get_update_list_delete(env: dict[str, str], tmp_path: Path) -> None:
    put = run(env, "put", "--json", "user=admin", f"password={CANARY}", "empty=")
    assert put.returncode == 0, put.stderr
    sid = json.loads(put.stdout)["id"]
    assert CANARY not in put.stdout + put.stderr

    get = run(env, "get", sid)
    assert get.returncode == 0
    assert get.stdout.split() == ["empty", "password", "user"]
    assert CANARY not in get.stdout + get.stderr

    revealed = run(env, "get", sid, "--reveal", "--json")
    assert json.loads(revealed.stdout)["values"] == {"user": "admin", "password": CANARY, "empty": ""}

    file = tmp_path / "values.json"
    file.write_text(json.dumps({"token": "t"}))
    assert run(env, "update", sid, "--file", str(file)).returncode == 0
    assert run(env, "get", sid, "--reveal").stdout == "token=t\n"
    assert run(env, "update", sid, "--stdin", stdin='{"from": "stdin"}').returncode == 0
    assert run(env, "get", sid, "--reveal").stdout == "from=stdin\n"

    listed = run(env, "list")
    assert listed.stdout.split() == [sid] and "1 secrets" in listed.stderr
    assert run(env, "delete", sid).returncode == 0
    assert run(env, "list", "--json").stdout == ""


def test_put_with_explicit_id(env: dict[str, str]) -> None:
    sid = str(uuid.uuid4())
    assert run(env, "put", "--id", sid, "a=b").returncode == 0
    exists = run(env, "put", "--id", sid, f"a={CANARY}")
    assert exists.returncode == 4
    assert "already exists" in exists.stderr and CANARY not in exists.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["get", str(uuid.UUID(int=1))], None, 3, "not found"),
        (["update", str(uuid.UUID(int=1)), "a=b"], None, 3, "not found"),
        (["delete", str(uuid.UUID(int=1))], None, 3, "not found"),
        (["get", "not-a-uuid"], None, 2, "must be a UUID"),
        (["put", "novalue"], None, 2, "not KEY=VALUE"),
        (["put", "=value"], None, 2, "empty"),
        (["put", "--stdin"], "[1, 2]", 2, "JSON document must be an object"),
        (["put", "--stdin"], "{not json", 2, "not valid JSON"),
        (["put", "--stdin"], '{"a": 1}', 2, "not a str"),
        (["put", "--stdin", "a=b"], "{}", 2, "not several"),
        (["put", "--file", "/nonexistent.json"], None, 2, "cannot read"),
        (["put", f"k={'x' * 70_000}"], None, 2, "limit is 65536 bytes"),
    ],
)
def test_exit_codes_and_messages(
    env: dict[str, str], args: list[str], stdin: str | None, code: int, message: str
) -> None:
    result = run(env, *args, stdin=stdin)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_configuration_errors_exit_5(env: dict[str, str]) -> None:
    unknown = run({**env, "MULTICLOUD_STORE_BACKEND": "nosuch"}, "list")
    assert unknown.returncode == 5 and "known backends" in unknown.stderr
    bad = run({**env, "MULTICLOUD_STORE_CACHE_TTL_SECONDS": "x"}, "info")
    assert bad.returncode == 5 and "MULTICLOUD_STORE_CACHE_TTL_SECONDS" in bad.stderr


def test_wrong_key_exits_5_and_corrupted_row_exits_8(env: dict[str, str], tmp_path: Path) -> None:
    import base64
    import sqlite3

    key = base64.b64encode(os.urandom(32)).decode()
    sid = json.loads(run({**env, "MULTICLOUD_STORE_LOCAL_KEY": key}, "put", "--json", "a=b").stdout)["id"]
    other = base64.b64encode(os.urandom(32)).decode()
    wrong = run({**env, "MULTICLOUD_STORE_LOCAL_KEY": other}, "get", sid)
    assert wrong.returncode == 5 and "not the key" in wrong.stderr and other not in wrong.stderr
    connection = sqlite3.connect(env["MULTICLOUD_STORE_LOCAL_PATH"])
    connection.execute("UPDATE secrets SET ciphertext = zeroblob(length(ciphertext))")
    connection.commit()
    connection.close()
    corrupted = run({**env, "MULTICLOUD_STORE_LOCAL_KEY": key}, "get", sid)
    assert corrupted.returncode == 8 and "integrity" in corrupted.stderr


def test_info_redacts_credentials(env: dict[str, str]) -> None:
    import base64

    key = base64.b64encode(os.urandom(32)).decode()
    result = run({**env, "MULTICLOUD_STORE_LOCAL_KEY": key}, "info", "--json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["backend"] == "local"
    assert info["settings"]["MULTICLOUD_STORE_LOCAL_KEY"] == "**********"
    assert key not in result.stdout


def test_env_file_option(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "store.env"
    file.write_text(
        f"MULTICLOUD_STORE_LOCAL_PATH={tmp_path / 'from-file.db'}\nMULTICLOUD_STORE_DEPLOYMENT_ID=filed\n"
    )
    result = run(env, "info", "--json", "--env-file", str(file))
    assert json.loads(result.stdout)["settings"]["MULTICLOUD_STORE_DEPLOYMENT_ID"] == "filed"
    assert run(env, "put", "a=b", "--env-file", str(file)).returncode == 0
    assert (tmp_path / "from-file.db").exists()


def test_help_lists_every_command(env: dict[str, str]) -> None:
    result = run(env, "--help")
    for command in ("info", "check", "put", "get", "update", "delete", "list", "migrate"):
        assert command in result.stdout


def test_global_options_work_before_and_after_the_command(env: dict[str, str]) -> None:
    before = run(env, "--json", "info")
    after = run(env, "info", "--json")
    assert json.loads(before.stdout)["backend"] == json.loads(after.stdout)["backend"] == "local"
