"""The Secret Manager emulator, driven through the real client library over gRPC and over REST."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.cloud.secretmanager")

import google.auth.exceptions
import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

import multicloud_store_gcp
from multicloud_store_gcp.emulator import models as emulator_models
from multicloud_store_gcp.testing import METHODS, SecretManagerEmulator, crc32c

PROJECT = "test-project"
PARENT = f"projects/{PROJECT}"
AUTOMATIC: dict[str, Any] = {"replication": {"automatic": {}}}
State = secretmanager.SecretVersion.State


@pytest.fixture(scope="module")
def emulator() -> Iterator[SecretManagerEmulator]:
    with SecretManagerEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def _clean(emulator: SecretManagerEmulator) -> None:
    emulator.reset()


def _grpc_client(emu: SecretManagerEmulator) -> secretmanager.SecretManagerServiceClient:
    # The default gRPC transport opens a TLS channel with real credentials; the emulator is plaintext.
    channel = grpc.insecure_channel(emu.grpc_endpoint)
    return secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel)
    )


def _rest_client(emu: SecretManagerEmulator) -> secretmanager.SecretManagerServiceClient:
    # The REST transport keeps the scheme of an http:// endpoint.
    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emu.rest_endpoint},
    )


@pytest.fixture(params=["grpc", "rest"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(
    emulator: SecretManagerEmulator, transport: str
) -> Iterator[secretmanager.SecretManagerServiceClient]:
    built = _grpc_client(emulator) if transport == "grpc" else _rest_client(emulator)
    with built:
        yield built


def _create(client: secretmanager.SecretManagerServiceClient, secret_id: str, **secret: Any) -> Any:
    return client.create_secret(parent=PARENT, secret_id=secret_id, secret={**AUTOMATIC, **secret})


def _add(client: secretmanager.SecretManagerServiceClient, secret_name: str, data: bytes) -> Any:
    return client.add_secret_version(parent=secret_name, payload={"data": data, "data_crc32c": crc32c(data)})


# --------------------------------------------------------------------------------------------------- secrets


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_create_get_delete(client: secretmanager.SecretManagerServiceClient) -> None:
    created = _create(client, "db-password", labels={"env": "prod"})
    assert created.name == f"{PARENT}/secrets/db-password"
    assert created.create_time.timestamp() > 0
    assert created.etag.startswith('"') and created.etag.endswith('"')
    assert created.replication.automatic is not None

    fetched = client.get_secret(name=created.name)
    assert fetched.name == created.name
    assert dict(fetched.labels) == {"env": "prod"}
    assert fetched.etag == created.etag

    client.delete_secret(name=created.name)
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=created.name)
    # Deleted means gone: the same id can be created again at once.
    _create(client, "db-password")


def test_delete_removes_versions(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = _create(client, "s")
    _add(client, secret.name, b"v1")
    client.delete_secret(name=secret.name)
    _create(client, "s")
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/latest")


def test_create_duplicate_conflicts(client: secretmanager.SecretManagerServiceClient, transport: str) -> None:
    _create(client, "dup")
    with pytest.raises(gexc.Conflict) as info:
        _create(client, "dup")
    assert "already exists" in str(info.value)
    # gRPC carries the precise status; over REST api_core only sees HTTP 409.
    if transport == "grpc":
        assert isinstance(info.value, gexc.AlreadyExists)


def test_missing_resources_are_not_found(client: secretmanager.SecretManagerServiceClient) -> None:
    missing = f"{PARENT}/secrets/missing"
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=missing)
    with pytest.raises(gexc.NotFound):
        client.delete_secret(name=missing)
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"{missing}/versions/latest")
    with pytest.raises(gexc.NotFound):
        client.add_secret_version(parent=missing, payload={"data": b"x"})
    secret = _create(client, "present")
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/latest")  # no versions yet
    with pytest.raises(gexc.NotFound):
        client.get_secret_version(name=f"{secret.name}/versions/7")


@pytest.mark.parametrize("secret_id", ["has space", "a" * 256, "dot.ted", "ünï"])
def test_invalid_secret_ids(client: secretmanager.SecretManagerServiceClient, secret_id: str) -> None:
    with pytest.raises(gexc.BadRequest):
        _create(client, secret_id)


def test_longest_secret_id_is_valid(client: secretmanager.SecretManagerServiceClient) -> None:
    secret_id = "A_b-9" * 51  # 255 characters
    assert _create(client, secret_id).name.endswith(secret_id)


@pytest.mark.parametrize(
    "labels",
    [
        {"Env": "prod"},
        {"1env": "prod"},
        {"env": "Prod"},
        {"env": "pr od"},
        {"k" * 64: "v"},
        {"env": "v" * 64},
        {"": "v"},
        {f"k{i}": "v" for i in range(65)},
    ],
    ids=[
        "upper-key",
        "digit-first",
        "upper-value",
        "space",
        "long-key",
        "long-value",
        "empty-key",
        "65-labels",
    ],
)
def test_invalid_labels(client: secretmanager.SecretManagerServiceClient, labels: dict[str, str]) -> None:
    with pytest.raises(gexc.BadRequest):
        _create(client, "labelled", labels=labels)


def test_edge_labels_are_valid(client: secretmanager.SecretManagerServiceClient) -> None:
    labels = {"k" * 63: "v" * 63, "empty": "", "dash-and_underscore": "0-9_x", "één": "ça"}
    labels.update({f"n{i}": "x" for i in range(64 - len(labels))})
    assert dict(_create(client, "labelled", labels=labels).labels) == labels


def test_replication_and_cmek_round_trip(client: secretmanager.SecretManagerServiceClient) -> None:
    key = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"
    replication = {
        "user_managed": {
            "replicas": [
                {"location": "europe-west1", "customer_managed_encryption": {"kms_key_name": key}},
                {"location": "europe-west4"},
            ]
        }
    }
    created = client.create_secret(parent=PARENT, secret_id="cmek", secret={"replication": replication})
    fetched = client.get_secret(name=created.name)
    replicas = fetched.replication.user_managed.replicas
    assert [r.location for r in replicas] == ["europe-west1", "europe-west4"]
    assert replicas[0].customer_managed_encryption.kms_key_name == key


def test_replication_is_required_for_global_secrets(client: secretmanager.SecretManagerServiceClient) -> None:
    with pytest.raises(gexc.BadRequest):
        client.create_secret(parent=PARENT, secret_id="norepl", secret={})


def test_regional_secrets(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    parent = f"{PARENT}/locations/us-east1"
    created = client.create_secret(parent=parent, secret_id="regional", secret={"labels": {"a": "b"}})
    assert created.name == f"{parent}/secrets/regional"
    _add(client, created.name, b"here")
    assert client.access_secret_version(name=f"{created.name}/versions/1").payload.data == b"here"
    assert [s.name for s in client.list_secrets(parent=parent)] == [created.name]
    assert list(client.list_secrets(parent=PARENT)) == []
    assert emulator.secret_names(PROJECT, location="us-east1") == ["regional"]
    assert emulator.secret_names(PROJECT) == []


def test_update_labels_with_mask(client: secretmanager.SecretManagerServiceClient) -> None:
    created = _create(client, "upd", labels={"a": "1"}, annotations={"note": "kept"})
    updated = client.update_secret(
        secret={"name": created.name, "labels": {"b": "2"}, "annotations": {"note": "ignored"}},
        update_mask={"paths": ["labels"]},
    )
    assert dict(updated.labels) == {"b": "2"}
    assert dict(updated.annotations) == {"note": "kept"}  # not in the mask
    assert updated.etag != created.etag
    assert dict(client.get_secret(name=created.name).labels) == {"b": "2"}

    with pytest.raises(gexc.BadRequest):  # the mask is required
        client.update_secret(secret={"name": created.name, "labels": {"c": "3"}}, update_mask={"paths": []})
    with pytest.raises(gexc.BadRequest):  # replication is immutable
        client.update_secret(
            secret={"name": created.name, **AUTOMATIC}, update_mask={"paths": ["replication"]}
        )
    with pytest.raises(gexc.BadRequest):  # labels are validated on update too
        client.update_secret(
            secret={"name": created.name, "labels": {"X": "1"}}, update_mask={"paths": ["labels"]}
        )
    with pytest.raises(gexc.NotFound):
        client.update_secret(secret={"name": f"{PARENT}/secrets/nope"}, update_mask={"paths": ["labels"]})


def test_etags_guard_updates_and_deletes(client: secretmanager.SecretManagerServiceClient) -> None:
    created = _create(client, "etag")
    updated = client.update_secret(
        secret={"name": created.name, "labels": {"a": "1"}, "etag": created.etag},
        update_mask={"paths": ["labels"]},
    )
    # The service documents a stale etag as FAILED_PRECONDITION, HTTP 400.
    with pytest.raises(gexc.BadRequest):
        client.update_secret(
            secret={"name": created.name, "labels": {"a": "2"}, "etag": created.etag},
            update_mask={"paths": ["labels"]},
        )
    with pytest.raises(gexc.BadRequest):
        client.delete_secret(request={"name": created.name, "etag": created.etag})
    client.delete_secret(request={"name": created.name, "etag": updated.etag})


@pytest.fixture
def service_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move the (in-process) emulator's clock on by some seconds, without sleeping.

    A TTL test that sleeps depends on the machine's speed both ways: the secret must still exist when first
    read, and be gone after the sleep. With this clock nothing expires until the test says so.
    """
    offset = [0]
    real_time_ns = time.time_ns
    clock = types.SimpleNamespace(time_ns=lambda: real_time_ns() + offset[0], sleep=time.sleep)
    monkeypatch.setattr(emulator_models, "time", clock)

    def advance(seconds: float) -> None:
        offset[0] += int(seconds * 1e9)

    return advance


