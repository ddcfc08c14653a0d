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
    assert listed.stdout.split() == [sid] and "1 secret\n" in listed.stderr
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


# -- issue 13: a CLI that does what a user meant ---------------------------------------------------------------


def put_json(env: dict[str, str], *args: str) -> str:
    result = run(env, "put", "--json", *args)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def reveal(env: dict[str, str], sid: str) -> dict[str, str]:
    result = run(env, "get", sid, "--reveal", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["values"])


def test_put_refuses_no_values_and_duplicate_keys(env: dict[str, str]) -> None:
    empty = run(env, "put")
    assert empty.returncode == 2 and "no values" in empty.stderr and "--allow-empty" in empty.stderr
    twice = run(env, "put", "a=b", "a=c")
    assert twice.returncode == 2 and "argument #2 repeats key 'a'" in twice.stderr
    in_json = run(env, "put", "--stdin", stdin='{"a": "b", "a": "c"}')
    assert in_json.returncode == 2 and "'a' is given twice" in in_json.stderr
    assert run(env, "list").stdout == ""  # nothing was stored by any of them
    sid = put_json(env, "--allow-empty")
    assert reveal(env, sid) == {}


def test_update_refuses_no_values_names_removed_keys_and_merges(env: dict[str, str]) -> None:
    sid = put_json(env, "user=admin", "password=p", "host=h")
    nothing = run(env, "update", sid)
    assert nothing.returncode == 2 and "no values" in nothing.stderr
    assert reveal(env, sid) == {"user": "admin", "password": "p", "host": "h"}  # not replaced by {}

    merged = run(env, "update", sid, "--merge", "password=new")
    assert merged.returncode == 0, merged.stderr
    assert "removed" not in merged.stdout
    assert reveal(env, sid) == {"user": "admin", "password": "new", "host": "h"}

    replaced = run(env, "update", sid, "user=root")
    assert replaced.returncode == 0, replaced.stderr
    assert "(1 key)" in replaced.stdout and "removed 2 keys: host, password" in replaced.stdout
    assert json.loads(run(env, "update", sid, "--json", "a=b").stdout)["removed"] == ["user"]

    cleared = run(env, "update", sid, "--allow-empty")
    assert cleared.returncode == 0 and reveal(env, sid) == {}
    missing = run(env, "update", str(uuid.UUID(int=9)), "--merge", "a=b")
    assert missing.returncode == 3


