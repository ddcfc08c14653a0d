"""A real ZenML server process on 127.0.0.1 with the plug-in, driven over its REST API by ZenML's `Client`.

The server runs ``uvicorn zenml.zen_server.zen_server_api:app`` on its own SQLite database with the
``ZENML_SECRETS_STORE_*`` variables, the way the ZenML server image runs; the client process only has
``ZENML_STORE_URL=http://127.0.0.1:PORT`` and never loads the plug-in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from zenml_flows import Scenario, check_connector, check_crud, check_lost_secret, check_too_large, unique
from zenml_harness import Backend, clean_env, new_sentinel, plugin_env, zenml_process, zenml_server

pytestmark = pytest.mark.timeout(300)

CASES = [
    pytest.param(("local", "zenml"), id="local"),
    pytest.param(("aws", "zenml"), id="aws"),
    pytest.param(("gcp-grpc", "mcs"), id="gcp-grpc"),
    pytest.param(("azure", "mcs"), id="azure"),
    pytest.param(("vault", "mcs"), id="vault"),
    pytest.param(("sql", "zenml"), id="sql"),
]


@pytest.fixture(scope="module", params=CASES)
def scenario(
    request: pytest.FixtureRequest,
    make_backend: Callable[[str], Backend],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    label, via = request.param
    backend = make_backend(label)
    server_dir = tmp_path_factory.mktemp(f"zenml-server-{label}")
    client_dir = tmp_path_factory.mktemp(f"zenml-rest-client-{label}")
    with zenml_server(clean_env(server_dir, **plugin_env(backend, via=via)), server_dir) as server:
        info = server.info()
        assert info["secrets_store_type"] == "custom"
        with zenml_process(server.client_env(client_dir), client_dir) as process:
            seen = process.run("info")
            # The client talks REST and holds no secrets store of its own.
            assert seen["zen_store"] == "RestZenStore"
            assert seen["secrets_store"] is None
            assert seen["server_id"] == info["id"]
            yield Scenario(process, backend, info["id"], [server_dir, client_dir], server_dir / "zenml.db")


def test_create_get_update_list_delete_over_rest(scenario: Scenario) -> None:
    check_crud(scenario)


def test_values_too_large_for_the_backend_over_rest(scenario: Scenario) -> None:
    check_too_large(scenario, over_rest=True)


def test_service_connector_over_rest(scenario: Scenario) -> None:
    check_connector(scenario)


def test_secret_lost_in_the_backend_over_rest(scenario: Scenario, tmp_path: Path) -> None:
    check_lost_secret(scenario, over_rest=True, workdir=tmp_path)


def test_denied_read_over_rest_is_an_error_not_a_missing_secret(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    if scenario.backend.kind != "gcp":
        pytest.skip("faults are injected through the GCP emulator")
    emulator = request.getfixturevalue("gcp_emulator")
    p = scenario.process
    name = unique("denied")
    values = {"key": new_sentinel("denied")}
    sid = p.run("create", name=name, values=values)["id"]
    emulator.inject_fault("PERMISSION_DENIED", times=10_000, methods={"AccessSecretVersion"})
    try:
        replies = [p.fail("get", name=name), p.fail("store_update", id=sid, values={"key": "overwritten"})]
    finally:
        emulator.clear_faults()
    for reply in replies:
        # ZenML's server answers 500 for errors it has no status for; its client raises RuntimeError, not KeyError.
        assert reply.error == "RuntimeError", f"{reply.error}: {reply.message}"
        assert "permission" in reply.message.lower()
        assert values["key"] not in reply.message
    assert scenario.store.get_secret_values(sid) == values
