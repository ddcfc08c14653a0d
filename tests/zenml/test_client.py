"""ZenML's own `Client` on a local SQLite ZenML store, with the plug-in on every backend.

One ZenML process per backend (module scope): the tests below share it, each with secrets of its own. Backend
options reach the plug-in as ``ZENML_SECRETS_STORE_<OPTION>`` on some backends and as ``MULTICLOUD_STORE_*`` on
the others, so both ways are exercised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from zenml_flows import Scenario, check_connector, check_crud, check_lost_secret, check_too_large
from zenml_harness import CLASS_PATH, Backend, clean_env, files_containing, plugin_env, zenml_process

pytestmark = pytest.mark.timeout(240)

CASES = [
    pytest.param(("local", "zenml"), id="local"),
    pytest.param(("aws", "mcs"), id="aws"),
    pytest.param(("gcp-grpc", "zenml"), id="gcp-grpc"),
    pytest.param(("gcp-rest", "mcs"), id="gcp-rest"),
    pytest.param(("azure", "zenml"), id="azure"),
    pytest.param(("vault", "zenml"), id="vault"),
    pytest.param(("sql", "mcs"), id="sql"),
]


@pytest.fixture(scope="module", params=CASES)
def scenario(
    request: pytest.FixtureRequest,
    make_backend: Callable[[str], Backend],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    label, via = request.param
    backend = make_backend(label)
    workdir = tmp_path_factory.mktemp(f"zenml-client-{label}")
    env = clean_env(workdir, **plugin_env(backend, via=via))
    with zenml_process(env, workdir) as process:
        info = process.run("info")
        assert info["zen_store"] == "SqlZenStore"
        assert info["secrets_store"] == CLASS_PATH
        yield Scenario(process, backend, info["server_id"], [workdir], workdir / "zenml.db")


def test_create_get_update_list_delete(scenario: Scenario) -> None:
    check_crud(scenario)


def test_values_too_large_for_the_backend(scenario: Scenario) -> None:
    check_too_large(scenario, over_rest=False)


def test_service_connector_credentials_go_through_the_store(scenario: Scenario) -> None:
    check_connector(scenario)


def test_secret_lost_in_the_backend(scenario: Scenario, tmp_path: Path) -> None:
    check_lost_secret(scenario, over_rest=False, workdir=tmp_path)


def test_credentials_reach_zenml_config_only_as_zenml_variables(scenario: Scenario) -> None:
    # ZenML writes every ZENML_SECRETS_STORE_* option into its config.yaml; MULTICLOUD_STORE_* it never sees.
    credentials = [
        key
        for key in scenario.backend.env
        if key.endswith(("_SECRET_ACCESS_KEY", "_ACCESS_TOKEN", "_VAULT_TOKEN", "_SQL_KEY", "_SQL_URL"))
    ]
    if not credentials:
        pytest.skip(f"backend {scenario.backend.label} is configured without a credential")
    for key in credentials:
        hits = files_containing(scenario.zenml_dirs[0], scenario.backend.env[key])
        given_as_multicloud_variable = key in scenario.process.env
        assert hits == ([] if given_as_multicloud_variable else ["config/config.yaml"])
