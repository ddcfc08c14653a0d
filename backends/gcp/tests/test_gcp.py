"""What only the GCP backend does: labels, pruning, checksums, crash repair, retries, settings, isolation.

Every test talks to the Secret Manager emulator through the real client library, over the wire; the raw client
fixture looks behind the driver's back.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from gcp_helpers import FAST_RETRY, PARENT, PROJECT, grpc_settings, rest_env, store_on
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import secretmanager

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_gcp import errors as gcp_errors
from multicloud_store_gcp.driver import GcpDriver
from multicloud_store_gcp.settings import GcpSettings
from multicloud_store_gcp.testing import SecretManagerEmulator, crc32c

State = secretmanager.SecretVersion.State
SENTINEL = "sentinel-GCP-value-must-never-leak-5d2a"
MakeDriver = Callable[..., GcpDriver]


def _deployment() -> str:
    return f"gcp-{uuid.uuid4().hex[:10]}"


def _versions(client: secretmanager.SecretManagerServiceClient, name: str) -> dict[int, Any]:
    listed = client.list_secret_versions(parent=f"{PARENT}/secrets/{name}")
    return {int(v.name.rsplit("/", 1)[-1]): v.state for v in listed}


def _our_labels(deployment: str, sid: uuid.UUID) -> dict[str, str]:
    return {"managed_by": "multicloud-store", "mcs_deployment": deployment, "mcs_secret_id": str(sid)}


def _empty_secret(
    client: secretmanager.SecretManagerServiceClient, name: str, labels: dict[str, str]
) -> None:
    client.create_secret(
        parent=PARENT, secret_id=name, secret={"replication": {"automatic": {}}, "labels": labels}
    )


# --------------------------------------------------------------------------------------------------- layout


def test_one_labelled_secret_per_store_secret(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    deployment, sid = _deployment(), uuid.uuid4()
    store = store_on(make_driver(), deployment)
    store.store_secret_values(sid, {"user": "admin"})

    secret = raw_client.get_secret(name=f"{PARENT}/secrets/{store.secret_name(sid)}")
    assert dict(secret.labels) == _our_labels(deployment, sid)
    assert "automatic" in secret.replication
    version = raw_client.get_secret_version(name=f"{secret.name}/versions/latest")
    assert version.client_specified_payload_checksum  # written with data_crc32c
    payload = raw_client.access_secret_version(name=version.name).payload
    assert SENTINEL not in payload.data.decode()
    assert "admin" in payload.data.decode()  # the envelope holds the values, not a second secret


def test_user_managed_replication_with_a_key_per_location(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    key = "projects/kms/locations/{location}/keyRings/ring/cryptoKeys/key"
    store = store_on(
        make_driver(replication_locations="europe-west1, europe-west4", kms_key_name=key), _deployment()
    )
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    secret = raw_client.get_secret(name=f"{PARENT}/secrets/{store.secret_name(sid)}")
    replicas = {
        r.location: r.customer_managed_encryption.kms_key_name
        for r in secret.replication.user_managed.replicas
    }
    assert replicas == {
        "europe-west1": "projects/kms/locations/europe-west1/keyRings/ring/cryptoKeys/key",
        "europe-west4": "projects/kms/locations/europe-west4/keyRings/ring/cryptoKeys/key",
    }


def test_automatic_replication_with_cmek(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    key = "projects/kms/locations/global/keyRings/ring/cryptoKeys/key"
    store = store_on(make_driver(kms_key_name=key), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    secret = raw_client.get_secret(name=f"{PARENT}/secrets/{store.secret_name(sid)}")
    assert secret.replication.automatic.customer_managed_encryption.kms_key_name == key


def test_regional_secrets(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
) -> None:
    store = store_on(make_driver(location="europe-west1"), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.update_secret_values(sid, {"a": "2"})
    assert store.get_secret_values(sid) == {"a": "2"}
    assert store.secret_name(sid) in emulator.secret_names(PROJECT, location="europe-west1")
    assert store.secret_name(sid) not in emulator.secret_names(PROJECT)
    assert list(store.list_secret_ids()) == [sid]
    secret = raw_client.get_secret(name=f"{PARENT}/locations/europe-west1/secrets/{store.secret_name(sid)}")
    assert "replication" not in secret
    store.delete_secret_values(sid)
    assert not store.secret_exists(sid)


def test_listing_matches_labels_exactly(make_driver: MakeDriver) -> None:
    driver = make_driver()
    short, long = store_on(driver, "team-a"), store_on(driver, "team-ab")
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    short.store_secret_values(mine, {"a": "1"})
    long.store_secret_values(theirs, {"a": "1"})
    try:
        assert mine in set(short.list_secret_ids())
        assert theirs not in set(short.list_secret_ids())  # "team-a" is a prefix of "team-ab", not a match
    finally:
        short.delete_secret_values(mine)
        long.delete_secret_values(theirs)


# --------------------------------------------------------------------------------------------------- versions


@pytest.mark.parametrize("keep", [1, 2])
def test_updates_prune_old_versions(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient, keep: int
) -> None:
    # No grace period: versions go as soon as they are superseded (test_consistency covers the grace).
    store = store_on(make_driver(keep_versions=keep, prune_grace_seconds=0), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "0"})
    for n in range(1, 4):
        store.update_secret_values(sid, {"v": str(n)})
    assert store.get_secret_values(sid) == {"v": "3"}
    states = _versions(raw_client, store.secret_name(sid))
    assert sorted(states) == [1, 2, 3, 4]
    enabled = sorted(n for n, state in states.items() if state == State.ENABLED)
    assert enabled == list(range(5 - keep, 5))  # the newest `keep`
    assert all(states[n] == State.DESTROYED for n in states if n not in enabled)


def test_a_failed_prune_does_not_fail_the_update(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = store_on(make_driver(prune_grace_seconds=0), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"password": SENTINEL})
    emulator.inject_fault("UNAVAILABLE", methods={"DestroySecretVersion"})
    store.update_secret_values(sid, {"password": SENTINEL + "2"})
    assert store.get_secret_values(sid) == {"password": SENTINEL + "2"}
    assert _versions(raw_client, store.secret_name(sid)) == {1: State.ENABLED, 2: State.ENABLED}
    assert "could not destroy old version 1" in caplog.text
    assert SENTINEL not in caplog.text

    store.update_secret_values(sid, {"password": SENTINEL + "3"})  # the next update catches up
    assert _versions(raw_client, store.secret_name(sid)) == {
        1: State.DESTROYED,
        2: State.DESTROYED,
        3: State.ENABLED,
    }


def test_first_updates_within_keep_versions_skip_the_listing(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(keep_versions=3), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    before = emulator.calls["ListSecretVersions"]
    store.update_secret_values(sid, {"v": "2"})
    store.update_secret_values(sid, {"v": "3"})
    assert emulator.calls["ListSecretVersions"] == before
    store.update_secret_values(sid, {"v": "4"})
    assert emulator.calls["ListSecretVersions"] == before + 1


def test_disabled_latest_version_is_a_state_error(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    raw_client.disable_secret_version(name=f"{PARENT}/secrets/{store.secret_name(sid)}/versions/1")
    with pytest.raises(SecretStateError, match="disabled"):
        store.get_secret_values(sid)
    with pytest.raises(SecretStateError):
        store.secret_exists(sid)  # neither "exists" nor "missing"
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"a": "2"})


def test_disabled_latest_version_without_permission_to_look_closer(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    raw_client.disable_secret_version(name=f"{PARENT}/secrets/{store.secret_name(sid)}/versions/1")
    emulator.inject_fault("PERMISSION_DENIED", times=10, methods={"ListSecretVersions"})
    with pytest.raises(BackendError, match="DISABLED") as info:
        store.get_secret_values(sid)
    assert not isinstance(info.value, (SecretNotFoundError, BackendPermissionError))


def test_destroyed_latest_version_reads_as_not_found_and_can_be_stored_again(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    raw_client.destroy_secret_version(name=f"{PARENT}/secrets/{store.secret_name(sid)}/versions/1")
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)
    assert not store.secret_exists(sid)
    store.store_secret_values(sid, {"a": "2"})  # an empty secret of ours: completed
    assert store.get_secret_values(sid) == {"a": "2"}


# ------------------------------------------------------------------------------------------------- checksums


def test_checksum_mismatch_is_corruption(make_driver: MakeDriver, emulator: SecretManagerEmulator) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"password": SENTINEL})
    emulator.corrupt_checksums()
    with pytest.raises(SecretCorruptedError, match="CRC32C") as info:
        store.get_secret_values(sid)
    assert SENTINEL not in str(info.value)
    emulator.corrupt_checksums(False)
    assert store.get_secret_values(sid) == {"password": SENTINEL}


def test_non_utf8_payload_is_not_ours(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    name = store.secret_name(sid)
    _empty_secret(raw_client, name, {})
    data = b"\xff\xfe binary"
    raw_client.add_secret_version(
        parent=f"{PARENT}/secrets/{name}", payload={"data": data, "data_crc32c": crc32c(data)}
    )
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


# --------------------------------------------------------------------------------------------------- creating


def test_empty_secret_of_ours_left_by_a_crash_is_completed(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    deployment, sid = _deployment(), uuid.uuid4()
    store = store_on(make_driver(), deployment)
    name = store.secret_name(sid)
    _empty_secret(raw_client, name, _our_labels(deployment, sid))

    store.store_secret_values(sid, {"a": "1"})
    assert store.get_secret_values(sid) == {"a": "1"}
    assert _versions(raw_client, name) == {1: State.ENABLED}


def test_concurrent_repairs_have_one_winner(
    make_driver: MakeDriver, raw_client: secretmanager.SecretManagerServiceClient
) -> None:
    deployment, sid = _deployment(), uuid.uuid4()
    store = store_on(make_driver(), deployment)
    _empty_secret(raw_client, store.secret_name(sid), _our_labels(deployment, sid))
    barrier = threading.Barrier(8)

    def attempt(n: int) -> bool:
        barrier.wait()
        try:
            store.store_secret_values(sid, {"winner": str(n)})
        except SecretExistsError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count(True) == 1
    assert store.get_secret_values(sid) == {"winner": str(results.index(True))}
    # Version 1 is the winner's; every loser destroyed the version it added.
    states = _versions(raw_client, store.secret_name(sid))
    assert [n for n, state in states.items() if state != State.DESTROYED] == [1]


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"managed_by": "multicloud-store", "mcs_deployment": "someone-else"},
        {"managed_by": "multicloud-store", "mcs_deployment": "{deployment}", "mcs_secret_id": "other"},
    ],
    ids=["unlabelled", "other-deployment", "other-id"],
)
def test_empty_secret_not_labelled_as_ours_is_left_alone(
    make_driver: MakeDriver,
    raw_client: secretmanager.SecretManagerServiceClient,
    labels: dict[str, str],
) -> None:
    deployment, sid = _deployment(), uuid.uuid4()
    store = store_on(make_driver(), deployment)
    name = store.secret_name(sid)
    labels = {k: v.replace("{deployment}", deployment) for k, v in labels.items()}
    _empty_secret(raw_client, name, labels)
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"a": "1"})
    assert _versions(raw_client, name) == {}
    assert dict(raw_client.get_secret(name=f"{PARENT}/secrets/{name}").labels) == labels


def test_failed_first_version_removes_the_empty_secret(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    emulator.inject_fault("PERMISSION_DENIED", methods={"AddSecretVersion"})
    with pytest.raises(BackendPermissionError):
        store.store_secret_values(sid, {"a": "1"})
    assert store.secret_name(sid) not in emulator.secret_names(PROJECT)
    assert emulator.calls["DeleteSecret"] >= 1

    emulator.inject_fault("UNAVAILABLE", times=10_000, methods={"AddSecretVersion"})
    with pytest.raises(BackendUnavailableError):
        store.store_secret_values(sid, {"a": "1"})
    assert store.secret_name(sid) not in emulator.secret_names(PROJECT)

    emulator.reset()
    store.store_secret_values(sid, {"a": "2"})
    assert store.get_secret_values(sid) == {"a": "2"}


def test_exists_without_permission_to_look_closer(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    emulator.inject_fault("PERMISSION_DENIED", times=10, methods={"GetSecret", "ListSecretVersions"})
    with pytest.raises(SecretExistsError):  # the 409 is a fact; the leftover check is a nicety
        store.store_secret_values(sid, {"a": "2"})


def test_exists_is_mapped_on_both_transports(make_driver: MakeDriver, transport: str) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    with pytest.raises(SecretExistsError) as info:
        store.store_secret_values(sid, {"a": "2"})
    # gRPC reports ALREADY_EXISTS; REST only the HTTP status, 409 Conflict.
    expected = gexc.AlreadyExists if transport == "grpc" else gexc.Conflict
    assert type(info.value.__cause__) is expected
    assert store.get_secret_values(sid) == {"a": "1"}


# --------------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL", "DEADLINE_EXCEEDED"])
def test_transient_failures_are_retried(
    make_driver: MakeDriver, emulator: SecretManagerEmulator, code: str
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    before = emulator.calls["AccessSecretVersion"]
    emulator.inject_fault(code, times=2, methods={"AccessSecretVersion"})
    assert store.get_secret_values(sid) == {"a": "1"}
    assert emulator.calls["AccessSecretVersion"] == before + 3


def test_unavailable_until_the_retry_deadline(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    before = emulator.calls["AccessSecretVersion"]
    emulator.inject_fault("UNAVAILABLE", times=10_000)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        store.get_secret_values(sid)
    elapsed = time.monotonic() - started
    # Retrying all 10 000 faults would take minutes (backoff of at least 10 ms each); giving up at the deadline
    # takes about half a second. The bound is generous for a loaded machine and still tells the two apart.
    assert elapsed < FAST_RETRY["retry_deadline"] + 30.0
    assert emulator.calls["AccessSecretVersion"] - before > 2  # retried, with backoff
    assert isinstance(info.value.__cause__, gexc.RetryError)


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "UNAUTHENTICATED"])
def test_denied_is_a_permission_error_and_not_retried(
    make_driver: MakeDriver, emulator: SecretManagerEmulator, code: str
) -> None:
    store = store_on(make_driver(), _deployment())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    before = emulator.calls["AccessSecretVersion"]
    emulator.inject_fault(code, times=10_000)
    with pytest.raises(BackendPermissionError) as info:
        store.get_secret_values(sid)
    assert not isinstance(info.value, KeyError)
    assert emulator.calls["AccessSecretVersion"] == before + 1
    with pytest.raises(BackendPermissionError):
        store.check()


def _answers_lost_once(emulator: SecretManagerEmulator, acted: Callable[[], bool]) -> threading.Thread:
    """Make the next call act on the server after the client gave up on it, then later calls answer at once.

    Calls wait 0.6 s before the service acts: with a 0.2 s timeout (the subject of these tests) the client
    abandons the first one and retries, and the first one still acts. Once it has (``acted`` says so, polled
    under a generous deadline rather than guessed with a timer), calls are immediate again, so the retry that
    succeeds sees what the lost first attempt did, however slow the machine.
    """
    emulator.latency = 0.6

    def restore() -> None:
        deadline = time.monotonic() + 120
        while not acted() and time.monotonic() < deadline:
            time.sleep(0.01)
        emulator.latency = 0.0

    watcher = threading.Thread(target=restore)
    watcher.start()
    return watcher


def test_a_retried_delete_that_finds_nothing_succeeds(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    # Short timeout: the client must give up on the slow first attempt. Generous retry deadline: the retries
    # must not run out on a loaded machine.
    driver = make_driver(timeout=0.2, retry_deadline=60, retry_initial_backoff=0.05, retry_max_backoff=0.1)
    name = f"lost-delete-{uuid.uuid4().hex}"
    driver.create(name, "payload", {"managed_by": "multicloud-store"})
    deletes = emulator.calls["DeleteSecret"]
    timer = _answers_lost_once(emulator, lambda: name not in emulator.secret_names(PROJECT))
    driver.delete(name)  # the first attempt deleted it; the retry's NOT_FOUND is our own doing
    timer.join()
    assert emulator.calls["DeleteSecret"] - deletes >= 2
    assert name not in emulator.secret_names(PROJECT)
    with pytest.raises(SecretNotFoundError):
        driver.delete(name)  # without a lost attempt, NOT_FOUND is not found


def test_a_retried_create_completes_its_own_secret(
    make_driver: MakeDriver, emulator: SecretManagerEmulator
) -> None:
    # The default grace would call a 1 s old empty secret "another writer's": the retry knows it is ours.
    driver = make_driver(timeout=0.2, retry_deadline=60, retry_initial_backoff=0.05, retry_max_backoff=0.1)
    name = f"lost-create-{uuid.uuid4().hex}"
    creates = emulator.calls["CreateSecret"]
    timer = _answers_lost_once(emulator, lambda: name in emulator.secret_names(PROJECT))
    driver.create(name, "payload", {"managed_by": "multicloud-store"})
    timer.join()
    assert emulator.calls["CreateSecret"] - creates >= 2
    assert driver.read(name).payload == "payload"


def test_retries_can_be_turned_off(make_driver: MakeDriver, emulator: SecretManagerEmulator) -> None:
    store = store_on(make_driver(retry_deadline=0), _deployment())
    emulator.inject_fault("UNAVAILABLE", times=10_000)
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(uuid.uuid4())
    assert emulator.calls["AccessSecretVersion"] >= 1


def test_per_call_timeout(make_driver: MakeDriver, emulator: SecretManagerEmulator) -> None:
    # The test is about the per-call timeout, so it is short. No timed assertion: with a latency far beyond
    # it, the call would answer (not found) if the timeout did not apply; only the timeout makes it unavailable.
    store = store_on(make_driver(timeout=0.2, retry_deadline=0), _deployment())
    emulator.latency = 5.0
    with pytest.raises(BackendUnavailableError, match=r"timed out|could not be reached"):
        store.get_secret_values(uuid.uuid4())


def test_unreachable_endpoint_is_unavailable(transport: str) -> None:
    port = _refused_port()
    if transport == "grpc":
        settings = GcpSettings(project_id=PROJECT, endpoint=f"127.0.0.1:{port}", anonymous=True, **FAST_RETRY)
    else:
        settings = GcpSettings(
            project_id=PROJECT,
            endpoint=f"http://127.0.0.1:{port}",
            transport="rest",
            anonymous=True,
            **FAST_RETRY,
        )
    with SecretsStore(StoreSettings(backend="gcp"), driver=GcpDriver(settings)) as store:
        with pytest.raises(BackendUnavailableError):
            store.get_secret_values(uuid.uuid4())
        with pytest.raises(BackendUnavailableError):
            store.check()


def _refused_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (gexc.NotFound("x"), SecretNotFoundError),
        (gexc.AlreadyExists("x"), SecretExistsError),
        (gexc.Conflict("x"), SecretExistsError),
        (gexc.Aborted("x"), BackendUnavailableError),
        (gexc.PermissionDenied("x"), BackendPermissionError),
        (gexc.Forbidden("x"), BackendPermissionError),
        (gexc.Unauthenticated("x"), BackendPermissionError),
        (gexc.Unauthorized("x"), BackendPermissionError),
        (gexc.ResourceExhausted("x"), BackendUnavailableError),
        (gexc.TooManyRequests("x"), BackendUnavailableError),
        (gexc.ServiceUnavailable("x"), BackendUnavailableError),
        (gexc.InternalServerError("x"), BackendUnavailableError),
        (gexc.DeadlineExceeded("x"), BackendUnavailableError),
        (gexc.GatewayTimeout("x"), BackendUnavailableError),
        (gexc.RetryError("deadline", gexc.ServiceUnavailable("x")), BackendUnavailableError),
        (gexc.InvalidArgument("x"), BackendError),
        (gexc.BadRequest("x"), BackendError),
        (gexc.FailedPrecondition("x"), BackendError),
        (auth_exc.RefreshError("x"), BackendPermissionError),
        (auth_exc.TransportError("x"), BackendUnavailableError),
        (auth_exc.DefaultCredentialsError("x"), ConfigurationError),
        (ValueError("x"), BackendError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
def test_error_table(exc: Exception, expected: type[Exception]) -> None:
    error = gcp_errors.translate(exc, operation="read", name="n")
    assert type(error) is expected
    assert error.backend == "gcp"
    if expected is ConfigurationError:
        assert isinstance(error, ConfigurationError)
        assert error.variable == "MULTICLOUD_STORE_GCP_CREDENTIALS_FILE"
        assert "MULTICLOUD_STORE_GCP_CREDENTIALS_FILE" in str(error)


# --------------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MULTICLOUD_STORE_GCP_TRANSPORT": "http3"}, "MULTICLOUD_STORE_GCP_TRANSPORT"),
        ({"MULTICLOUD_STORE_GCP_ENDPOINT": "http://127.0.0.1:1"}, "MULTICLOUD_STORE_GCP_ENDPOINT"),
        (
            {"MULTICLOUD_STORE_GCP_ENDPOINT": "127.0.0.1:1", "MULTICLOUD_STORE_GCP_TRANSPORT": "rest"},
            "MULTICLOUD_STORE_GCP_ENDPOINT",
        ),
        (
            {"MULTICLOUD_STORE_GCP_ENDPOINT": "http://127.0.0.1:1", "MULTICLOUD_STORE_GCP_ANONYMOUS": "true"},
            "MULTICLOUD_STORE_GCP_ENDPOINT",  # a URL, but the transport is grpc
        ),
        (
            {
                "MULTICLOUD_STORE_GCP_ENDPOINT": "http://127.0.0.1:1",
                "MULTICLOUD_STORE_GCP_TRANSPORT": "rest",
                "MULTICLOUD_STORE_GCP_PROJECT_ID": "p",
            },
            "MULTICLOUD_STORE_GCP_ENDPOINT",  # plaintext HTTP with real credentials
        ),
        ({"MULTICLOUD_STORE_GCP_ANONYMOUS": "true"}, "MULTICLOUD_STORE_GCP_ANONYMOUS"),
        (
            {"MULTICLOUD_STORE_GCP_ANONYMOUS": "true", "MULTICLOUD_STORE_GCP_ENDPOINT": "127.0.0.1:1"},
            "MULTICLOUD_STORE_GCP_PROJECT_ID",
        ),
        ({"MULTICLOUD_STORE_GCP_ANONYMOUS": "maybe"}, "MULTICLOUD_STORE_GCP_ANONYMOUS"),
        (
            {"MULTICLOUD_STORE_GCP_CREDENTIALS_FILE": "/no/such/file.json"},
            "MULTICLOUD_STORE_GCP_CREDENTIALS_FILE",
        ),
        ({"MULTICLOUD_STORE_GCP_KEEP_VERSIONS": "0"}, "MULTICLOUD_STORE_GCP_KEEP_VERSIONS"),
        ({"MULTICLOUD_STORE_GCP_TIMEOUT": "-1"}, "MULTICLOUD_STORE_GCP_TIMEOUT"),
        ({"MULTICLOUD_STORE_GCP_RETRY_DEADLINE": "soon"}, "MULTICLOUD_STORE_GCP_RETRY_DEADLINE"),
        ({"MULTICLOUD_STORE_GCP_PROJECT_ID": "has/slash"}, "MULTICLOUD_STORE_GCP_PROJECT_ID"),
        (
            {"MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS": "Europe West"},
            "MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS",
        ),
        ({"MULTICLOUD_STORE_GCP_KMS_KEY_NAME": "my-key"}, "MULTICLOUD_STORE_GCP_KMS_KEY_NAME"),
        (
            {
                "MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS": "europe-west1,europe-west4",
                "MULTICLOUD_STORE_GCP_KMS_KEY_NAME": "projects/p/locations/eu/keyRings/r/cryptoKeys/k",
            },
            "MULTICLOUD_STORE_GCP_KMS_KEY_NAME",
        ),
        (
            {
                "MULTICLOUD_STORE_GCP_LOCATION": "europe-west1",
                "MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS": "us-east1",
            },
            "MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS",
        ),
        (
            {"MULTICLOUD_STORE_GCP_IMPERSONATE_SERVICE_ACCOUNT": "nobody"},
            "MULTICLOUD_STORE_GCP_IMPERSONATE_SERVICE_ACCOUNT",
        ),
        ({"MULTICLOUD_STORE_GCP_CREDENTIALS_JSON": "{not json"}, "MULTICLOUD_STORE_GCP_CREDENTIALS_JSON"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "gcp", **env})
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_settings_from_the_environment() -> None:
    settings = GcpSettings.from_environ(
        {
            "MULTICLOUD_STORE_GCP_PROJECT_ID": "p",
            "MULTICLOUD_STORE_GCP_TRANSPORT": " REST ",
            "MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS": "europe-west1, europe-west4",
            "MULTICLOUD_STORE_GCP_KEEP_VERSIONS": "3",
        }
    )
    assert settings.transport == "rest"
    assert settings.replication_locations == ("europe-west1", "europe-west4")
    assert settings.keep_versions == 3
    assert settings.resolved_endpoint() is None
    regional = GcpSettings(location="europe-west1")
    assert regional.resolved_endpoint() == "secretmanager.europe-west1.rep.googleapis.com"
    assert GcpSettings(location="europe-west1", transport="rest").resolved_endpoint() == (
        "https://secretmanager.europe-west1.rep.googleapis.com"
    )


def _service_account_json(project_id: str | None) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "client_email": "store@example-project.iam.gserviceaccount.com",
        "private_key_id": "0" * 40,
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    if project_id is not None:
        info["project_id"] = project_id
    return json.dumps(info)


def test_credentials_never_in_repr_or_messages(emulator: SecretManagerEmulator) -> None:
    credentials = _service_account_json("from-the-key")
    private_key = json.loads(credentials)["private_key"]
    marker = private_key.splitlines()[5]
    settings = GcpSettings(credentials_json=credentials)
    driver = GcpDriver(settings)
    store = SecretsStore(StoreSettings(backend="gcp"), driver=driver)
    texts = [repr(settings), str(settings), str(settings.redacted()), repr(driver), repr(store)]
    with pytest.raises(ConfigurationError) as info:
        GcpSettings.from_environ({"MULTICLOUD_STORE_GCP_CREDENTIALS_JSON": credentials[:-5]})
    texts += [str(info.value), repr(info.value)]
    with pytest.raises(Exception) as direct:
        GcpSettings(credentials_json=credentials[:-5])
    texts.append(str(direct.value))
    assert not [text for text in texts if marker in text]
    assert settings.redacted()["MULTICLOUD_STORE_GCP_CREDENTIALS_JSON"] == "**********"


def test_project_comes_from_the_credentials(tmp_path: Path) -> None:
    # No network: building a client with service account credentials makes no call.
    driver = GcpDriver(GcpSettings(credentials_json=_service_account_json("from-the-key")))
    try:
        _, parent = driver._connect()
        assert parent == "projects/from-the-key"
    finally:
        driver.close()
    key_file = tmp_path / "key.json"
    key_file.write_text(_service_account_json("from-the-file"))
    driver = GcpDriver(GcpSettings(credentials_file=key_file, project_id="explicit"))
    try:
        assert driver._connect()[1] == "projects/explicit"  # the setting wins
    finally:
        driver.close()


def test_missing_project_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(_service_account_json(None))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    store = SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "gcp"})  # construction makes no call
    with pytest.raises(ConfigurationError) as info:
        store.get_secret_values(uuid.uuid4())
    assert info.value.variable == "MULTICLOUD_STORE_GCP_PROJECT_ID"


def test_unusable_credentials_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    driver = GcpDriver(GcpSettings(project_id="p"))
    with pytest.raises(ConfigurationError) as info:
        driver.health_check()
    assert info.value.variable == "MULTICLOUD_STORE_GCP_CREDENTIALS_FILE"
    assert isinstance(info.value.__cause__, auth_exc.DefaultCredentialsError)

    bad_type = tmp_path / "odd.json"
    bad_type.write_text('{"type": "no_such_type"}')
    driver = GcpDriver(GcpSettings(project_id="p", credentials_file=bad_type))
    with pytest.raises(ConfigurationError) as info:
        driver.health_check()
    assert info.value.variable == "MULTICLOUD_STORE_GCP_CREDENTIALS_FILE"


def test_impersonation_wraps_the_credentials() -> None:
    from google.auth import impersonated_credentials

    target = "deployer@example-project.iam.gserviceaccount.com"
    driver = GcpDriver(
        GcpSettings(credentials_json=_service_account_json("p"), impersonate_service_account=target)
    )
    credentials, project = driver._credentials()
    assert isinstance(credentials, impersonated_credentials.Credentials)
    assert credentials.service_account_email == target
    assert project == "p"


# --------------------------------------------------------------------------------------------------- client


def test_client_is_lazy_and_shared(make_driver: MakeDriver, emulator: SecretManagerEmulator) -> None:
    before = sum(emulator.calls.values())
    driver = make_driver()
    store = store_on(driver, _deployment())
    assert sum(emulator.calls.values()) == before  # constructing made no call
    assert driver._client is None
    store.check()
    client = driver._client
    assert client is not None
    store.secret_exists(uuid.uuid4())
    assert driver._client is client


def test_injected_client_is_used_and_not_closed(emulator: SecretManagerEmulator) -> None:
    with emulator.client("grpc") as client:
        driver = GcpDriver(GcpSettings(project_id=PROJECT), client=client)
        store = store_on(driver, _deployment())
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"a": "1"})
        driver.close()
        assert client.get_secret(name=f"{PARENT}/secrets/{store.secret_name(sid)}").name  # still open
    with pytest.raises(ConfigurationError) as info:
        GcpDriver(GcpSettings(), client=object())
    assert info.value.variable == "MULTICLOUD_STORE_GCP_PROJECT_ID"


def test_closed_driver_refuses_calls(make_driver: MakeDriver) -> None:
    driver = make_driver()
    driver.health_check()
    driver.close()
    driver.close()
    with pytest.raises(BackendError, match="closed"):
        driver.read("anything")


def test_sdk_debug_logs_carry_no_payload(emulator: SecretManagerEmulator, transport: str) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    google_logger = logging.getLogger("google")
    handler, level = Keep(level=logging.DEBUG), google_logger.level
    google_logger.addHandler(handler)
    google_logger.setLevel(logging.DEBUG)
    try:
        if transport == "grpc":
            driver = GcpDriver(grpc_settings(emulator))
        else:
            driver = GcpDriver(grpc_settings(emulator, transport="rest", endpoint=emulator.rest_endpoint))
        with SecretsStore(StoreSettings(backend="gcp", deployment_id=_deployment()), driver=driver) as store:
            sid = uuid.uuid4()
            store.store_secret_values(sid, {"password": SENTINEL})
            assert store.get_secret_values(sid) == {"password": SENTINEL}
    finally:
        google_logger.removeHandler(handler)
        google_logger.setLevel(level)
    bodies = [
        value["payload"]
        for record in records
        for key in ("httpRequest", "httpResponse", "request", "response")
        if isinstance(value := record.__dict__.get(key), dict) and "payload" in value
    ]
    assert bodies  # the library did log bodies...
    assert set(bodies) == {"<redacted by multicloud-store>"}  # ...and none reached a handler
    # google-auth's REST session logs its request bodies under another key: scrubbed as well.
    auth_bodies = [
        r.__dict__["httpRequest"].get("body") for r in records if r.name == "google.auth.transport.requests"
    ]
    assert set(auth_bodies) <= {"<redacted by multicloud-store>"}
    assert auth_bodies or transport == "grpc"
    assert not [r for r in records if SENTINEL in str(r.__dict__)]


# ------------------------------------------------------------------------------------------------- isolation


def test_selecting_gcp_loads_no_other_cloud_sdk(emulator: SecretManagerEmulator) -> None:
    code = f"""
import json, sys, uuid
import multicloud_store_gcp
assert not [m for m in sys.modules if m.startswith("google")], "importing the package loaded Google modules"
from multicloud_store import SecretsStore
store = SecretsStore.from_env({json.dumps(rest_env(emulator))})
sid = uuid.uuid4()
store.store_secret_values(sid, {{"a": "1"}})
assert store.get_secret_values(sid) == {{"a": "1"}}
store.close()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "azure", "moto"))))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_entry_point_selects_this_driver() -> None:
    from multicloud_store.registry import load_driver_class

    assert load_driver_class("gcp") is GcpDriver