def test_reads_and_lists_create_no_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}
    env = {**base, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    env["MULTICLOUD_STORE_LOCAL_PATH"] = str(tmp_path / "nowhere" / "store.db")
    assert run(env, "list").returncode == 0
    assert run(env, "get", str(uuid.UUID(int=1))).returncode == 3
    assert not (tmp_path / "nowhere").exists()


def corrupt_all_rows(path: str) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute("UPDATE secrets SET ciphertext = zeroblob(length(ciphertext))")
    connection.commit()
    connection.close()


def test_delete_force_removes_a_corrupted_secret_of_this_deployment(env: dict[str, str]) -> None:
    sid = put_json(env, "a=b")
    corrupt_all_rows(env["MULTICLOUD_STORE_LOCAL_PATH"])
    plain = run(env, "delete", sid)
    assert plain.returncode == 8 and "integrity" in plain.stderr

    other = {**env, "MULTICLOUD_STORE_DEPLOYMENT_ID": "other"}
    foreign = run(other, "delete", "--force", "--yes", sid)
    assert foreign.returncode == 3 and f"secret {sid} not found" in foreign.stderr

    unconfirmed = run(env, "delete", "--force", sid, stdin="")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert run(env, "list").stdout.split() == [sid]

    forced = run(env, "delete", "--force", "--yes", sid)
    assert forced.returncode == 0, forced.stderr
    assert "integrity check" in forced.stdout
    assert run(env, "list").stdout == ""
    assert run(env, "delete", "--force", "--yes", sid).returncode == 3


def test_delete_force_of_a_healthy_secret_deletes_it(env: dict[str, str]) -> None:
    sid = put_json(env, "a=b")
    result = run(env, "delete", "--force", "--json", "--yes", sid)
    assert json.loads(result.stdout) == {"id": sid, "deleted": True, "corrupted": False}


def test_empty_local_path_is_a_configuration_error(env: dict[str, str]) -> None:
    result = run({**env, "MULTICLOUD_STORE_LOCAL_PATH": ""}, "list")
    assert result.returncode == 5, result.stderr
    assert "MULTICLOUD_STORE_LOCAL_PATH must not be empty" in result.stderr
    assert "unexpected" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "must be at least 1"),
        (["--workers", "-3"], "must be at least 1"),
        (["--workers", "many"], "whole number"),
        (["--dry-run", "--delete-source"], "cannot be combined"),
    ],
)
def test_migrate_usage_errors(env: dict[str, str], tmp_path: Path, args: list[str], message: str) -> None:
    src, dst = tmp_path / "a.env", tmp_path / "b.env"
    src.write_text(f"MULTICLOUD_STORE_LOCAL_PATH={tmp_path / 'a.db'}\n")
    dst.write_text(f"MULTICLOUD_STORE_LOCAL_PATH={tmp_path / 'b.db'}\n")
    result = run(env, "migrate", "--source-env-file", str(src), "--target-env-file", str(dst), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "unexpected" not in result.stderr
    assert not (tmp_path / "b.db").exists()


def test_output_into_a_closed_pipe_stops_quietly(env: dict[str, str]) -> None:
    from multicloud_store.store import SecretsStore

    with SecretsStore.from_env({"MULTICLOUD_STORE_LOCAL_PATH": env["MULTICLOUD_STORE_LOCAL_PATH"]}) as store:
        for i in range(3000):
            store.store_secret_values(uuid.UUID(int=i + 1), {"k": "v"})
    # `multicloud-store list | head -1`: the reader goes away after one line.
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "multicloud_store.cli"]
    producer = subprocess.Popen([*command, "list"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout is not None and producer.stderr is not None
    first = producer.stdout.readline()
    producer.stdout.close()
    stderr = producer.stderr.read().decode()
    code = producer.wait(timeout=120)
    assert uuid.UUID(first.decode().strip())
    assert code == 141
    assert stderr == "", stderr


def test_unknown_variables_are_reported_with_the_closest_name(env: dict[str, str]) -> None:
    typo = {**env, "MULTICLOUD_STORE_BAKEND": "aws", "MULTICLOUD_STORE_NEWER_FEATURE": "1"}
    info = run(typo, "info")
    assert info.returncode == 0, info.stderr  # warn, never fail
    assert (
        "MULTICLOUD_STORE_BAKEND" in info.stderr and "did you mean MULTICLOUD_STORE_BACKEND?" in info.stderr
    )
    assert "unknown variables" in info.stdout and "MULTICLOUD_STORE_NEWER_FEATURE" in info.stdout
    data = json.loads(run(typo, "info", "--json").stdout)
    assert data["unknown_variables"] == {
        "MULTICLOUD_STORE_BAKEND": "MULTICLOUD_STORE_BACKEND",
        "MULTICLOUD_STORE_NEWER_FEATURE": None,
    }
    listed = run(typo, "list")
    assert listed.returncode == 0 and "did you mean MULTICLOUD_STORE_BACKEND?" in listed.stderr
    clean = run({**env, "MULTICLOUD_STORE_DEBUG": "", "MULTICLOUD_STORE_TEST_POSTGRES_URL": "x"}, "list")
    assert clean.stderr == "0 secrets\n"


def test_messages_in_the_users_terms(env: dict[str, str]) -> None:
    missing = str(uuid.UUID(int=1))
    result = run(env, "get", missing)
    assert result.stderr == f"error: secret {missing} not found\n"  # the id typed, not a backend name

    too_large = run(env, "put", f"k={'x' * 70_000}")
    assert too_large.returncode == 2
    assert "no id was created" in too_large.stderr and "limit is 65536 bytes" in too_large.stderr
    sid = str(uuid.uuid4())
    named = run(env, "put", "--id", sid, f"k={'x' * 70_000}")
    assert named.returncode == 2 and sid in named.stderr and "no id was created" not in named.stderr

    owned = put_json(env, "a=b")
    other = run({**env, "MULTICLOUD_STORE_DEPLOYMENT_ID": "other"}, "get", "--json", owned)
    assert other.returncode == 3
    error = json.loads(other.stderr)["error"]
    assert error["type"] == "SecretNotFoundError" and error["message"] == f"secret {owned} not found"
    assert "deployment" not in other.stderr

    assert "(1 key)" in run(env, "put", "a=b").stdout
    assert "(2 keys)" in run(env, "put", "a=b", "c=d").stdout
    assert run(env, "list").stderr == "3 secrets\n"
    empty_key = run(env, "put", "--stdin", stdin='{"a": "b", "": "x"}')
    assert empty_key.returncode == 2 and "secret key #2 is empty" in empty_key.stderr
    bad_argument = run(env, "put", "a=b", "novalue")
    assert "argument #2 is not KEY=VALUE" in bad_argument.stderr

    pattern = run({**env, "MULTICLOUD_STORE_DEPLOYMENT_ID": "Has Spaces"}, "list")
    assert pattern.returncode == 5
    assert "MULTICLOUD_STORE_DEPLOYMENT_ID must be 1 to 63 lowercase letters" in pattern.stderr
    assert "String should match" not in pattern.stderr and "Value error" not in pattern.stderr
    key = run({**env, "MULTICLOUD_STORE_LOCAL_KEY": "not base64!"}, "list")
    assert key.returncode == 5 and "MULTICLOUD_STORE_LOCAL_KEY must be base64" in key.stderr
    assert "Value error" not in key.stderr


def test_version_and_json_errors(env: dict[str, str]) -> None:
    from multicloud_store import __version__

    version = run(env, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"multicloud-store {__version__}"
    usage = run(env, "get", "--json", "not-a-uuid")
    assert usage.returncode == 2
    assert json.loads(usage.stderr)["error"]["exit_code"] == 2
    parse = run(env, "--json", "put", "--no-such-option")
    assert parse.returncode == 2 and json.loads(parse.stderr)["error"]["type"] == "UsageError"
    config = run({**env, "MULTICLOUD_STORE_BACKEND": "nosuch"}, "list", "--json")
    error = json.loads(config.stderr)["error"]
    assert config.returncode == 5 and error["variable"] == "MULTICLOUD_STORE_BACKEND"


def test_reveal_is_unambiguous_for_newlines_and_equals(env: dict[str, str]) -> None:
    sid = put_json(env, "plain=value", "pem=line1\nline2", "dsn=a=b")
    result = run(env, "get", sid, "--reveal")
    assert result.stdout.splitlines() == ["plain=value", 'pem="line1\\nline2"', 'dsn="a=b"']
    assert "--json" in result.stderr


def test_memory_backend_warns_that_nothing_outlives_the_process(env: dict[str, str]) -> None:
    result = run({**env, "MULTICLOUD_STORE_BACKEND": "memory"}, "put", "a=b")
    assert result.returncode == 0
    assert "nothing outlives this command" in result.stderr


def test_info_lists_installed_and_installable_backends_and_the_default_path(env: dict[str, str]) -> None:
    from multicloud_store.drivers.local import default_path
    from multicloud_store.registry import KNOWN_DISTRIBUTIONS, installed_backends

    data = json.loads(run(env, "info", "--json").stdout)
    assert data["installed_backends"] == installed_backends()
    assert {"local", "memory"} <= set(data["installed_backends"])
    missing = sorted(set(KNOWN_DISTRIBUTIONS) - set(installed_backends()))
    assert sorted(data["installable_backends"]) == missing
    assert all(command.startswith("pip install") for command in data["installable_backends"].values())
    assert data["default_local_path"] == str(default_path())
    human = run(env, "info").stdout
    assert f"default local store path: {default_path()}" in human


def test_env_file_wins_over_process_variables(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "store.env"
    file.write_text("MULTICLOUD_STORE_DEPLOYMENT_ID=from-file\n")
    process = {**env, "MULTICLOUD_STORE_DEPLOYMENT_ID": "from-process"}
    data = json.loads(run(process, "info", "--json", "--env-file", str(file)).stdout)
    assert data["settings"]["MULTICLOUD_STORE_DEPLOYMENT_ID"] == "from-file"


def _on_a_terminal(env: dict[str, str], args: list[str], answers: list[bytes]) -> tuple[int, str]:
    """Run the command with a pseudo-terminal as its controlling terminal and stdin; type the answers."""
    import pty
    import select
    import time

    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "multicloud_store.cli"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        import signal

        # A runner started in the background (nohup, `cmd &` in a script) ignores SIGINT, and an ignored signal
        # stays ignored across exec: give the command the default disposition a user's shell gives it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execve(command[0], [*command, *args], env)
    output = b""
    deadline = time.monotonic() + 120
    pending = list(answers)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            # Answer each prompt once it has been printed.
            if pending and output.rstrip().endswith((b":", b"]")):
                os.write(fd, pending.pop(0))
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0) if not finished else (pid, status)
    # The child may have written its last lines after our last read: drain them (EIO or EOF ends the pty).
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_put_stdin_on_a_terminal_prompts_without_echo(env: dict[str, str]) -> None:
    code, screen = _on_a_terminal(
        env, ["put", "--stdin", "--json"], [b"user\n", b"hidden-" + CANARY.encode() + b"\n", b"\n"]
    )
    assert code == 0, screen
    assert "value of 'user'" in screen
    assert CANARY not in screen  # the value was not echoed
    import re

    match = re.search(r"\{.*\}", screen)
    assert match, screen
    sid = json.loads(match.group(0))["id"]
    assert reveal(env, sid) == {"user": "hidden-" + CANARY}


def test_interrupt_exits_130(env: dict[str, str]) -> None:
    import signal

    code, screen = _on_a_terminal(env, ["put", "--stdin"], [b"\x03"])  # Ctrl-C at the first prompt
    assert code == 130, screen
    assert "interrupted" in screen
    assert signal.SIGINT  # the terminal turned Ctrl-C into SIGINT
    assert run(env, "list").stdout == ""


@pytest.mark.parametrize(
    ("module", "port_options"),
    [
        ("multicloud_store_gcp.testing", ["--grpc-port", "{port}", "--rest-port", "0"]),
        ("multicloud_store_gcp.testing", ["--grpc-port", "0", "--rest-port", "{port}"]),
        ("multicloud_store_azure.testing", ["--port", "{port}"]),
    ],
)
def test_emulator_servers_report_a_port_in_use_in_one_line(module: str, port_options: list[str]) -> None:
    import importlib.util
    import socket

    if importlib.util.find_spec(module.partition(".")[0]) is None:
        pytest.skip(f"{module} is not installed in this environment")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        options = [option.replace("{port}", port) for option in port_options]
        result = subprocess.run(
            [sys.executable, "-m", module, *options], capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot listen" in result.stderr and port in result.stderr


class _LaggingDriver:
    """A memory backend whose reads serve the previous payload for a few reads after each replace or delete,
    as a service with documented eventual consistency may."""

    def __init__(self, stale_reads: int) -> None:
        from multicloud_store.drivers.memory import MemoryDriver

        self.inner = MemoryDriver()
        self.stale_reads = stale_reads
        self._previous: dict[str, object] = {}
        self._left: dict[str, int] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def replace(self, name: str, payload: str, labels: dict[str, str]) -> None:
        self._previous[name], self._left[name] = self.inner.read(name), self.stale_reads
        self.inner.replace(name, payload, labels)

    def delete(self, name: str) -> None:
        self._previous[name], self._left[name] = self.inner.read(name), self.stale_reads
        self.inner.delete(name)

    def read(self, name: str) -> object:
        if self._left.get(name, 0) > 0:
            self._left[name] -= 1
            return self._previous[name]
        return self.inner.read(name)


def _check_with(monkeypatch: pytest.MonkeyPatch, driver: object, *args: str) -> tuple[int, str, str]:
    import io

    from multicloud_store import cli
    from multicloud_store.settings import StoreSettings
    from multicloud_store.store import SecretsStore

    monkeypatch.setattr(
        cli,
        "_store",
        lambda _args: SecretsStore(StoreSettings(backend="memory"), driver=driver),  # type: ignore[arg-type]
    )
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main(["check", *args], stdout=out)
    return code, out.getvalue(), err.getvalue()


def test_check_waits_out_documented_lag_and_says_which_guarantee_it_tested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _check_with(monkeypatch, _LaggingDriver(stale_reads=2), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["guarantees"]["read-after-create"] == "immediate"
    assert report["guarantees"]["read-after-update"].startswith("eventual (seen after")
    assert report["guarantees"]["read-after-delete"].startswith("eventual (seen after")

    code, out, _ = _check_with(monkeypatch, _LaggingDriver(stale_reads=0))
    assert code == 0 and "read-after-update      immediate" in out


def test_check_fails_when_the_lag_outlasts_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _check_with(monkeypatch, _LaggingDriver(stale_reads=10**6), "--wait", "0.5")
    assert code == 1
    assert "read-after-update not seen within 0.5 s" in err


def test_main_in_process_leaves_the_library_logger_as_it_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    library = logging.getLogger("multicloud_store")
    before = (list(library.handlers), library.level, library.propagate)
    code, _, _ = _check_with(monkeypatch, _LaggingDriver(stale_reads=0))
    assert code == 0
    assert (list(library.handlers), library.level, library.propagate) == before


def test_unrecognized_arguments_never_echo_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    from multicloud_store import cli

    code = cli.main(["update", str(uuid.uuid4()), "--merge", "token=s3cr3t-value", "--bogus"])
    err = capsys.readouterr().err
    assert code == 2
    assert "s3cr3t-value" not in err
    assert "token=..." in err and "--bogus" in err