def test_ttl_expires_the_secret(
    client: secretmanager.SecretManagerServiceClient, service_clock: Callable[[float], None]
) -> None:
    created = _create(client, "ephemeral", ttl={"seconds": 60})
    assert created.expire_time.timestamp() > created.create_time.timestamp()
    client.get_secret(name=created.name)
    service_clock(59)
    client.get_secret(name=created.name)  # not yet
    service_clock(2)
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=created.name)


def test_update_expiration(client: secretmanager.SecretManagerServiceClient) -> None:
    created = _create(client, "expiring", ttl={"seconds": 3600})
    later = client.update_secret(
        secret={"name": created.name, "ttl": {"seconds": 7200}}, update_mask={"paths": ["ttl"]}
    )
    assert later.expire_time.timestamp() - created.expire_time.timestamp() > 3000
    forever = client.update_secret(secret={"name": created.name}, update_mask={"paths": ["expire_time"]})
    assert "expire_time" not in forever
    assert "ttl" not in forever


# --------------------------------------------------------------------------------------------------- versions


def test_add_and_access_with_checksum(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = _create(client, "payload")
    data = "ünïcode \x00 bytes".encode()
    version = _add(client, secret.name, data)
    assert version.name == f"{secret.name}/versions/1"
    assert version.state == State.ENABLED
    assert version.client_specified_payload_checksum is True

    response = client.access_secret_version(name=version.name)
    assert response.name == version.name
    assert response.payload.data == data
    assert response.payload.data_crc32c == crc32c(data)

    # Without a checksum the version says so, and access still returns one.
    unchecked = client.add_secret_version(parent=secret.name, payload={"data": b"plain"})
    assert unchecked.name.endswith("/versions/2")
    assert unchecked.client_specified_payload_checksum is False
    assert client.access_secret_version(name=unchecked.name).payload.data_crc32c == crc32c(b"plain")


def test_checksum_mismatch_is_rejected(
    client: secretmanager.SecretManagerServiceClient, transport: str
) -> None:
    secret = _create(client, "crc")
    with pytest.raises(gexc.BadRequest) as info:
        client.add_secret_version(parent=secret.name, payload={"data": b"abc", "data_crc32c": crc32c(b"abd")})
    if transport == "grpc":
        assert isinstance(info.value, gexc.InvalidArgument)
    assert list(client.list_secret_versions(parent=secret.name)) == []


def test_payload_size_limit(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = _create(client, "big")
    biggest = bytes(range(256)) * 256  # exactly 65,536 bytes
    version = _add(client, secret.name, biggest)
    assert client.access_secret_version(name=version.name).payload.data == biggest
    with pytest.raises(gexc.BadRequest):
        _add(client, secret.name, biggest + b"!")
    with pytest.raises(gexc.BadRequest):
        client.add_secret_version(parent=secret.name, payload={"data": b""})


def test_latest_and_version_states(client: secretmanager.SecretManagerServiceClient, transport: str) -> None:
    secret = _create(client, "states")
    for data in (b"one", b"two", b"three"):
        _add(client, secret.name, data)
    latest = f"{secret.name}/versions/latest"
    v2, v3 = f"{secret.name}/versions/2", f"{secret.name}/versions/3"
    assert client.access_secret_version(name=latest).payload.data == b"three"
    assert client.access_secret_version(name=latest).name == v3  # the alias resolves in the response
    assert client.get_secret_version(name=latest).name == v3

    # 'latest' is the newest version whatever its state, as in the service: disabling it breaks 'latest'.
    disabled = client.disable_secret_version(name=v3)
    assert disabled.state == State.DISABLED
    with pytest.raises(gexc.BadRequest) as info:
        client.access_secret_version(name=latest, retry=None)
    assert "DISABLED" in str(info.value)
    if transport == "grpc":
        assert isinstance(info.value, gexc.FailedPrecondition)
    assert client.access_secret_version(name=v2).payload.data == b"two"

    assert client.enable_secret_version(name=v3).state == State.ENABLED
    assert client.access_secret_version(name=latest).payload.data == b"three"

    destroyed = client.destroy_secret_version(name=v3)
    assert destroyed.state == State.DESTROYED
    assert destroyed.destroy_time.timestamp() > 0
    with pytest.raises(gexc.BadRequest) as info:
        client.access_secret_version(name=v3, retry=None)
    assert "DESTROYED" in str(info.value)
    with pytest.raises(gexc.BadRequest):
        client.enable_secret_version(name=v3)
    with pytest.raises(gexc.BadRequest):
        client.destroy_secret_version(name=v3)

    # A new version becomes 'latest'; numbers are never reused.
    v4 = _add(client, secret.name, b"four")
    assert v4.name == f"{secret.name}/versions/4"
    assert client.access_secret_version(name=latest).payload.data == b"four"


def test_version_etags(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = _create(client, "vetag")
    version = _add(client, secret.name, b"x")
    enabled = client.enable_secret_version(request={"name": version.name, "etag": version.etag})
    assert enabled.etag != version.etag  # even a no-op renews the etag
    with pytest.raises(gexc.BadRequest):
        client.disable_secret_version(request={"name": version.name, "etag": version.etag})
    client.disable_secret_version(request={"name": version.name, "etag": enabled.etag})


def test_delayed_destruction(
    client: secretmanager.SecretManagerServiceClient, service_clock: Callable[[float], None]
) -> None:
    secret = _create(client, "delayed", version_destroy_ttl={"seconds": 60})
    version = _add(client, secret.name, b"x")
    pending = client.destroy_secret_version(name=version.name)
    assert pending.state == State.DISABLED
    assert pending.scheduled_destroy_time.timestamp() > 0
    service_clock(59)
    assert client.get_secret_version(name=version.name).state == State.DISABLED  # not yet
    service_clock(2)
    assert client.get_secret_version(name=version.name).state == State.DESTROYED


def test_version_aliases(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = _create(client, "aliased")
    _add(client, secret.name, b"one")
    _add(client, secret.name, b"two")
    client.update_secret(
        secret={"name": secret.name, "version_aliases": {"stable": 1}},
        update_mask={"paths": ["version_aliases"]},
    )
    response = client.access_secret_version(name=f"{secret.name}/versions/stable")
    assert (response.name, response.payload.data) == (f"{secret.name}/versions/1", b"one")
    with pytest.raises(gexc.BadRequest):  # an alias must point to an existing version
        client.update_secret(
            secret={"name": secret.name, "version_aliases": {"future": 9}},
            update_mask={"paths": ["version_aliases"]},
        )


def test_list_versions_filter_and_pages(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    secret = _create(client, "many")
    for index in range(5):
        _add(client, secret.name, f"v{index}".encode())
    client.disable_secret_version(name=f"{secret.name}/versions/2")

    before = emulator.calls["ListSecretVersions"]
    pager = client.list_secret_versions(request={"parent": secret.name, "page_size": 2})
    names = [v.name.rsplit("/", 1)[1] for v in pager]
    assert names == ["5", "4", "3", "2", "1"]  # newest first
    assert emulator.calls["ListSecretVersions"] - before == 3

    enabled = client.list_secret_versions(request={"parent": secret.name, "filter": "state:ENABLED"})
    assert [v.name.rsplit("/", 1)[1] for v in enabled] == ["5", "4", "3", "1"]
    disabled = client.list_secret_versions(request={"parent": secret.name, "filter": "state=DISABLED"})
    assert [v.state for v in disabled] == [State.DISABLED]


# --------------------------------------------------------------------------------------------------- lists


def test_list_pagination(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    expected = sorted(f"{PARENT}/secrets/secret-{index:02d}" for index in range(25))
    for index in range(25):
        _create(client, f"secret-{index:02d}")
    _ = client.create_secret(parent="projects/other", secret_id="elsewhere", secret=AUTOMATIC)

    first = client.list_secrets(request={"parent": PARENT, "page_size": 10})
    assert first.total_size == 25
    pages = list(first.pages)
    assert [len(page.secrets) for page in pages] == [10, 10, 5]
    assert [s.name for page in pages for s in page.secrets] == expected
    assert pages[-1].next_page_token == ""

    before = emulator.calls["ListSecrets"]
    assert [s.name for s in client.list_secrets(request={"parent": PARENT, "page_size": 10})] == expected
    assert emulator.calls["ListSecrets"] - before == 3  # one round trip per page

    # Keyset tokens: a secret created between pages neither repeats nor disappears earlier ones.
    page_one = client.list_secrets(request={"parent": PARENT, "page_size": 10})
    token = page_one.next_page_token
    _create(client, "secret-00a")
    page_two = client.list_secrets(request={"parent": PARENT, "page_size": 10, "page_token": token})
    assert page_two.secrets[0].name == f"{PARENT}/secrets/secret-10"

    with pytest.raises(gexc.BadRequest):
        client.list_secrets(request={"parent": PARENT, "page_token": "not a token!"})


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("labels.env=prod", ["a", "b"]),
        ("labels.env=prod AND labels.team=x", ["a"]),
        ("labels.env=prod labels.team=x", ["a"]),
        ("labels.team:*", ["a", "c"]),
        ("labels.owner:*", ["d"]),  # present with an empty value
        ("NOT labels.team:*", ["b", "d"]),
        ("-labels.env=prod", ["c", "d"]),
        ("labels.env=prod OR labels.team=y", ["a", "b", "c"]),
        ("(labels.env=dev OR labels.env=prod) AND labels.team:*", ["a", "c"]),
        ("labels.env!=prod", ["c", "d"]),
        ('labels.env="prod"', ["a", "b"]),
        ("name:b", ["b"]),
        ("replication.automatic:*", ["a", "b", "c", "d"]),
        ("create_time>2000-01-01T00:00:00Z", ["a", "b", "c", "d"]),
        ("create_time<2000-01-01T00:00:00Z", []),
        ("labels.nope=x", []),
    ],
)
def test_list_filters(
    client: secretmanager.SecretManagerServiceClient, filter_: str, expected: list[str]
) -> None:
    _create(client, "a", labels={"env": "prod", "team": "x"})
    _create(client, "b", labels={"env": "prod"})
    _create(client, "c", labels={"env": "dev", "team": "y"})
    _create(client, "d", labels={"owner": ""})
    first = client.list_secrets(request={"parent": PARENT, "filter": filter_})
    assert [s.name.rsplit("/", 1)[1] for s in first] == expected
    assert first.total_size == 0  # documented: 0 whenever a filter is set


def test_filter_with_pagination(client: secretmanager.SecretManagerServiceClient) -> None:
    for index in range(12):
        _create(client, f"f{index:02d}", labels={"parity": "even" if index % 2 == 0 else "odd"})
    pages = list(
        client.list_secrets(request={"parent": PARENT, "filter": "labels.parity=even", "page_size": 4}).pages
    )
    assert [len(page.secrets) for page in pages] == [4, 2]


def test_invalid_filter(client: secretmanager.SecretManagerServiceClient) -> None:
    with pytest.raises(gexc.BadRequest):
        client.list_secrets(request={"parent": PARENT, "filter": "labels.env=("})
    with pytest.raises(gexc.BadRequest):
        client.list_secrets(request={"parent": PARENT, "filter": "(labels.env=x"})


# --------------------------------------------------------------------------------------------------- knobs


# Over REST api_core picks the class from the HTTP status alone (Forbidden, not PermissionDenied), as it does
# against the real service; over gRPC it gets the precise subclass.
@pytest.mark.parametrize(
    ("code", "over_rest", "over_grpc"),
    [
        ("UNAVAILABLE", gexc.ServiceUnavailable, gexc.ServiceUnavailable),
        ("RESOURCE_EXHAUSTED", gexc.TooManyRequests, gexc.ResourceExhausted),
        ("PERMISSION_DENIED", gexc.Forbidden, gexc.PermissionDenied),
        ("INTERNAL", gexc.InternalServerError, gexc.InternalServerError),
        ("DEADLINE_EXCEEDED", gexc.GatewayTimeout, gexc.DeadlineExceeded),
    ],
)
def test_injected_faults_map_to_api_core(
    client: secretmanager.SecretManagerServiceClient,
    emulator: SecretManagerEmulator,
    transport: str,
    code: str,
    over_rest: type[Exception],
    over_grpc: type[Exception],
) -> None:
    secret = _create(client, "faulty")
    emulator.inject_fault(code, times=2)
    for _ in range(2):
        with pytest.raises(over_rest) as info:
            client.get_secret(name=secret.name)
        assert "GetSecret" in str(info.value)
        if transport == "grpc":
            assert isinstance(info.value, over_grpc)
    client.get_secret(name=secret.name)  # the fault is used up


def test_unauthenticated(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator, transport: str
) -> None:
    emulator.inject_fault("UNAUTHENTICATED")
    if transport == "grpc":
        with pytest.raises(gexc.Unauthenticated):
            client.get_secret(name=f"{PARENT}/secrets/any")
    else:
        # On a 401 google.auth's session refreshes the credentials and retries; anonymous ones cannot refresh.
        with pytest.raises(google.auth.exceptions.GoogleAuthError):
            client.get_secret(name=f"{PARENT}/secrets/any")


def test_faults_target_methods(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    secret = _create(client, "targeted")
    version = _add(client, secret.name, b"x")
    emulator.inject_fault("PERMISSION_DENIED", methods={"AccessSecretVersion"})
    client.get_secret(name=secret.name)
    client.get_secret_version(name=version.name)
    with pytest.raises(gexc.Forbidden):
        client.access_secret_version(name=version.name)
    assert client.access_secret_version(name=version.name).payload.data == b"x"


def test_client_retry_rides_out_unavailable(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    secret = _create(client, "retried")
    version = _add(client, secret.name, b"x")
    emulator.inject_fault("UNAVAILABLE", times=2, methods=["AccessSecretVersion"])
    # Short pauses, generous overall deadline: the two faulted calls must not use it up on a loaded machine.
    quick = gretry.Retry(
        initial=0.01, maximum=0.02, timeout=120, predicate=gretry.if_exception_type(gexc.ServiceUnavailable)
    )
    assert client.access_secret_version(name=version.name, retry=quick).payload.data == b"x"
    assert emulator.calls["AccessSecretVersion"] == 3  # faulted calls are round trips too


def test_latency(client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator) -> None:
    secret = _create(client, "slow")
    emulator.latency = 0.2
    assert emulator.latency == 0.2
    started = time.perf_counter()
    client.get_secret(name=secret.name)
    assert time.perf_counter() - started >= 0.2
    emulator.latency = 0
    started = time.perf_counter()
    for _ in range(100):
        client.get_secret(name=secret.name)
    # No Nagle stall: a hundred keep-alive calls take far less than the 100 x 40 ms (4 s) stalls would; half of
    # that leaves room for a loaded machine (about 2 ms a call when idle).
    assert time.perf_counter() - started < 2.0
    with pytest.raises(ValueError):
        emulator.latency = -1


def test_latency_beyond_the_deadline(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator, transport: str
) -> None:
    # The test is about the client's deadline, so it is short; the latency is far beyond it, so the call
    # cannot answer in time however slow the machine.
    emulator.latency = 3.0
    # gRPC reports DEADLINE_EXCEEDED; the REST transport lets requests' own timeout error through.
    expected = gexc.DeadlineExceeded if transport == "grpc" else __import__("requests").exceptions.Timeout
    with pytest.raises(expected):
        client.get_secret(name=f"{PARENT}/secrets/any", timeout=0.1)


def test_corrupt_checksums(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    secret = _create(client, "corrupt")
    version = _add(client, secret.name, b"payload")
    emulator.corrupt_checksums()
    response = client.access_secret_version(name=version.name)
    assert response.payload.data == b"payload"
    assert response.payload.data_crc32c != crc32c(b"payload")
    emulator.corrupt_checksums(False)
    assert client.access_secret_version(name=version.name).payload.data_crc32c == crc32c(b"payload")


def test_calls_and_reset(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    _create(client, "counted")
    client.get_secret(name=f"{PARENT}/secrets/counted")
    client.get_secret(name=f"{PARENT}/secrets/counted")
    assert emulator.calls == {"CreateSecret": 1, "GetSecret": 2}
    assert emulator.secret_names(PROJECT) == ["counted"]
    emulator.inject_fault("UNAVAILABLE")
    emulator.latency = 0.5
    emulator.corrupt_checksums()
    emulator.reset()
    assert emulator.calls == {}
    assert emulator.secret_names(PROJECT) == []
    assert emulator.latency == 0
    secret = _create(client, "counted")  # no fault, no delay left
    version = _add(client, secret.name, b"x")
    assert client.access_secret_version(name=version.name).payload.data_crc32c == crc32c(b"x")


def test_inject_fault_validates_its_arguments(emulator: SecretManagerEmulator) -> None:
    with pytest.raises(ValueError):
        emulator.inject_fault("NOT_A_CODE")
    with pytest.raises(ValueError):
        emulator.inject_fault("OK")
    with pytest.raises(ValueError):
        emulator.inject_fault("UNAVAILABLE", times=0)
    with pytest.raises(ValueError):
        emulator.inject_fault("UNAVAILABLE", methods={"AccessSecret"})
    with pytest.raises(ValueError):
        emulator.inject_fault("UNAVAILABLE", methods="AccessSecretVersion")
    assert "AccessSecretVersion" in METHODS


def test_lost_answers_commit_then_fail_on_both_front_ends(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator, transport: str
) -> None:
    secret = _create(client, "lost")
    emulator.lose_answers(times=2, methods={"AddSecretVersion"})
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable, match="answer to AddSecretVersion was lost"):
            client.add_secret_version(parent=secret.name, payload={"data": b"x"}, retry=None)
    # Both calls took effect although neither was answered; the next one is answered again.
    assert _add(client, secret.name, b"y").name.endswith("/versions/3")
    # A lost answer hides the call's own refusal too: a retried create that now conflicts.
    emulator.lose_answers(methods={"CreateSecret"}, code="DEADLINE_EXCEEDED")
    with pytest.raises(gexc.GatewayTimeout):
        client.create_secret(parent=PARENT, secret_id="lost", secret=AUTOMATIC, retry=None)
    assert emulator.calls["CreateSecret"] == 2


def test_lost_answers_share_the_fault_queue(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    emulator.inject_fault("UNAVAILABLE", methods={"CreateSecret"})
    emulator.lose_answers(methods={"CreateSecret"})
    with pytest.raises(gexc.ServiceUnavailable, match="Injected fault: CreateSecret failed"):
        client.create_secret(parent=PARENT, secret_id="queued", secret=AUTOMATIC, retry=None)
    assert emulator.secret_names(PROJECT) == []  # refused before it acted
    with pytest.raises(gexc.ServiceUnavailable, match="was lost"):
        client.create_secret(parent=PARENT, secret_id="queued", secret=AUTOMATIC, retry=None)
    assert emulator.secret_names(PROJECT) == ["queued"]  # acted, then the answer was lost


def test_stale_latest_lags_behind_adds_only(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator, transport: str
) -> None:
    secret = _create(client, "stale")
    _add(client, secret.name, b"one")
    emulator.stale_latest = 600
    _add(client, secret.name, b"two")
    latest = f"{secret.name}/versions/latest"
    assert client.access_secret_version(name=latest).payload.data == b"one"
    assert client.get_secret_version(name=latest).name.endswith("/versions/1")
    assert client.access_secret_version(name=f"{secret.name}/versions/2").payload.data == b"two"
    # 'latest' still names version 1 after it is destroyed: the service's FAILED_PRECONDITION (400 over REST).
    client.destroy_secret_version(name=f"{secret.name}/versions/1")
    with pytest.raises(gexc.BadRequest, match="DESTROYED"):
        client.access_secret_version(name=latest)
    emulator.reset()
    assert emulator.stale_latest == 0


def test_stale_latest_validates_its_argument(emulator: SecretManagerEmulator) -> None:
    with pytest.raises(ValueError):
        emulator.stale_latest = -1
    with pytest.raises(ValueError):
        emulator.lose_answers(times=0)
    with pytest.raises(ValueError):
        emulator.lose_answers(code="OK")
    with pytest.raises(ValueError):
        emulator.lose_answers(methods={"Nope"})


# --------------------------------------------------------------------------------------------------- wiring


def test_both_front_ends_share_one_state(emulator: SecretManagerEmulator) -> None:
    with _grpc_client(emulator) as over_grpc, _rest_client(emulator) as over_rest:
        secret = _create(over_grpc, "shared")
        _add(over_rest, secret.name, b"written over REST")
        assert over_grpc.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == (
            b"written over REST"
        )


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_client_helper(emulator: SecretManagerEmulator, kind: Any) -> None:
    with emulator.client(kind) as built:
        assert _create(built, f"helper-{kind}").name.endswith(f"helper-{kind}")
    with pytest.raises(ValueError):
        emulator.client("http")  # type: ignore[arg-type]


def test_rest_wire_format(emulator: SecretManagerEmulator) -> None:
    host, port = emulator.rest_endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("GET", f"/v1/{PARENT}/secrets/missing")
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 404
        assert response.getheader("Content-Length") is not None
        assert body["error"]["code"] == 404
        assert body["error"]["status"] == "NOT_FOUND"
        assert "missing" in body["error"]["message"]

        # Same connection (keep-alive): create, then add a version with a JSON body in the proto3 mapping.
        connection.request(
            "POST",
            f"/v1/{PARENT}/secrets?secretId=raw",
            body=json.dumps(AUTOMATIC),
            headers={"Content-Type": "x"},
        )
        response = connection.getresponse()
        created = json.loads(response.read())
        assert response.status == 200
        assert created["name"] == f"{PARENT}/secrets/raw"
        assert "createTime" in created

        connection.request(
            "POST", f"/v1/{PARENT}/secrets/raw:addVersion", body=json.dumps({"payload": {"data": "aGk="}})
        )
        response = connection.getresponse()
        assert json.loads(response.read())["state"] == "ENABLED"

        connection.request("GET", f"/v1/{PARENT}/secrets/raw/versions/1:access")
        response = connection.getresponse()
        payload = json.loads(response.read())["payload"]
        assert payload == {"data": "aGk=", "dataCrc32c": str(crc32c(b"hi"))}

        connection.request("GET", f"/v1/{PARENT}/secrets/raw:getIamPolicy")
        response = connection.getresponse()
        assert response.status == 501
        assert json.loads(response.read())["error"]["status"] == "UNIMPLEMENTED"

        connection.request("POST", f"/v1/{PARENT}/secrets?secretId=bad-json", body=b"{nope")
        response = connection.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["error"]["status"] == "INVALID_ARGUMENT"
    finally:
        connection.close()


def test_lifecycle() -> None:
    emu = SecretManagerEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.grpc_endpoint
    with pytest.raises(RuntimeError):
        _ = emu.rest_endpoint
    emu.start()
    try:
        with pytest.raises(RuntimeError):
            emu.start()
        assert emu.grpc_endpoint.startswith("127.0.0.1:")
        assert emu.rest_endpoint.startswith("http://127.0.0.1:")
    finally:
        emu.stop()
    emu.stop()  # idempotent


def test_command_line() -> None:
    package_root = Path(multicloud_store_gcp.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "multicloud_store_gcp.testing", "--grpc-port", "0", "--rest-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("Secret Manager emulator: gRPC 127.0.0.1:"), first_line
        rest_endpoint = first_line.rsplit("REST ", 1)[1].strip()
        with secretmanager.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": rest_endpoint},
        ) as over_rest:
            assert _create(over_rest, "from-cli").name == f"{PARENT}/secrets/from-cli"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_clear_faults_keeps_secrets() -> None:
    with SecretManagerEmulator() as emulator:
        client = emulator.client("grpc")
        client.create_secret(
            parent="projects/p", secret_id="kept", secret={"replication": {"automatic": {}}}, retry=None
        )
        emulator.inject_fault("UNAVAILABLE", times=5)
        emulator.clear_faults()
        assert client.get_secret(name="projects/p/secrets/kept", retry=None).name == "projects/p/secrets/kept"
