"""What a ZenML deployment sees when the plug-in's configuration or its backend is wrong.

- A bad setting stops ZenML at start: ZenML wraps the plug-in's error in a `RuntimeError` whose text names the
  variable (both spellings), never a credential's value.
- A backend that cannot be reached fails the call within its configured attempts, and ZenML removes the half-made
  secret row.
- A denied read is reported as denied, never as missing, so ZenML never re-creates a secret over values it
  could not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from zenml_flows import unique
from zenml_harness import (
    CLASS_PATH,
    Backend,
    ZenmlServer,
    clean_env,
    free_port,
    new_sentinel,
    plugin_env,
    zenml_process,
)

pytestmark = pytest.mark.timeout(240)


def test_unknown_backend_stops_the_server_with_the_variable_named(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path,
        ZENML_SECRETS_STORE_TYPE="custom",
        ZENML_SECRETS_STORE_CLASS_PATH=CLASS_PATH,
        ZENML_SECRETS_STORE_BACKEND="nosuch",
    )
    server = ZenmlServer(env, tmp_path)
    try:
        code = server.wait_exit(timeout=180)
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert code != 0
    assert "Application startup failed" in log
    assert "RuntimeError: Error initializing custom secrets store" in log
    assert "MULTICLOUD_STORE_BACKEND='nosuch' is not a known backend" in log
    assert "ZENML_SECRETS_STORE_BACKEND" in log


@pytest.mark.parametrize(
    ("label", "setting", "value", "unset", "variable"),
    [
        pytest.param(
            "local", "CACHE_TTL_SECONDS", "abc", None, "CACHE_TTL_SECONDS", id="cache-ttl-not-a-number"
        ),
        # A credential without its key id: the message names the missing variable and never shows the credential.
        pytest.param(
            "aws",
            "AWS_SECRET_ACCESS_KEY",
            new_sentinel("credential"),
            "AWS_ACCESS_KEY_ID",
            "AWS_ACCESS_KEY_ID",
            id="aws-secret-without-key-id",
        ),
    ],
)
def test_bad_setting_fails_at_start_naming_the_variable(
    make_backend: Callable[[str], Backend],
    tmp_path: Path,
    label: str,
    setting: str,
    value: str,
    unset: str | None,
    variable: str,
) -> None:
    env = clean_env(tmp_path, **plugin_env(make_backend(label)))
    env[f"ZENML_SECRETS_STORE_{setting}"] = value
    if unset:
        del env[f"ZENML_SECRETS_STORE_{unset}"]
    with zenml_process(env, tmp_path) as process:
        reply = process.fail("info")
    assert reply.error == "RuntimeError"
    assert reply.message.startswith(
        "Error initializing custom secrets store: multicloud-store secrets store:"
    )
    assert f"ZENML_SECRETS_STORE_{variable}" in reply.message
    assert f"MULTICLOUD_STORE_{variable}" in reply.message
    assert value not in reply.message
    assert value not in process.log_path.read_text(errors="replace")


def test_backend_down_fails_fast_and_leaves_no_secret_row(
    make_backend: Callable[[str], Backend], tmp_path: Path
) -> None:
    backend = make_backend("aws")
    env = clean_env(tmp_path, **plugin_env(backend))
    # Nothing listens there: connection refused, two attempts, then BackendUnavailableError.
    env["ZENML_SECRETS_STORE_AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    env["ZENML_SECRETS_STORE_AWS_MAX_ATTEMPTS"] = "2"
    env["ZENML_SECRETS_STORE_AWS_CONNECT_TIMEOUT"] = "2"
    with zenml_process(env, tmp_path) as process:
        # The plug-in makes no network call at start: a server comes up while its backend is down.
        process.run("info")
        name = unique("down")
        reply = process.fail("create", name=name, values={"key": new_sentinel("down")})
        assert reply.is_a("BackendUnavailableError")
        assert not reply.is_a("KeyError")
        assert name not in process.run("list")["names"]


@pytest.fixture
def gcp_faults(request: pytest.FixtureRequest) -> Iterator[Any]:
    emulator = request.getfixturevalue("gcp_emulator")
    try:
        yield emulator
    finally:
        emulator.clear_faults()


def test_denied_read_is_not_a_missing_secret(
    make_backend: Callable[[str], Backend], gcp_faults: Any, tmp_path: Path
) -> None:
    backend = make_backend("gcp-grpc")
    env = clean_env(tmp_path, **plugin_env(backend))
    with zenml_process(env, tmp_path) as process:
        server_id = process.run("info")["server_id"]
        name = unique("denied")
        values = {"key": new_sentinel("denied")}
        sid = process.run("create", name=name, values=values)["id"]

        gcp_faults.inject_fault("PERMISSION_DENIED", times=10_000, methods={"AccessSecretVersion"})
        for op, args in (
            ("get", {"name": name}),
            # ZenML re-creates a secret only on KeyError: denied, it must stop and leave the values alone.
            ("store_update", {"id": sid, "values": {"key": "overwritten"}}),
        ):
            reply = process.fail(op, **args)
            assert reply.is_a("BackendPermissionError"), f"{op}: {reply.error}: {reply.message}"
            assert not reply.is_a("KeyError")
            assert values["key"] not in reply.message
        gcp_faults.clear_faults()

        assert backend.store(server_id).get_secret_values(sid) == values
        assert process.run("get", name=name)["values"] == values
