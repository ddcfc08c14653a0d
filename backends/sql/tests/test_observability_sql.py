"""OpenTelemetry on the sql backend: a span and metrics for every store call against a real PostgreSQL server, an
unreachable server's outcome, and no value, key or password in anything exported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from multicloud_store.errors import BackendUnavailableError, SecretNotFoundError
from multicloud_store.observability import SWITCH
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing.otel import Captured, exported_text
from multicloud_store_sql import SqlDriver
from multicloud_store_sql.testing import free_port

SENTINEL = "SENTINEL-sql-value-93ad"
PASSWORD = "otel-pa55-SHOULD-NOT-SHOW"


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    captured = Captured()
    monkeypatch.setattr(SWITCH, "telemetry", captured.telemetry)
    yield captured
    captured.shutdown()


def _store(driver: SqlDriver) -> SecretsStore:
    return SecretsStore(StoreSettings(backend="sql", deployment_id="otel"), driver=driver)


def test_every_operation_on_postgresql(
    postgres_url: str, make_driver: Callable[..., SqlDriver], otel: Captured, key_text: str
) -> None:
    store = _store(make_driver(postgres_url))
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
    assert all((s.attributes or {})["multicloud_store.backend"] == "sql" for s in spans)
    # get_many reads both ids with one SELECT ... IN.
    many = spans[4].attributes or {}
    assert (many["multicloud_store.batch.size"], many["multicloud_store.round_trips"]) == (2, 1)
    for operation in ("store", "get", "update", "list", "get_many", "delete"):
        assert otel.points("multicloud_store.operation.duration", operation=operation, outcome="ok")
    text = exported_text(otel)
    assert SENTINEL not in text
    assert all(line.split(":", 1)[-1] not in text for line in key_text.split() if line)


def test_an_unreachable_server_is_an_unavailable_outcome(
    make_driver: Callable[..., SqlDriver], otel: Captured
) -> None:
    url = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{free_port()}/db"
    store = _store(make_driver(url, connect_timeout=3))
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(uuid.uuid4())
    (span,) = otel.finished("multicloud_store.get")
    assert (span.attributes or {})["multicloud_store.outcome"] == "unavailable"
    (point,) = otel.points("multicloud_store.errors", operation="get")
    assert point.attributes["error.type"] == "BackendUnavailableError"
    assert PASSWORD not in exported_text(otel)
