"""OpenTelemetry on AWS (moto): spans and metrics of every call, botocore's requests inside the store's span,
throttling and permission errors injected through botocore, stale serves, the sentinel scan, the health probe.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import BotocoreFaults, StoreMaker
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from multicloud_store.cli import main
from multicloud_store.errors import BackendPermissionError, BackendUnavailableError, SecretNotFoundError
from multicloud_store.observability import SWITCH
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing.otel import Captured
from multicloud_store_aws import AwsDriver

SENTINEL = "SENTINEL-aws-value-5b1e"  # a marker to search for in what is exported
OTHER_DEPLOYMENT = "other-deployment-sentinel-aws"


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


def test_every_operation_on_aws(moto_in_process: StoreMaker, otel: Captured) -> None:
    store = moto_in_process()
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
    assert all(s.kind is SpanKind.CLIENT and attrs(s)["multicloud_store.backend"] == "aws" for s in spans)
    many = attrs(spans[4])
    # One BatchGetSecretValue for both ids.
    assert (many["multicloud_store.batch.size"], many["multicloud_store.round_trips"]) == (2, 1)
    assert attrs(spans[1])["multicloud_store.round_trips"] == 1
    for operation in ("store", "get", "update", "list", "get_many", "delete"):
        assert otel.points("multicloud_store.operation.duration", operation=operation, outcome="ok")
    (not_found,) = otel.points("multicloud_store.errors", operation="get")
    assert not_found.attributes["error.type"] == "SecretNotFoundError"


def test_botocore_requests_run_inside_the_store_span(moto_in_process: StoreMaker, otel: Captured) -> None:
    """What botocore's OpenTelemetry instrumentation needs: our span is current when botocore sends."""
    store = moto_in_process()
    seen: list[tuple[str, int]] = []

    def record(request: Any, event_name: str, **_: Any) -> None:
        seen.append((event_name.rsplit(".", 1)[-1], trace.get_current_span().get_span_context().span_id))

    store.driver.client.meta.events.register("before-send.secrets-manager", record)  # type: ignore[attr-defined]
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.get_many([sid, uuid.uuid4()])
    (stored,) = otel.finished("multicloud_store.store")
    (many,) = otel.finished("multicloud_store.get_many")
    assert seen == [
        ("CreateSecret", stored.context.span_id),
        ("BatchGetSecretValue", many.context.span_id),
    ]


def test_throttling_and_permission_errors(
    moto_in_process: StoreMaker, otel: Captured, faults: BotocoreFaults
) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    faults.fail(400, "ThrottlingException", "Rate exceeded", operations={"GetSecretValue"})
    faults.reset_counts()
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(sid)
    faults.permission_denied()
    with pytest.raises(BackendPermissionError):
        store.update_secret_values(sid, {"k": "w"})
    faults.clear()

    throttled = otel.finished("multicloud_store.get")[-1]
    assert attrs(throttled)["multicloud_store.outcome"] == "unavailable"
    assert attrs(throttled)["error.type"] == "BackendUnavailableError"
    # botocore's retries happen inside one driver call: one round trip, several attempts on the wire.
    assert attrs(throttled)["multicloud_store.round_trips"] == 1
    assert faults.attempts["GetSecretValue"] >= 2
    assert throttled.status.status_code is StatusCode.ERROR
    denied = otel.finished("multicloud_store.update")[-1]
    assert attrs(denied)["multicloud_store.outcome"] == "permission"
    assert otel.points("multicloud_store.errors", operation="get", outcome="unavailable")[0].value == 1
    (permission,) = otel.points("multicloud_store.errors", operation="update", outcome="permission")
    assert permission.attributes["error.type"] == "BackendPermissionError"
    assert otel.points("multicloud_store.operation.duration", operation="update", outcome="permission")


