"""OpenTelemetry on Azure (the Key Vault emulator through the real SecretClient): spans and metrics of every call,
azure-core's requests inside the store's span, throttling (429) and permission (403) errors injected through the
emulator, stale serves, the sentinel scan, the health probe over HTTPS.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.pipeline.transport import HttpTransport
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from multicloud_store.cli import main
from multicloud_store.errors import BackendPermissionError, BackendUnavailableError, SecretNotFoundError
from multicloud_store.observability import SWITCH
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing.otel import Captured
from multicloud_store_azure.driver import AzureDriver
from multicloud_store_azure.testing import KeyVaultEmulator

SENTINEL = "SENTINEL-azure-value-d07e"  # a marker to search for in what is exported
OTHER_DEPLOYMENT = "other-deployment-sentinel-azure"


def store_on(driver: AzureDriver, deployment: str = "otel-azure", **settings: Any) -> SecretsStore:
    return SecretsStore(StoreSettings(backend="azure", deployment_id=deployment, **settings), driver=driver)


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    captured = Captured()
    monkeypatch.setattr(SWITCH, "telemetry", captured.telemetry)
    yield captured
    captured.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_operation_on_azure(make_driver: Callable[..., AzureDriver], otel: Captured) -> None:
    store = store_on(make_driver())
    sid, missing = uuid.uuid4(), uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.get_secret_values(sid)
    store.update_secret_values(sid, {"k": "w"})
    assert sid in list(store.list_secret_ids())
    outcomes = store.get_many([sid, missing])
    assert outcomes[sid].status == "ok" and outcomes[missing].status == "not_found"
    store.delete_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)

    spans = otel.finished()
    assert [(s.name, attrs(s)["multicloud_store.outcome"]) for s in spans] == [
        ("multicloud_store.store", "ok"),
        ("multicloud_store.get", "ok"),
        ("multicloud_store.update", "ok"),
        ("multicloud_store.list", "ok"),
        ("multicloud_store.get_many", "ok"),
        ("multicloud_store.delete", "ok"),
        ("multicloud_store.get", "not_found"),
    ]
    assert all(s.kind is SpanKind.CLIENT and attrs(s)["multicloud_store.backend"] == "azure" for s in spans)
    many = attrs(spans[4])
    assert (many["multicloud_store.batch.size"], many["multicloud_store.round_trips"]) == (2, 2)
    for operation in ("store", "get", "update", "list", "get_many", "delete"):
        assert otel.points("multicloud_store.operation.duration", operation=operation, outcome="ok")


class _Recording(HttpTransport):  # type: ignore[type-arg]
    """An azure-core transport that notes the current span of every request (as azure-core-tracing would)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[int] = []

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.seen.append(trace.get_current_span().get_span_context().span_id)
        return self.inner.send(request, **kwargs)


def test_sdk_requests_run_inside_the_store_span(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, otel: Captured
) -> None:
    transport = _Recording(emulator.transport())
    store = store_on(make_driver(transport=transport))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.get_many([sid, uuid.uuid4()])  # in the store's worker threads
    (stored,) = otel.finished("multicloud_store.store")
    (many,) = otel.finished("multicloud_store.get_many")
    assert transport.seen
    assert set(transport.seen) == {stored.context.span_id, many.context.span_id}


def test_throttling_and_permission_errors(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, otel: Captured
) -> None:
    store = store_on(make_driver(retry_total=1))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    emulator.inject_fault(429, times=100, retry_after=0.01)
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(sid)
    emulator.clear_faults()
    emulator.inject_fault(403, times=100)
    with pytest.raises(BackendPermissionError):
        store.update_secret_values(sid, {"k": "w"})
    emulator.clear_faults()

    throttled = otel.finished("multicloud_store.get")[-1]
    assert attrs(throttled)["multicloud_store.outcome"] == "unavailable"
    assert attrs(throttled)["error.type"] == "BackendUnavailableError"
    assert throttled.status.status_code is StatusCode.ERROR
    denied = otel.finished("multicloud_store.update")[-1]
    assert attrs(denied)["multicloud_store.outcome"] == "permission"
    assert otel.points("multicloud_store.errors", operation="get", outcome="unavailable")[0].value == 1
    (permission,) = otel.points("multicloud_store.errors", operation="update", outcome="permission")
    assert permission.attributes["error.type"] == "BackendPermissionError"


def test_stale_serve_on_an_unavailable_azure(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, otel: Captured
) -> None:
    cached = store_on(
        make_driver(retry_total=1), cache_ttl_seconds=60, cache_jitter=0, cache_stale_seconds=600
    )
    assert cached.cache is not None
    clock = FakeClock()
    cached.cache._clock = clock
    sid = uuid.uuid4()
    cached.store_secret_values(sid, {"k": "v"})
    cached.get_secret_values(sid)
    cached.get_secret_values(sid)
    clock.now += 120
    emulator.inject_fault(503, times=100)
    assert cached.get_secret_values(sid) == {"k": "v"}
    emulator.clear_faults()
    gets = [attrs(s) for s in otel.finished("multicloud_store.get")]
    assert [(a["multicloud_store.cache"], a["multicloud_store.outcome"]) for a in gets] == [
        ("miss", "ok"),
        ("hit", "ok"),
        ("stale", "ok"),
    ]
    (stale,) = otel.points("multicloud_store.cache.stale_serves", backend="azure")
    assert stale.value >= 1


def test_sentinel_scan_on_azure(
    make_driver: Callable[..., AzureDriver], otel: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    driver = make_driver()
    ours, theirs = store_on(driver, "otel-ours"), store_on(driver, OTHER_DEPLOYMENT)
    logger = logging.getLogger("multicloud_store")
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        taken, sid = uuid.uuid4(), uuid.uuid4()
        theirs.store_secret_values(taken, {"k": SENTINEL})
        ours.store_secret_values(sid, {"k": SENTINEL})
        ours.get_secret_values(sid)
        ours.update_secret_values(sid, {"k": SENTINEL + "2"})
        with pytest.raises(SecretNotFoundError):
            ours.get_secret_values(taken)
        ours.get_many([sid, taken])
        list(ours.list_secret_ids())
        ours.delete_secret_values(sid)
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    exported = [
        json.dumps(dict(s.attributes or {})) + s.name + str(s.status.description) for s in otel.finished()
    ]
    exported += [json.dumps(dict(p.attributes)) for points in otel.metrics().values() for p in points]
    exported += [r.getMessage() + json.dumps(vars(r), default=str) for r in caplog.records]
    assert len(otel.finished()) >= 7
    blob = "\n".join(exported)
    assert SENTINEL not in blob
    assert OTHER_DEPLOYMENT not in blob


# -- the health probe ---------------------------------------------------------------------------------------------


def probe(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    code = main(["check", "--probe", *args], stdout=out)
    (line,) = out.getvalue().splitlines()
    return code, json.loads(line)


def test_probe_reachable_and_denied(
    emulator: KeyVaultEmulator, https_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, line = probe(monkeypatch, https_env())
    assert code == 0
    assert (line["outcome"], line["backend"], line["error"]) == ("ok", "azure", None)
    emulator.inject_fault(403, times=100)
    code, line = probe(monkeypatch, https_env())
    assert code == 7
    assert (line["outcome"], line["error"]) == ("permission", "BackendPermissionError")
    emulator.clear_faults()
    emulator.inject_fault(503, times=100)
    code, line = probe(monkeypatch, https_env(MULTICLOUD_STORE_AZURE_RETRY_TOTAL="1"))
    assert code == 6
    assert (line["outcome"], line["error"]) == ("unavailable", "BackendUnavailableError")
