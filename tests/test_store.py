"""Dispatcher behaviour: validation before the network, envelope, ownership, errors, logging, repr."""

from __future__ import annotations

import json
import logging
import pickle
import uuid
from typing import Any

import pytest

from multicloud_store import envelope
from multicloud_store.driver import DriverLimits, SecretsDriver, StoredSecret
from multicloud_store.drivers.memory import MemoryDriver, MemorySettings
from multicloud_store.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidSecretError,
    MultiCloudStoreError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.settings import StoreSettings
from multicloud_store.store import LABEL_DEPLOYMENT, LABEL_SECRET_ID, SecretsStore
from multicloud_store.testing import BAD_IDS, BAD_VALUES

SENTINEL = "zz-sentinel-secret-value-41"


@pytest.fixture
def driver() -> MemoryDriver:
    return MemoryDriver(MemorySettings())


@pytest.fixture
def store(driver: MemoryDriver) -> SecretsStore:
    return SecretsStore(StoreSettings(backend="memory", deployment_id="prod"), driver=driver)


def test_the_driver_protocol_is_satisfied(driver: MemoryDriver) -> None:
    assert isinstance(driver, SecretsDriver)


def test_backend_name_is_prefix_dash_uuid(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    assert list(driver._data) == [f"multicloud-store-{sid}"]
    assert store.secret_name(sid) == f"multicloud-store-{sid}"


def test_envelope_records_deployment_and_id(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    stored = driver._data[store.secret_name(sid)]
    assert json.loads(stored.payload) == {
        "multicloud-store": 1,
        "deployment": "prod",
        "id": str(sid),
        "values": {"a": "b"},
    }
    assert stored.labels[LABEL_DEPLOYMENT] == "prod"
    assert stored.labels[LABEL_SECRET_ID] == str(sid)


def test_a_read_is_one_round_trip(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b"})
    driver.calls.clear()
    store.get_secret_values(sid)
    assert sum(driver.calls.values()) == 1


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=lambda v: repr(v)[:20])
def test_bad_ids_never_reach_the_driver(store: SecretsStore, driver: MemoryDriver, bad_id: Any) -> None:
    for call in (
        lambda: store.store_secret_values(bad_id, {"a": "1"}),
        lambda: store.get_secret_values(bad_id),
        lambda: store.update_secret_values(bad_id, {"a": "1"}),
        lambda: store.delete_secret_values(bad_id),
        lambda: store.get_many([uuid.uuid4(), bad_id]),
    ):
        with pytest.raises(InvalidSecretError):
            call()
    assert sum(driver.calls.values()) == 0


@pytest.mark.parametrize("bad_values", BAD_VALUES, ids=lambda v: repr(v)[:30])
def test_bad_values_never_reach_the_driver(
    store: SecretsStore, driver: MemoryDriver, bad_values: Any
) -> None:
    sid = uuid.uuid4()
    for call in (
        lambda: store.store_secret_values(sid, bad_values),
        lambda: store.update_secret_values(sid, bad_values),
    ):
        with pytest.raises(InvalidSecretError):
            call()
    assert sum(driver.calls.values()) == 0


def test_oversized_payload_never_reaches_the_driver(store: SecretsStore, driver: MemoryDriver) -> None:
    with pytest.raises(InvalidSecretError, match=r"would be \d+ bytes, the limit is 25000 bytes"):
        store.store_secret_values(uuid.uuid4(), {"k": "x" * 25_000})
    assert sum(driver.calls.values()) == 0


def test_exists_is_not_a_key_error(store: SecretsStore) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {})
    with pytest.raises(SecretExistsError) as info:
        store.store_secret_values(sid, {"other": "values"})
    assert not isinstance(info.value, KeyError)
    assert info.value.secret_id == sid
    assert info.value.backend == "memory"


def test_not_found_is_a_key_error_with_a_readable_message(store: SecretsStore) -> None:
    sid = uuid.uuid4()
    with pytest.raises(KeyError) as info:
        store.get_secret_values(sid)
    assert isinstance(info.value, SecretNotFoundError)
    assert str(info.value).startswith("secret ")  # not the quoted repr KeyError.__str__ would give
    assert info.value.secret_id == sid


def test_foreign_payload_under_our_name_is_not_ours(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    name = store.secret_name(sid)
    driver._data[name] = StoredSecret(name, '{"username": "someone else"}', {})
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        store.delete_secret_values(sid)
    assert name in driver._data


def test_envelope_of_another_id_is_not_ours(store: SecretsStore, driver: MemoryDriver) -> None:
    # A payload copied onto another name must not be served under that name.
    a, b = uuid.uuid4(), uuid.uuid4()
    store.store_secret_values(a, {"v": "a"})
    driver._data[store.secret_name(b)] = StoredSecret(
        store.secret_name(b), driver._data[store.secret_name(a)].payload
    )
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(b)


def test_garbage_labelled_as_ours_is_corruption(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    name = store.secret_name(sid)
    old = driver._data[name]
    driver._data[name] = StoredSecret(name, "{not json", old.labels)
    with pytest.raises(SecretCorruptedError):
        store.get_secret_values(sid)


def test_newer_envelope_version_is_reported(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    name = store.secret_name(sid)
    old = driver._data[name]
    document = json.loads(old.payload)
    document["multicloud-store"] = 2
    driver._data[name] = StoredSecret(name, json.dumps(document), old.labels)
    with pytest.raises(SecretCorruptedError, match="version 2 is not supported"):
        store.get_secret_values(sid)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "null",
        "[]",
        '"text"',
        '{"multicloud-store": 1}',
        '{"multicloud-store": 1, "deployment": "prod", "id": "x", "values": {"a": 1}}',
        '{"multicloud-store": 1, "deployment": 5, "id": "x", "values": {}}',
    ],
)
def test_envelope_decode_rejects_malformed(payload: str) -> None:
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(payload)


def test_backend_errors_are_stamped_and_propagate(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    driver.fail_next(lambda: BackendUnavailableError("injected"), operations={"read"})
    with pytest.raises(BackendUnavailableError) as info:
        store.get_secret_values(sid)
    assert info.value.secret_id == sid
    assert info.value.backend == "memory"


def test_update_of_missing_secret_writes_nothing(store: SecretsStore, driver: MemoryDriver) -> None:
    with pytest.raises(SecretNotFoundError):
        store.update_secret_values(uuid.uuid4(), {"a": "1"})
    assert driver.calls["replace"] == 0
    assert not driver._data


def test_failed_create_leaves_nothing(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    driver.fail_next(lambda: BackendUnavailableError("injected"), operations={"create"})
    with pytest.raises(BackendUnavailableError):
        store.store_secret_values(sid, {"a": "1"})
    assert not store.secret_exists(sid)


def test_errors_pickle_with_their_attributes() -> None:
    sid = uuid.uuid4()
    error = SecretNotFoundError("secret x not found", secret_id=sid, backend="aws")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is SecretNotFoundError
    assert (copy.secret_id, copy.backend, str(copy)) == (sid, "aws", "secret x not found")


def test_no_value_in_debug_logs_errors_or_reprs(
    store: SecretsStore,
    driver: MemoryDriver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An in-process CLI run earlier in the session may have left the library logger's level or propagation set.
    monkeypatch.setattr(logging.getLogger("multicloud_store"), "propagate", True)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="multicloud_store")
    sid = uuid.uuid4()
    texts: list[str] = []
    store.store_secret_values(sid, {"password": SENTINEL})
    store.get_secret_values(sid)
    store.get_many([sid, uuid.uuid4()])
    for bad in ({"password": SENTINEL, "n": 1}, {"password": SENTINEL + "\x00"}, {"p": SENTINEL * 20_000}):
        with pytest.raises(MultiCloudStoreError) as info:
            store.update_secret_values(sid, bad)  # type: ignore[arg-type]
        texts += [str(info.value), repr(info.value)]
    with pytest.raises(SecretExistsError) as exists:
        store.store_secret_values(sid, {"password": SENTINEL, "other": SENTINEL})
    texts += [str(exists.value), repr(exists.value)]
    outcomes = store.get_many([sid])
    store.update_secret_values(sid, {"password": SENTINEL + "2"})
    store.delete_secret_values(sid)
    texts += [
        caplog.text,
        repr(store),
        repr(driver),
        repr(outcomes),
        repr(driver._data),
        repr(store.settings),
    ]
    assert caplog.text  # debug logging did happen
    assert not [t for t in texts if SENTINEL in t]


def test_settings_that_do_not_fit_the_backend_fail_at_construction(driver: MemoryDriver) -> None:
    class StrictDriver(MemoryDriver):
        @property
        def limits(self) -> DriverLimits:
            return DriverLimits(max_payload_bytes=100, name_pattern=r"[a-z0-9-]+", max_name_length=40)

    with pytest.raises(ConfigurationError, match="MULTICLOUD_STORE_NAME_PREFIX"):
        SecretsStore(StoreSettings(backend="memory", name_prefix="Upper"), driver=StrictDriver())


def test_list_ignores_names_that_are_not_ours(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {})
    labels = dict(driver._data[store.secret_name(sid)].labels)
    driver._data["multicloud-store-not-a-uuid"] = StoredSecret("multicloud-store-not-a-uuid", "{}", labels)
    driver._data["other-prefix-x"] = StoredSecret("other-prefix-x", "{}", labels)
    assert list(store.list_secret_ids()) == [sid]


def test_closed_store_refuses_calls(driver: MemoryDriver) -> None:
    store = SecretsStore(StoreSettings(backend="memory"), driver=driver)
    store.close()
    store.close()  # idempotent
    with pytest.raises(MultiCloudStoreError, match="closed"):
        store.get_secret_values(uuid.uuid4())


def test_from_env_reads_only_the_given_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "aws")
    store = SecretsStore.from_env(
        {"MULTICLOUD_STORE_BACKEND": "memory", "MULTICLOUD_STORE_DEPLOYMENT_ID": "x"}
    )
    assert store.backend == "memory"
    assert store.settings.deployment_id == "x"


def test_zenml_uuid_deployment_id_is_accepted() -> None:
    deployment = uuid.uuid4()
    settings = StoreSettings(backend="memory", deployment_id=str(deployment).upper())
    assert settings.deployment_id == str(deployment)


def test_an_unknown_envelope_version_is_not_echoed(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    name = store.secret_name(sid)
    old = driver._data[name]
    document = json.loads(old.payload)
    document["multicloud-store"] = SENTINEL
    driver._data[name] = StoredSecret(name, json.dumps(document), old.labels)
    with pytest.raises(SecretCorruptedError, match="version of type str") as info:
        store.get_secret_values(sid)
    assert SENTINEL not in str(info.value)


def test_payload_size_refuses_what_store_refuses(store: SecretsStore) -> None:
    with pytest.raises(InvalidSecretError, match="surrogates"):
        store.payload_size(uuid.uuid4(), {"k": "\ud800"})


# -- issue 10: lost answers, idempotent retries, exact names ---------------------------------------------------


def test_common_paths_make_no_extra_round_trip(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    driver.calls.clear()
    store.store_secret_values(sid, {"a": "1"})
    assert driver.calls == {"create": 1}
    driver.calls.clear()
    store.update_secret_values(sid, {"a": "2"})
    assert driver.calls == {"read": 1, "replace": 1}
    driver.calls.clear()
    store.delete_secret_values(sid)
    assert driver.calls == {"read": 1, "delete": 1}


@pytest.mark.parametrize("operation", ["create", "replace", "delete"])
def test_a_lost_answer_costs_one_verification_read(
    store: SecretsStore, driver: MemoryDriver, operation: str
) -> None:
    sid = uuid.uuid4()
    if operation != "create":
        store.store_secret_values(sid, {"a": "1"})
    driver.calls.clear()
    driver.lose_next_answers(operations={operation})
    if operation == "create":
        store.store_secret_values(sid, {"a": "1"})
    elif operation == "replace":
        store.update_secret_values(sid, {"a": "2"})
    else:
        store.delete_secret_values(sid)
    reads_before = 0 if operation == "create" else 1
    assert driver.calls == {operation: 1, "read": reads_before + 1}
    expected = {"create": {"a": "1"}, "replace": {"a": "2"}, "delete": None}[operation]
    assert (store.get_secret_values(sid) if store.secret_exists(sid) else None) == expected


def test_an_unverified_write_reraises_the_original_error(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    original = BackendUnavailableError("injected: create never reached the service")
    driver.fail_next(lambda: original, operations={"create"})
    with pytest.raises(BackendUnavailableError) as info:
        store.store_secret_values(sid, {"a": "1"})
    assert info.value is original
    assert info.value.secret_id == sid
    assert driver.calls["read"] == 1  # the one verification read found nothing
    assert not store.secret_exists(sid)


def test_a_failed_verification_read_reraises_the_write_error(
    store: SecretsStore, driver: MemoryDriver
) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    original = BackendUnavailableError("injected: delete failed")
    driver.fail_next(lambda: original, operations={"delete"})
    # The first read proves ownership; the second, the verification, fails too.
    calls = {"n": 0}
    real_read = driver.read

    def read(name: str) -> StoredSecret:
        calls["n"] += 1
        if calls["n"] == 2:
            raise BackendUnavailableError("injected: the verification read failed too")
        return real_read(name)

    driver.read = read  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError) as info:
        store.delete_secret_values(sid)
    assert info.value is original
    assert calls["n"] == 2
    driver.read = real_read  # type: ignore[method-assign]
    assert store.get_secret_values(sid) == {"a": "1"}


def test_a_lost_update_answer_with_other_values_present_is_unavailable(
    store: SecretsStore, driver: MemoryDriver
) -> None:
    # The replace did not commit (another writer's values are there): verification must not claim success.
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    driver.fail_next(lambda: BackendUnavailableError("injected"), operations={"replace"})
    with pytest.raises(BackendUnavailableError):
        store.update_secret_values(sid, {"a": "2"})
    assert store.get_secret_values(sid) == {"a": "1"}


def test_retry_after_a_lost_answer_is_idempotent(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    driver.fail_next(lambda: BackendUnavailableError("injected"), operations={"read"})  # verification fails
    driver.lose_next_answers(operations={"create"})
    with pytest.raises(BackendUnavailableError):
        store.store_secret_values(sid, {"a": "1"})
    driver.calls.clear()
    store.store_secret_values(sid, {"a": "1"})  # the caller's retry finds its own values
    assert driver.calls == {"create": 1, "read": 1}
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"a": "other"})


def test_identical_values_of_another_deployment_are_still_refused(driver: MemoryDriver) -> None:
    mine = SecretsStore(StoreSettings(backend="memory", deployment_id="mine"), driver=driver)
    theirs = SecretsStore(StoreSettings(backend="memory", deployment_id="theirs"), driver=driver)
    sid = uuid.uuid4()
    theirs.store_secret_values(sid, {"a": "1"})
    with pytest.raises(SecretExistsError):
        mine.store_secret_values(sid, {"a": "1"})


def test_corrupted_secret_under_our_name_is_still_exists(store: SecretsStore, driver: MemoryDriver) -> None:
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    name = store.secret_name(sid)
    driver._data[name] = StoredSecret(name, "garbage", driver._data[name].labels)
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"a": "1"})


def test_lost_answers_leave_no_stale_cached_read(driver: MemoryDriver) -> None:
    store = SecretsStore(StoreSettings(backend="memory", cache_ttl_seconds=60), driver=driver)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    assert store.get_secret_values(sid) == {"a": "1"}
    driver.lose_next_answers(operations={"replace"})
    store.update_secret_values(sid, {"a": "2"})
    assert store.get_secret_values(sid) == {"a": "2"}
    driver.lose_next_answers(operations={"delete"})
    store.delete_secret_values(sid)
    assert not store.secret_exists(sid)


def test_a_prefix_lists_only_its_exact_names(driver: MemoryDriver) -> None:
    app = SecretsStore(StoreSettings(backend="memory", deployment_id="d", name_prefix="app"), driver=driver)
    app_dash = SecretsStore(
        StoreSettings(backend="memory", deployment_id="d", name_prefix="app-"), driver=driver
    )
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    app.store_secret_values(mine, {"a": "1"})
    app_dash.store_secret_values(theirs, {"b": "2"})
    assert app_dash.secret_name(theirs) == f"app--{theirs}"
    labels = dict(driver._data[app.secret_name(mine)].labels)
    # Names UUID() would parse but this store never writes: braces, urn, upper case, no dashes.
    odd = uuid.uuid4()
    for tail in (f"{{{odd}}}", f"urn:uuid:{odd}", str(odd).upper(), odd.hex):
        driver._data[f"app-{tail}"] = StoredSecret(f"app-{tail}", "{}", labels)
    assert list(app.list_secret_ids()) == [mine]
    assert list(app_dash.list_secret_ids()) == [theirs]
    for sid in app.list_secret_ids():  # listed means deletable
        app.delete_secret_values(sid)
    assert app_dash.get_secret_values(theirs) == {"b": "2"}


@pytest.mark.parametrize("form", ["upper", "braces", "urn", "hex"])
def test_an_envelope_must_name_the_canonical_id(store: SecretsStore, driver: MemoryDriver, form: str) -> None:
    # Ownership compares the envelope's id as written with the canonical form, like names: never a parsed match.
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    name = store.secret_name(sid)
    written = {"upper": str(sid).upper(), "braces": f"{{{sid}}}", "urn": sid.urn, "hex": sid.hex}[form]
    payload = json.loads(driver._data[name].payload)
    payload["id"] = written
    driver._data[name] = StoredSecret(name, json.dumps(payload), driver._data[name].labels)
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)
    assert store.get_many([sid])[sid].status == "not_ours"