def test_stale_serve_on_a_throttled_aws(
    moto_in_process: StoreMaker, otel: Captured, faults: BotocoreFaults
) -> None:
    plain = moto_in_process()
    cached = SecretsStore(
        StoreSettings(
            backend="aws",
            deployment_id="tests",
            cache_ttl_seconds=60,
            cache_jitter=0,
            cache_stale_seconds=600,
        ),
        driver=plain.driver,
    )
    assert cached.cache is not None
    clock = FakeClock()
    cached.cache._clock = clock
    sid = uuid.uuid4()
    cached.store_secret_values(sid, {"k": "v"})
    cached.get_secret_values(sid)
    cached.get_secret_values(sid)
    clock.now += 120
    faults.fail(400, "ThrottlingException", "Rate exceeded")
    assert cached.get_secret_values(sid) == {"k": "v"}
    faults.clear()
    gets = [attrs(s) for s in otel.finished("multicloud_store.get")]
    assert [(a["multicloud_store.cache"], a["multicloud_store.outcome"]) for a in gets] == [
        ("miss", "ok"),
        ("hit", "ok"),
        ("stale", "ok"),
    ]
    (stale,) = otel.points("multicloud_store.cache.stale_serves", backend="aws")
    assert stale.value >= 1


def test_sentinel_scan_on_aws(
    moto_in_process: StoreMaker, otel: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    ours = moto_in_process()
    theirs = moto_in_process(deployment_id=OTHER_DEPLOYMENT)
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
    assert "testing-secret-key" not in blob  # the secret access key


# -- the health probe ---------------------------------------------------------------------------------------------


def probe(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    code = main(["check", "--probe", *args], stdout=out)
    (line,) = out.getvalue().splitlines()
    return code, json.loads(line)


def test_probe_reachable(
    monkeypatch: pytest.MonkeyPatch, server_environ: Callable[..., dict[str, str]]
) -> None:
    code, line = probe(monkeypatch, server_environ())
    assert code == 0
    assert (line["outcome"], line["backend"], line["error"]) == ("ok", "aws", None)
    assert line["latency_ms"] >= 0


def test_probe_denied(monkeypatch: pytest.MonkeyPatch, server_environ: Callable[..., dict[str, str]]) -> None:
    faults = BotocoreFaults()
    faults.permission_denied()
    built = AwsDriver.__init__

    def denied_driver(self: AwsDriver, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        faults.attach(self.client)

    monkeypatch.setattr(AwsDriver, "__init__", denied_driver)
    code, line = probe(monkeypatch, server_environ())
    assert code == 7
    assert (line["outcome"], line["error"]) == ("permission", "BackendPermissionError")
    assert "not authorized" in line["message"]


def test_probe_unreachable(
    monkeypatch: pytest.MonkeyPatch, server_environ: Callable[..., dict[str, str]], free_port: int
) -> None:
    env = server_environ(
        MULTICLOUD_STORE_AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port}",
        MULTICLOUD_STORE_AWS_MAX_ATTEMPTS="1",
        MULTICLOUD_STORE_AWS_CONNECT_TIMEOUT="1",
    )
    code, line = probe(monkeypatch, env, "--timeout", "120")
    assert code == 6
    assert (line["outcome"], line["error"]) == ("unavailable", "BackendUnavailableError")


def test_probe_times_out_on_an_endpoint_that_never_answers(
    monkeypatch: pytest.MonkeyPatch, server_environ: Callable[..., dict[str, str]]
) -> None:
    # A listening socket nobody accepts from: the connection is made, the request is never answered.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        env = server_environ(
            MULTICLOUD_STORE_AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            MULTICLOUD_STORE_AWS_MAX_ATTEMPTS="1",
            MULTICLOUD_STORE_AWS_READ_TIMEOUT="120",
        )
        code, line = probe(monkeypatch, env, "--timeout", "1")
    assert code == 6
    assert (line["outcome"], line["error"]) == ("timeout", "timeout")
    assert line["latency_ms"] is None
