"""OpenTelemetry on Vault/OpenBao: a span and metrics for every store call against a real server, a denied call's
outcome, and no value or token in anything exported.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from conftest import StoreMaker
from vault_helpers import new_policy

from multicloud_store.errors import BackendPermissionError, SecretNotFoundError
from multicloud_store.observability import SWITCH
from multicloud_store.testing.otel import Captured, exported_text
from multicloud_store_vault.testing import OpenBaoServer

SENTINEL = "SENTINEL-vault-value-71c2"


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    captured = Captured()
    monkeypatch.setattr(SWITCH, "telemetry", captured.telemetry)
    yield captured
    captured.shutdown()


def test_every_operation_on_vault(make_vault_store: StoreMaker, otel: Captured, bao: OpenBaoServer) -> None:
    store = make_vault_store()
    sid, missing = uuid.uuid4(), uuid.uuid4()
    store.store_secret_values(sid, {"k": SENTINEL})
    assert store.get_secret_values(sid) == {"k": SENTINEL}
    store.update_secret_values(sid, {"k": SENTINEL + "-2"})
    assert sid in list(store.list_secret_ids())
    outcomes = store.get_many([sid, missing])
    assert outcomes[sid].status == "ok" and outcomes[missing].status == "not_found"
    store.delete_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)

    spans = otel.finished()
    assert [(s.name, (s.attributes or {})["multicloud_store.outcome"]) for s in spans] == [
        ("multicloud_store.store", "ok"),
        ("multicloud_store.get", "ok"),
        ("multicloud_store.update", "ok"),
        ("multicloud_store.list", "ok"),
        ("multicloud_store.get_many", "ok"),
        ("multicloud_store.delete", "ok"),
        ("multicloud_store.get", "not_found"),
    ]
    assert all((s.attributes or {})["multicloud_store.backend"] == "vault" for s in spans)
    # A read is one request; an update is the ownership read plus the check-and-set write.
    assert (spans[1].attributes or {})["multicloud_store.round_trips"] == 1
    assert (spans[2].attributes or {})["multicloud_store.round_trips"] == 2
    for operation in ("store", "get", "update", "list", "get_many", "delete"):
        assert otel.points("multicloud_store.operation.duration", operation=operation, outcome="ok")
    text = exported_text(otel)
    assert SENTINEL not in text and bao.root_token not in text


def test_a_denied_call_is_a_permission_outcome(
    make_vault_store: StoreMaker, otel: Captured, bao: OpenBaoServer
) -> None:
    sid = uuid.uuid4()
    make_vault_store().store_secret_values(sid, {"k": SENTINEL})
    # A token whose only policy is then replaced by one that denies everything: KV calls get 403.
    policy = new_policy(bao)
    token = bao.create_token([policy])
    store = make_vault_store(token=token)
    bao.deny(policy)
    with pytest.raises(BackendPermissionError):
        store.get_secret_values(sid)
    (span,) = otel.finished("multicloud_store.get")
    assert (span.attributes or {})["multicloud_store.outcome"] == "permission"
    (point,) = otel.points("multicloud_store.errors", operation="get")
    assert point.attributes["error.type"] == "BackendPermissionError"
    assert token not in exported_text(otel)
