"""The read path's shortcut (`SecretsStore.get_secret_values` without cache, telemetry or DEBUG log).

It must give exactly the answers of the general path: the same values, the same typed errors stamped with id and
backend, the same ownership decisions. `envelope.values_if_ours` is checked against `envelope.decode` on payloads
that probe every check, and the store's shortcut against the local backend.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from multicloud_store import SecretsStore, envelope
from multicloud_store import store as store_module
from multicloud_store.driver import StoredSecret
from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.drivers.memory import MemoryDriver
from multicloud_store.errors import (
    BackendUnavailableError,
    MultiCloudStoreError,
    SecretCorruptedError,
    SecretNotFoundError,
)
from multicloud_store.settings import StoreSettings

SID = "8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11"
OURS = {"multicloud-store": 1, "deployment": "prod", "id": SID, "values": {"a": "1", "b": ""}}


def _with(**changes: object) -> str:
    document = {**OURS, **changes}
    return json.dumps({k: v for k, v in document.items() if v is not _DROP})


_DROP = object()

PAYLOADS = [
    json.dumps(OURS),
    json.dumps(OURS, separators=(",", ":")),
    json.dumps(OURS, indent=2),
    " " + json.dumps(OURS) + "\n",  # whitespace around the document: json.loads accepts it
    "\ufeff" + json.dumps(OURS),  # a BOM: json.loads refuses it
    json.dumps(OURS) + " x",
    json.dumps(OURS) + json.dumps(OURS),
    _with(values={}),
    _with(values={"ключ": "значение ✓"}),
    _with(**{"multicloud-store": True}),  # True == 1: decode accepts it, so must the shortcut
    _with(**{"multicloud-store": 1.0}),
    _with(**{"multicloud-store": 2}),
    _with(**{"multicloud-store": "1"}),
    _with(**{"multicloud-store": _DROP}),
    _with(deployment="other"),
    _with(deployment=5),
    _with(deployment=_DROP),
    _with(id=SID.upper()),
    _with(id="{" + SID + "}"),
    _with(id=_DROP),
    _with(id=None),
    _with(values=[]),
    _with(values=None),
    _with(values=_DROP),
    _with(values={"a": 1}),
    _with(values={"a": None}),
    _with(values={"a": ["x"]}),
    _with(values={"a": {"b": "c"}}),
    _with(values={"a": "1", "b": True}),
    _with(extra="ignored"),
    json.dumps([OURS]),
    json.dumps("text"),
    "null",
    "",
    "not json",
    "[" * 100_000,  # RecursionError inside the parser
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_values_if_ours_accepts_exactly_what_decode_accepts_as_ours(payload: str) -> None:
    try:
        opened = envelope.decode(payload)
    except envelope.EnvelopeError:
        expected = None
    else:
        expected = opened.values if (opened.deployment, opened.secret_id) == ("prod", SID) else None
    assert envelope.values_if_ours(payload, "prod", SID) == expected


def test_values_if_ours_returns_the_values() -> None:
    assert envelope.values_if_ours(json.dumps(OURS), "prod", SID) == {"a": "1", "b": ""}
    assert envelope.values_if_ours(json.dumps(OURS), "prod", SID.replace("8", "9")) is None


@pytest.fixture
def local(tmp_path: Path) -> Iterator[SecretsStore]:
    driver = LocalDriver(LocalSettings(path=tmp_path / "s.db"))
    store = SecretsStore(StoreSettings(backend="local", deployment_id="prod"), driver=driver)
    yield store
    store.close()


def _put(store: SecretsStore, sid: uuid.UUID, payload: str, *, ours: bool) -> None:
    """Write a raw payload under the id's name, labelled as this deployment's or not."""
    labels = store._labels(sid) if ours else {"managed_by": "someone-else"}
    store.driver.create(store.secret_name(sid), payload, labels)


def test_local_read_takes_ids_as_uuid_or_text(local: SecretsStore) -> None:
    sid = uuid.uuid4()
    local.store_secret_values(sid, {"k": "v"})
    assert local.get_secret_values(sid) == {"k": "v"}
    assert local.get_secret_values(str(sid)) == {"k": "v"}  # type: ignore[arg-type]
    assert local.get_secret_values(str(sid).upper()) == {"k": "v"}  # type: ignore[arg-type]


def test_local_read_of_an_envelope_with_whitespace_around_it(local: SecretsStore) -> None:
    sid = uuid.uuid4()
    document = {"multicloud-store": 1, "deployment": "prod", "id": str(sid), "values": {"k": "v"}}
    _put(local, sid, "  " + json.dumps(document, indent=1) + "\n", ours=True)
    assert local.get_secret_values(sid) == {"k": "v"}


def test_local_read_refuses_another_deployments_envelope(local: SecretsStore) -> None:
    sid = uuid.uuid4()
    document = {"multicloud-store": 1, "deployment": "staging", "id": str(sid), "values": {"k": "v"}}
    _put(local, sid, json.dumps(document), ours=False)
    with pytest.raises(SecretNotFoundError) as info:
        local.get_secret_values(sid)
    assert info.value.secret_id == sid
    assert info.value.backend == "local"
    assert "v" not in str(info.value)


def test_local_read_of_unreadable_values_labelled_as_ours_is_corruption(local: SecretsStore) -> None:
    sid = uuid.uuid4()
    document = {"multicloud-store": 1, "deployment": "prod", "id": str(sid), "values": {"k": 7}}
    _put(local, sid, json.dumps(document), ours=True)
    with pytest.raises(SecretCorruptedError) as info:
        local.get_secret_values(sid)
    assert (info.value.secret_id, info.value.backend) == (sid, "local")


def test_local_read_of_a_missing_secret_is_stamped(local: SecretsStore) -> None:
    sid = uuid.uuid4()
    with pytest.raises(SecretNotFoundError) as info:
        local.get_secret_values(sid)
    assert (info.value.secret_id, info.value.backend) == (sid, "local")


def test_closed_store_error_names_the_id_and_backend(local: SecretsStore) -> None:
    sid = uuid.uuid4()
    local.store_secret_values(sid, {"k": "v"})
    local.close()
    with pytest.raises(MultiCloudStoreError, match="closed") as info:
        local.get_secret_values(sid)
    assert (info.value.secret_id, info.value.backend) == (sid, "local")


def test_a_read_logs_at_debug_when_debug_is_on(local: SecretsStore, caplog: pytest.LogCaptureFixture) -> None:
    sid = uuid.uuid4()
    local.store_secret_values(sid, {"k": "secret-value"})
    local.get_secret_values(sid)  # DEBUG off: nothing
    with caplog.at_level(logging.DEBUG, logger="multicloud_store"):
        local.get_secret_values(sid)
    lines = [r for r in caplog.records if r.name == "multicloud_store" and r.getMessage().startswith("get ")]
    assert len(lines) == 1
    assert str(sid) in lines[0].getMessage()
    assert "secret-value" not in caplog.text


def test_the_name_memo_is_bounded_and_names_stay_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_NAMES_MAX", 8)
    driver = MemoryDriver()
    store = SecretsStore(StoreSettings(backend="memory", deployment_id="prod"), driver=driver)
    sids = [uuid.uuid4() for _ in range(30)]
    for sid in sids:
        store.store_secret_values(sid, {"id": str(sid)})
    for _ in range(2):
        for sid in sids:
            assert store.get_secret_values(sid) == {"id": str(sid)}
            assert len(store._names) <= 8
    # A name in the memo is the name the store writes under.
    for key, (name, id_text) in store._names.items():
        assert name == store.secret_name(uuid.UUID(int=key))
        assert id_text == str(uuid.UUID(int=key))


def test_a_driver_error_on_the_shortcut_keeps_what_the_driver_named() -> None:
    driver = MemoryDriver()
    store = SecretsStore(StoreSettings(backend="memory", deployment_id="prod"), driver=driver)
    other = uuid.uuid4()
    driver.fail_next(
        lambda: BackendUnavailableError("injected", secret_id=other, backend="elsewhere"), operations={"read"}
    )
    with pytest.raises(BackendUnavailableError) as info:
        store.get_secret_values(uuid.uuid4())
    assert (info.value.secret_id, info.value.backend) == (other, "elsewhere")


def test_a_foreign_payload_in_the_memory_driver_is_not_ours() -> None:
    driver = MemoryDriver()
    store = SecretsStore(StoreSettings(backend="memory", deployment_id="prod"), driver=driver)
    sid = uuid.uuid4()
    name = store.secret_name(sid)
    driver._data[name] = StoredSecret(name, json.dumps({"values": {"k": "v"}}), {})
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)
