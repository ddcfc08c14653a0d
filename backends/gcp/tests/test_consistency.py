"""Issue 10 on GCP: real-service semantics through `SecretsStore` and the real client library, over the wire.

- the ``latest`` alias is eventually consistent (the emulator's ``stale_latest`` knob);
- an interrupted store leaves an empty secret that must stay deletable and completable;
- a write can commit while every answer to it is lost (the emulator's ``lose_answers`` knob);
- endpoints are never echoed with their user-info;
- the REST transport's connection pool is sized to the store's concurrency.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from gcp_helpers import PARENT, PROJECT, rest_env, store_on
from google.cloud import secretmanager

from multicloud_store.errors import (
    BackendUnavailableError,
    ConfigurationError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.store import SecretsStore
from multicloud_store_gcp.driver import GcpDriver
from multicloud_store_gcp.settings import GcpSettings
from multicloud_store_gcp.testing import SecretManagerEmulator

State = secretmanager.SecretVersion.State
MakeDriver = Callable[..., GcpDriver]
# Far longer than any test runs: 'latest' stays stale for the whole test, without a sleep or a timed assertion.
STALE = 600.0


def _deployment() -> str:
    return f"gcp-{uuid.uuid4().hex[:10]}"


def _our_labels(deployment: str, sid: uuid.UUID) -> dict[str, str]:
    return {"managed_by": "multicloud-store", "mcs_deployment": deployment, "mcs_secret_id": str(sid)}


def _versions(client: secretmanager.SecretManagerServiceClient, name: str) -> dict[int, Any]:
    listed = client.list_secret_versions(parent=f"{PARENT}/secrets/{name}")
    return {int(v.name.rsplit("/", 1)[-1]): v.state for v in listed}


def _empty_secret(
    client: secretmanager.SecretManagerServiceClient, name: str, labels: dict[str, str]
) -> None:
    """What a store killed between CreateSecret and AddSecretVersion leaves behind."""
    client.create_secret(
        parent=PARENT, secret_id=name, secret={"replication": {"automatic": {}}, "labels": labels}
    )


@pytest.fixture
def stale_latest(emulator: SecretManagerEmulator) -> Iterator[SecretManagerEmulator]:
    emulator.stale_latest = STALE
    yield emulator
    emulator.stale_latest = 0.0


# ------------------------------------------------------------------------------------- 2: 'latest' is stale


def test_emulator_serves_a_stale_latest(
    stale_latest: SecretManagerEmulator, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    name = f"knob-{uuid.uuid4().hex}"
    _empty_secret(raw_client, name, {})
    raw_client.add_secret_version(parent=f"{PARENT}/secrets/{name}", payload={"data": b"one"})
    # By number: read-your-writes, as the service documents; 'latest' has not caught up yet.
    assert raw_client.access_secret_version(name=f"{PARENT}/secrets/{name}/versions/1").payload.data == b"one"
    with pytest.raises(Exception, match=r"not found|has no versions"):
        raw_client.access_secret_version(name=f"{PARENT}/secrets/{name}/versions/latest")
    stale_latest.stale_latest = 0.0
    raw_client.add_secret_version(parent=f"{PARENT}/secrets/{name}", payload={"data": b"two"})
    latest = raw_client.access_secret_version(name=f"{PARENT}/secrets/{name}/versions/latest")
    assert latest.payload.data == b"two"


def test_read_right_after_store_is_never_not_found(
    make_driver: MakeDriver, stale_latest: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    assert store.get_secret_values(sid) == {"a": "1"}
    assert store.secret_exists(sid)
    assert sid in list(store.list_secret_ids())


def test_read_right_after_update_is_never_not_found(
    make_driver: MakeDriver,
    emulator: SecretManagerEmulator,
    raw_client: secretmanager.SecretManagerServiceClient,
) -> None:
    store = store_on(make_driver(), _deployment())  # keep_versions=1, the default
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    emulator.stale_latest = STALE
    try:
        store.update_secret_values(sid, {"a": "2"})
        # The previous values, or the new ones: never "not found" for a secret that exists.
        assert store.get_secret_values(sid) in ({"a": "1"}, {"a": "2"})
        store.update_secret_values(sid, {"a": "3"})
        assert store.get_secret_values(sid) in ({"a": "1"}, {"a": "2"}, {"a": "3"})
    finally:
        emulator.stale_latest = 0.0
    # 'latest' may still resolve to version 1 or 2 within the grace period: neither was destroyed.
    assert _versions(raw_client, store.secret_name(sid)) == {
        1: State.ENABLED,
        2: State.ENABLED,
        3: State.ENABLED,
    }


def test_a_pruned_version_under_a_stale_latest_is_read_around(
    make_driver: MakeDriver, stale_latest: SecretManagerEmulator
) -> None:
    # Without a grace period the previous version is destroyed at once; 'latest' still names it.
    store = store_on(make_driver(prune_grace_seconds=0), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.update_secret_values(sid, {"a": "2"})
    store.update_secret_values(sid, {"a": "3"})
    # 'latest' lands on nothing or on a destroyed version: the newest enabled version, by number, is read.
    assert store.get_secret_values(sid) == {"a": "3"}


def test_an_outage_while_reading_around_latest_is_unavailable_not_missing(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    emulator.stale_latest = STALE
    try:
        store.store_secret_values(sid, {"a": "1"})
        emulator.inject_fault("UNAVAILABLE", times=10_000, methods={"ListSecretVersions", "GetSecret"})
        with pytest.raises(BackendUnavailableError):
            store.get_secret_values(sid)
    finally:
        emulator.stale_latest = 0.0


def test_a_secret_not_yet_listable_is_read_by_version_number(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    emulator.stale_latest = STALE
    try:
        store.store_secret_values(sid, {"a": "1"})
        # Creating the secret is eventually consistent: its version listing may still answer NOT_FOUND.
        emulator.inject_fault("NOT_FOUND", times=1, methods={"ListSecretVersions"})
        assert store.get_secret_values(sid) == {"a": "1"}
    finally:
        emulator.stale_latest = 0.0


def test_versions_older_than_the_grace_period_are_pruned(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    store = store_on(make_driver(prune_grace_seconds=0), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.update_secret_values(sid, {"a": "2"})
    assert _versions(raw_client, store.secret_name(sid)) == {1: State.DESTROYED, 2: State.ENABLED}


def test_a_get_is_still_one_call(make_driver: MakeDriver, emulator: SecretManagerEmulator) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.update_secret_values(sid, {"a": "2"})
    before = emulator.calls
    assert store.get_secret_values(sid) == {"a": "2"}
    assert emulator.calls - before == {"AccessSecretVersion": 1}


def test_a_disabled_newest_version_is_still_a_state_error(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    store = store_on(make_driver(keep_versions=2), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.update_secret_values(sid, {"a": "2"})
    raw_client.disable_secret_version(name=f"{PARENT}/secrets/{store.secret_name(sid)}/versions/2")
    # Someone disabled the newest version on purpose: not silently the older values, not "not found".
    with pytest.raises(SecretStateError, match="disabled"):
        store.get_secret_values(sid)


# ------------------------------------------------------------------------------ 3: an interrupted store


def test_an_empty_leftover_of_ours_is_listed_and_can_be_deleted(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
) -> None:
    deployment, sid = _deployment(), uuid.uuid4()
    store = store_on(make_driver(), deployment)
    name = store.secret_name(sid)
    _empty_secret(raw_client, name, _our_labels(deployment, sid))
    assert list(store.list_secret_ids()) == [sid]
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)  # nothing was ever stored under it
    store.delete_secret_values(sid)  # every listed id can be deleted
    assert name not in emulator.secret_names(PROJECT)
    assert list(store.list_secret_ids()) == []


def test_an_empty_secret_of_another_deployment_is_not_deleted(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
) -> None:
    sid = uuid.uuid4()
    store = store_on(make_driver(), _deployment())
    name = store.secret_name(sid)
    _empty_secret(raw_client, name, _our_labels("someone-else", sid))
    with pytest.raises(SecretNotFoundError):
        store.delete_secret_values(sid)
    assert name in emulator.secret_names(PROJECT)


def test_migrate_with_delete_source_resumes_over_an_empty_leftover(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
) -> None:
    from multicloud_store.migrate import migrate
    from multicloud_store.settings import StoreSettings

    deployment, kept, leftover = _deployment(), uuid.uuid4(), uuid.uuid4()
    source = store_on(make_driver(), deployment)
    source.store_secret_values(kept, {"a": "1"})
    _empty_secret(raw_client, source.secret_name(leftover), _our_labels(deployment, leftover))
    with SecretsStore(StoreSettings(backend="memory", deployment_id=deployment)) as target:
        report = migrate(source, target, delete_source=True)
        assert report.ok, report
        assert target.get_secret_values(kept) == {"a": "1"}
    assert list(source.list_secret_ids()) == []


def test_an_empty_leftover_is_completed_at_once(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    deployment, sid = _deployment(), uuid.uuid4()
    store = store_on(make_driver(), deployment)  # default settings: no grace period to wait out
    _empty_secret(raw_client, store.secret_name(sid), _our_labels(deployment, sid))
    store.store_secret_values(sid, {"a": "1"})
    assert store.get_secret_values(sid) == {"a": "1"}


def test_concurrent_stores_over_a_leftover_have_one_winner(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    deployment = _deployment()
    store = store_on(make_driver(), deployment)
    for _ in range(5):
        sid = uuid.uuid4()
        _empty_secret(raw_client, store.secret_name(sid), _our_labels(deployment, sid))
        barrier = threading.Barrier(6)

        def attempt(n: int, sid: uuid.UUID = sid, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            try:
                store.store_secret_values(sid, {"writer": str(n)})
            except SecretExistsError:
                return False
            return True

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(attempt, range(6)))
        assert results.count(True) == 1
        assert store.get_secret_values(sid) == {"writer": str(results.index(True))}


def test_concurrent_stores_of_a_new_id_have_one_winner(make_driver: MakeDriver) -> None:
    store = store_on(make_driver(), _deployment())
    for _ in range(5):
        sid = uuid.uuid4()
        barrier = threading.Barrier(6)

        def attempt(n: int, sid: uuid.UUID = sid, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            try:
                store.store_secret_values(sid, {"writer": str(n)})
            except SecretExistsError:
                return False
            return True

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(attempt, range(6)))
        assert results.count(True) == 1
        assert store.get_secret_values(sid) == {"writer": str(results.index(True))}


# --------------------------------------------------------------------------- 4: the answer is lost


def test_emulator_commits_then_loses_the_answer(
    emulator: SecretManagerEmulator, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    name = f"lost-{uuid.uuid4().hex}"
    emulator.lose_answers(methods={"CreateSecret"})
    with pytest.raises(Exception, match="lost"):
        raw_client.create_secret(
            parent=PARENT, secret_id=name, secret={"replication": {"automatic": {}}}, retry=None
        )
    assert name in emulator.secret_names(PROJECT)


def test_a_store_whose_every_answer_was_lost_reports_success(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    emulator.lose_answers(times=10_000, methods={"CreateSecret", "AddSecretVersion"})
    store.store_secret_values(sid, {"a": "1"})
    emulator.clear_faults()
    assert store.get_secret_values(sid) == {"a": "1"}
    # The caller's own retry is idempotent; other values are still refused.
    store.store_secret_values(sid, {"a": "1"})
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"a": "2"})


def test_an_update_whose_every_answer_was_lost_reports_success(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    emulator.lose_answers(times=10_000, methods={"AddSecretVersion"})
    store.update_secret_values(sid, {"a": "2"})
    emulator.clear_faults()
    assert store.get_secret_values(sid) == {"a": "2"}


# ------------------------------------------------------------------------------- 8: no user-info echoed


@pytest.mark.parametrize("transport", ["grpc", "rest"])
@pytest.mark.parametrize(
    "endpoint",
    [
        "https://admin:hunter2-pw@secretmanager.example.com",
        "https://admin:hunter2-pw@secretmanager.example.com:443/",
        "admin:hunter2-pw@secretmanager.example.com:443",
    ],
)
def test_an_endpoint_with_user_info_is_refused_without_echoing_it(transport: str, endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env(
            {
                "MULTICLOUD_STORE_BACKEND": "gcp",
                "MULTICLOUD_STORE_GCP_PROJECT_ID": "p",
                "MULTICLOUD_STORE_GCP_TRANSPORT": transport,
                "MULTICLOUD_STORE_GCP_ENDPOINT": endpoint,
            }
        )
    assert info.value.variable == "MULTICLOUD_STORE_GCP_ENDPOINT"
    assert "hunter2-pw" not in str(info.value)
    assert "hunter2-pw" not in repr(info.value)


def test_credential_settings_are_stripped(tmp_path: Any) -> None:
    info = '{"type": "service_account", "project_id": "p"}'
    settings = GcpSettings.from_environ(
        {
            "MULTICLOUD_STORE_GCP_CREDENTIALS_JSON": f"  {info}\n",
            "MULTICLOUD_STORE_GCP_IMPERSONATE_SERVICE_ACCOUNT": " sa@p.iam.gserviceaccount.com\n",
        }
    )
    assert settings.credentials_json is not None
    assert settings.credentials_json.get_secret_value() == info
    assert settings.impersonate_service_account == "sa@p.iam.gserviceaccount.com"
    path = tmp_path / "key.json"
    path.write_text(info)
    from_file = GcpSettings.from_environ({"MULTICLOUD_STORE_GCP_CREDENTIALS_FILE": f"{path}\n"})
    assert from_file.credentials_file == path


def test_control_characters_in_credentials_json_are_refused_naming_the_variable() -> None:
    bad = '{"type": "service_account", "private_key": "line\x01secret-material"}'
    with pytest.raises(ConfigurationError) as info:
        GcpSettings.from_environ({"MULTICLOUD_STORE_GCP_CREDENTIALS_JSON": bad})
    assert info.value.variable == "MULTICLOUD_STORE_GCP_CREDENTIALS_JSON"
    assert "secret-material" not in str(info.value)


# ----------------------------------------------------------------------- 9: a pool sized to the threads


def test_sixteen_threads_on_rest_reuse_their_connections(
    emulator: SecretManagerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    env = rest_env(emulator, MULTICLOUD_STORE_MAX_WORKERS="16", MULTICLOUD_STORE_DEPLOYMENT_ID=_deployment())
    with SecretsStore.from_env(env) as store:
        sids = [uuid.uuid4() for _ in range(16)]
        for sid in sids:
            store.store_secret_values(sid, {"n": str(sid)})
        emulator.latency = 0.05  # keep all sixteen calls in flight at once
        barrier = threading.Barrier(16)

        def read(sid: uuid.UUID) -> dict[str, str]:
            barrier.wait()
            values: dict[str, str] = {}
            for _ in range(3):
                values = store.get_secret_values(sid)
            return values

        with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(16) as pool:
            results = list(pool.map(read, sids))
        assert results == [{"n": str(sid)} for sid in sids]
        assert "Connection pool is full" not in caplog.text
        # get_many's own pool of MULTICLOUD_STORE_MAX_WORKERS threads reuses connections too.
        with caplog.at_level(logging.WARNING, logger="urllib3"):
            outcomes = store.get_many(sids)
        assert all(outcome.status == "ok" for outcome in outcomes.values())
        assert "Connection pool is full" not in caplog.text


def test_pool_size_follows_its_own_setting_first() -> None:
    env = {"MULTICLOUD_STORE_MAX_WORKERS": "16", "MULTICLOUD_STORE_GCP_MAX_CONNECTIONS": "40"}
    assert GcpSettings.from_environ(env).max_connections == 40
    assert GcpSettings.from_environ({"MULTICLOUD_STORE_MAX_WORKERS": "16"}).max_connections == 16
