"""OpenTelemetry on GCP (the Secret Manager emulator, gRPC and REST): spans and metrics of every call, the
client library's requests inside the store's span, throttling and permission errors injected through the
emulator, stale serves, the sentinel scan, the health probe.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gcp_helpers import rest_env, store_on
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from multicloud_store.cli import main
from multicloud_store.errors import BackendPermissionError, BackendUnavailableError, SecretNotFoundError
from multicloud_store.observability import SWITCH
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing.otel import Captured
from multicloud_store_gcp.driver import GcpDriver
from multicloud_store_gcp.testing import SecretManagerEmulator

SENTINEL = "SENTINEL-gcp-value-92c4"  # a marker to search for in what is exported
OTHER_DEPLOYMENT = "other-deployment-sentinel-gcp"


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


def test_every_operation_on_gcp(make_driver: Callable[..., GcpDriver], otel: Captured) -> None:
    store = store_on(make_driver(), "otel-ops")
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
    assert all(s.kind is SpanKind.CLIENT and attrs(s)["multicloud_store.backend"] == "gcp" for s in spans)
    many = attrs(spans[4])
    # No batch read on GCP: one read per id, in the store's worker threads.
    assert (many["multicloud_store.batch.size"], many["multicloud_store.round_trips"]) == (2, 2)
    for operation in ("store", "get", "update", "list", "get_many", "delete"):
        assert otel.points("multicloud_store.operation.duration", operation=operation, outcome="ok")


def test_rest_requests_run_inside_the_store_span(
    emulator: SecretManagerEmulator, otel: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the requests instrumentation needs: our span is current when the REST transport sends."""
    import requests

    seen: list[int] = []
    send = requests.Session.send

    def recording(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        if "/secrets" in str(request.url):
            seen.append(trace.get_current_span().get_span_context().span_id)
        return send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", recording)
    from gcp_helpers import grpc_settings

    driver = GcpDriver(grpc_settings(emulator, transport="rest", endpoint=emulator.rest_endpoint))
    store = store_on(driver, "otel-nesting")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.get_many([sid, uuid.uuid4()])  # in the store's worker threads
    (stored,) = otel.finished("multicloud_store.store")
    (many,) = otel.finished("multicloud_store.get_many")
    assert seen, "the REST transport was not used"
    assert set(seen) == {stored.context.span_id, many.context.span_id}
    driver.close()


def test_throttling_and_permission_errors(
    make_driver: Callable[..., GcpDriver], emulator: SecretManagerEmulator, otel: Captured
) -> None:
    store = store_on(make_driver(), "otel-faults")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    emulator.inject_fault("RESOURCE_EXHAUSTED", times=10_000, methods={"AccessSecretVersion"})
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(sid)
    emulator.clear_faults()
    emulator.inject_fault("PERMISSION_DENIED", times=10_000)
    with pytest.raises(BackendPermissionError):
        store.delete_secret_values(sid)
    emulator.clear_faults()

    throttled = otel.finished("multicloud_store.get")[-1]
    assert attrs(throttled)["multicloud_store.outcome"] == "unavailable"
    assert attrs(throttled)["error.type"] == "BackendUnavailableError"
    assert throttled.status.status_code is StatusCode.ERROR
    denied = otel.finished("multicloud_store.delete")[-1]
    assert attrs(denied)["multicloud_store.outcome"] == "permission"
    assert otel.points("multicloud_store.errors", operation="get", outcome="unavailable")[0].value == 1
    (permission,) = otel.points("multicloud_store.errors", operation="delete", outcome="permission")
    assert permission.attributes["error.type"] == "BackendPermissionError"


def test_stale_serve_on_an_unavailable_gcp(
    make_driver: Callable[..., GcpDriver], emulator: SecretManagerEmulator, otel: Captured
) -> None:
    cached = SecretsStore(
        StoreSettings(
            backend="gcp",
            deployment_id="otel-stale",
            cache_ttl_seconds=60,
            cache_jitter=0,
            cache_stale_seconds=600,
        ),
        driver=make_driver(),
    )
    assert cached.cache is not None
    clock = FakeClock()
    cached.cache._clock = clock
    sid = uuid.uuid4()
    cached.store_secret_values(sid, {"k": "v"})
    cached.get_secret_values(sid)
    cached.get_secret_values(sid)
    clock.now += 120
    emulator.inject_fault("UNAVAILABLE", times=10_000)
    assert cached.get_secret_values(sid) == {"k": "v"}
    emulator.clear_faults()
    gets = [attrs(s) for s in otel.finished("multicloud_store.get")]
    assert [(a["multicloud_store.cache"], a["multicloud_store.outcome"]) for a in gets] == [
        ("miss", "ok"),
        ("hit", "ok"),
        ("stale", "ok"),
    ]
    (stale,) = otel.points("multicloud_store.cache.stale_serves", backend="gcp")
    assert stale.value >= 1


def test_sentinel_scan_on_gcp(
    make_driver: Callable[..., GcpDriver], otel: Captured, caplog: pytest.LogCaptureFixture
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


def test_probe_reachable_and_denied(emulator: SecretManagerEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    code, line = probe(monkeypatch, rest_env(emulator))
    assert code == 0
    assert (line["outcome"], line["backend"], line["error"]) == ("ok", "gcp", None)
    emulator.inject_fault("PERMISSION_DENIED", times=10_000)
    code, line = probe(monkeypatch, rest_env(emulator))
    assert code == 7
    assert (line["outcome"], line["error"]) == ("permission", "BackendPermissionError")
    emulator.clear_faults()
    emulator.inject_fault("UNAVAILABLE", times=10_000)
    code, line = probe(monkeypatch, rest_env(emulator))
    assert code == 6
    assert (line["outcome"], line["error"]) == ("unavailable", "BackendUnavailableError")
