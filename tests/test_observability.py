"""OpenTelemetry spans, metrics and log fields of every store call; cache control; the health probe.

The SDK's in-memory exporter and reader capture what a real provider would receive. Telemetry is installed on
`SWITCH` per test (the API's global providers can be set once per process); the global detection, the API-only
and the no-API runs are tested in subprocesses.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from multicloud_store import SecretsStore, StoreSettings
from multicloud_store.cli import main
from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.drivers.memory import MemoryDriver
from multicloud_store.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    InvalidSecretError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.migrate import migrate
from multicloud_store.observability import SWITCH, Telemetry
from multicloud_store.testing.otel import Captured as _Captured

SENTINEL = "SENTINEL-value-7f3a9c"  # a marker to search for, not a credential
OTHER_DEPLOYMENT = "other-deployment-sentinel-41d2"
ROOT = Path(__file__).resolve().parent.parent


class Captured(_Captured):
    """What a real SDK would have exported, with the helpers these tests use."""

    def one(self, name: str) -> ReadableSpan:
        spans = self.finished(name)
        assert len(spans) == 1, [s.name for s in self.spans.get_finished_spans()]
        return spans[0]

    def point(self, name: str, **attributes: Any) -> Any:
        """The data point of ``name`` whose attributes include ``attributes`` (names without the prefix)."""
        wanted = {(k if k == "error.type" else f"multicloud_store.{k}"): v for k, v in attributes.items()}
        matches = [
            p
            for p in self.metrics().get(name, [])
            if all(p.attributes.get(k) == v for k, v in wanted.items())
        ]
        assert len(matches) == 1, (name, wanted, self.metrics().get(name))
        return matches[0]

    def cache_value(self, name: str, backend: str) -> int:
        points = [
            p for p in self.metrics().get(name, []) if p.attributes.get("multicloud_store.backend") == backend
        ]
        return int(points[0].value) if points else 0

    def reset(self) -> None:
        self.spans.clear()


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    captured = Captured()
    monkeypatch.setattr(SWITCH, "telemetry", captured.telemetry)
    yield captured
    captured.shutdown()


@pytest.fixture
def library_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the library's DEBUG lines on its own logger: the CLI turns its propagation off."""
    logger = logging.getLogger("multicloud_store")
    saved = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # captured once, by the handler above
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(saved[0])
    logger.propagate = saved[1]


def memory_store(**settings: Any) -> SecretsStore:
    return SecretsStore(StoreSettings(backend="memory", **settings), driver=MemoryDriver())


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretsStore]:
    if request.param == "memory":
        built = memory_store()
    else:
        built = SecretsStore(
            StoreSettings(backend="local"), driver=LocalDriver(LocalSettings(path=tmp_path / "s.db"))
        )
    yield built
    built.close()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- spans and metrics of every operation -------------------------------------------------------------------


def test_every_operation_has_its_span_and_metrics(otel: Captured, store: SecretsStore) -> None:
    backend = store.backend
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": SENTINEL})
    assert store.get_secret_values(sid) == {"k": SENTINEL}
    store.update_secret_values(sid, {"k": SENTINEL + "2"})
    assert list(store.list_secret_ids()) == [sid]
    missing = uuid.uuid4()
    assert store.get_many([sid, missing])[missing].status == "not_found"
    store.delete_secret_values(sid)

    names = [s.name for s in otel.finished()]
    assert names == [
        "multicloud_store.store",
        "multicloud_store.get",
        "multicloud_store.update",
        "multicloud_store.list",
        "multicloud_store.get_many",
        "multicloud_store.delete",
    ]
    for span in otel.finished():
        a = attrs(span)
        assert span.kind is SpanKind.CLIENT
        assert a["multicloud_store.backend"] == backend
        assert a["multicloud_store.outcome"] == "ok"
        assert a["multicloud_store.operation"] == span.name.split(".", 1)[1]
        assert span.status.status_code is StatusCode.UNSET
    assert attrs(otel.one("multicloud_store.get"))["multicloud_store.secret.id"] == str(sid)
    assert attrs(otel.one("multicloud_store.get"))["multicloud_store.round_trips"] == 1
    # memory: the ownership read, then replace; local: one owner-conditioned UPDATE (OwnedWrites)
    update_trips = 1 if backend == "local" else 2
    assert attrs(otel.one("multicloud_store.update"))["multicloud_store.round_trips"] == update_trips
    many = attrs(otel.one("multicloud_store.get_many"))
    assert many["multicloud_store.batch.size"] == 2
    assert many["multicloud_store.batch.ok"] == 1
    assert many["multicloud_store.batch.not_found"] == 1
    assert attrs(otel.one("multicloud_store.list"))["multicloud_store.list.count"] == 1

    for operation in ("store", "get", "update", "list", "get_many", "delete"):
        duration = otel.point("multicloud_store.operation.duration", backend=backend, operation=operation)
        assert duration.count == 1
        assert duration.attributes["multicloud_store.outcome"] == "ok"
        assert duration.sum > 0
    assert (
        otel.point("multicloud_store.operation.round_trips", operation="update", backend=backend).sum
        == update_trips
    )
    assert "multicloud_store.errors" not in otel.metrics()


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (lambda: BackendUnavailableError("injected: throttled"), "unavailable"),
        (lambda: BackendPermissionError("injected: denied"), "permission"),
        (lambda: SecretCorruptedError("injected: bad checksum"), "corrupted"),
        (lambda: SecretStateError("injected: disabled"), "state"),
        (lambda: RuntimeError("injected: a bug"), "error"),
    ],
)
def test_backend_errors_set_outcome_status_and_error_counter(
    otel: Captured, error: Any, outcome: str
) -> None:
    driver = MemoryDriver()
    store = SecretsStore(StoreSettings(backend="memory"), driver=driver)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    driver.fail_next(error, operations=["read"])
    with pytest.raises(Exception) as raised:
        store.get_secret_values(sid)
    span = otel.finished("multicloud_store.get")[-1]
    assert attrs(span)["multicloud_store.outcome"] == outcome
    assert attrs(span)["error.type"] == type(raised.value).__name__
    assert span.status.status_code is StatusCode.ERROR
    assert not span.events  # no exception event: its text and traceback are not exported
    errors = otel.point("multicloud_store.errors", operation="get", outcome=outcome)
    assert errors.value == 1
    assert errors.attributes["error.type"] == type(raised.value).__name__
    assert otel.point("multicloud_store.operation.duration", operation="get", outcome=outcome).count == 1


def test_not_found_exists_and_invalid(otel: Captured) -> None:
    store = memory_store()
    sid = uuid.uuid4()
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        store.update_secret_values(sid, {"k": "v"})
    with pytest.raises(SecretNotFoundError):
        store.delete_secret_values(sid)
    store.store_secret_values(sid, {"k": "v"})
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"k": "other"})
    pasted = SENTINEL  # a value pasted where an id goes: never recorded
    with pytest.raises(InvalidSecretError):
        store.get_secret_values(pasted)  # type: ignore[arg-type]

    outcomes = [(s.name, attrs(s)["multicloud_store.outcome"]) for s in otel.finished()]
    assert outcomes == [
        ("multicloud_store.get", "not_found"),
        ("multicloud_store.update", "not_found"),
        ("multicloud_store.delete", "not_found"),
        ("multicloud_store.store", "ok"),
        ("multicloud_store.store", "exists"),
        ("multicloud_store.get", "invalid"),
    ]
    # An answer to the question asked is not a span error; a refused input is.
    assert [s.status.status_code for s in otel.finished()] == [StatusCode.UNSET] * 5 + [StatusCode.ERROR]
    invalid = otel.finished()[-1]
    assert "multicloud_store.secret.id" not in attrs(invalid)
    assert attrs(invalid)["multicloud_store.round_trips"] == 0
    assert otel.point("multicloud_store.errors", operation="store", outcome="exists").value == 1


def test_get_many_outcome_is_the_first_failed_ids(otel: Captured, tmp_path: Path) -> None:
    driver = MemoryDriver()
    store = SecretsStore(StoreSettings(backend="memory"), driver=driver)
    ids = [uuid.uuid4() for _ in range(3)]
    for sid in ids:
        store.store_secret_values(sid, {"k": "v"})
    driver.fail_next(lambda: BackendUnavailableError("injected: throttled"), operations=["read"])
    outcomes = store.get_many(ids)
    assert sorted(o.status for o in outcomes.values()) == ["error", "ok", "ok"]
    span = otel.one("multicloud_store.get_many")
    assert attrs(span)["multicloud_store.outcome"] == "unavailable"
    assert attrs(span)["multicloud_store.batch.error"] == 1
    assert attrs(span)["multicloud_store.batch.size"] == 3


# -- cache ---------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_hits_misses_stale_serves_and_entries(otel: Captured) -> None:
    driver = MemoryDriver()
    store = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=60, cache_jitter=0, cache_stale_seconds=600),
        driver=driver,
    )
    assert store.cache is not None
    clock = FakeClock()
    store.cache._clock = clock
    before = {
        n: otel.cache_value(f"multicloud_store.cache.{n}", "memory")
        for n in ("hits", "misses", "stale_serves")
    }
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.get_secret_values(sid)  # miss
    store.get_secret_values(sid)  # hit
    store.get_many([sid])  # hit
    clock.now += 120  # past the TTL, inside the stale window
    driver.fail_next(lambda: BackendUnavailableError("injected: throttled"), operations=["read"])
    assert store.get_secret_values(sid) == {"k": "v"}  # stale serve

    gets = [attrs(s) for s in otel.finished("multicloud_store.get")]
    assert [a["multicloud_store.cache"] for a in gets] == ["miss", "hit", "stale"]
    assert [a["multicloud_store.round_trips"] for a in gets] == [1, 0, 1]
    assert [a["multicloud_store.outcome"] for a in gets] == ["ok", "ok", "ok"]
    assert attrs(otel.one("multicloud_store.get_many"))["multicloud_store.batch.cache_hits"] == 1
    assert attrs(otel.one("multicloud_store.get_many"))["multicloud_store.round_trips"] == 0
    assert otel.cache_value("multicloud_store.cache.hits", "memory") - before["hits"] == 2
    assert otel.cache_value("multicloud_store.cache.misses", "memory") - before["misses"] == 2
    assert otel.cache_value("multicloud_store.cache.stale_serves", "memory") - before["stale_serves"] == 1
    assert otel.cache_value("multicloud_store.cache.entries", "memory") >= 1
    store.close()


def test_cache_evictions_are_counted(otel: Captured) -> None:
    store = memory_store(cache_ttl_seconds=60, cache_max_entries=10)
    before = otel.cache_value("multicloud_store.cache.evictions", "memory")
    ids = [uuid.uuid4() for _ in range(15)]
    for sid in ids:
        store.store_secret_values(sid, {"k": "v"})
        store.get_secret_values(sid)
    assert store.cache is not None and len(store.cache) <= 10
    assert otel.cache_value("multicloud_store.cache.evictions", "memory") - before >= 5
    store.close()


# -- nesting: the SDK's own spans are children of ours --------------------------------------------------------


class InstrumentedDriver(MemoryDriver):
    """Stands for botocore/grpc/requests instrumentation: one span per backend request, parented by the context."""

    tracer: Any = None

    def read(self, name: str) -> Any:
        with self.tracer.start_as_current_span("sdk.request"):
            return super().read(name)


def test_sdk_spans_nest_under_the_store_span_also_in_get_many_threads(otel: Captured) -> None:
    driver = InstrumentedDriver()
    driver.tracer = otel.tracer_provider.get_tracer("sdk")
    store = SecretsStore(StoreSettings(backend="memory", max_workers=4), driver=driver)
    ids = [uuid.uuid4() for _ in range(5)]
    for sid in ids:
        store.store_secret_values(sid, {"k": "v"})
    otel.reset()
    store.get_secret_values(ids[0])
    get = otel.one("multicloud_store.get")
    (request,) = otel.finished("sdk.request")
    assert request.parent is not None and request.parent.span_id == get.context.span_id
    otel.reset()
    assert driver.limits.batch_read_size == 1  # one read per id, in the store's worker threads
    store.get_many(ids)
    many = otel.one("multicloud_store.get_many")
    requests = otel.finished("sdk.request")
    assert requests, "the driver was not called"
    assert len(requests) == 5
    assert all(r.parent is not None and r.parent.span_id == many.context.span_id for r in requests)
    assert attrs(many)["multicloud_store.round_trips"] == 5
    store.close()


def test_a_store_call_inside_the_applications_span_is_its_child(otel: Captured) -> None:
    store = memory_store()
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("app.request") as parent:
        with pytest.raises(SecretNotFoundError):
            store.get_secret_values(uuid.uuid4())
    get = otel.one("multicloud_store.get")
    assert get.parent is not None and get.parent.span_id == parent.get_span_context().span_id
    # The store's span is not left current afterwards.
    assert not trace.get_current_span().get_span_context().is_valid


def test_listing_span_is_not_current_while_the_consumer_runs(otel: Captured) -> None:
    store = memory_store()
    for _ in range(3):
        store.store_secret_values(uuid.uuid4(), {"k": "v"})
    otel.reset()
    tracer = otel.tracer_provider.get_tracer("app")
    for _sid in store.list_secret_ids():
        with tracer.start_as_current_span("consumer"):
            pass
    listing = otel.one("multicloud_store.list")
    assert all(c.parent is None for c in otel.finished("consumer"))
    assert attrs(listing)["multicloud_store.list.count"] == 3
    # A consumer that stops early ends the span too, with outcome ok.
    otel.reset()
    iterator = store.list_secret_ids()
    next(iterator)
    iterator.close()
    assert attrs(otel.one("multicloud_store.list"))["multicloud_store.outcome"] == "ok"


def test_migrate_span_parents_the_copies(otel: Captured) -> None:
    source, target = memory_store(), memory_store()
    ids = [uuid.uuid4() for _ in range(3)]
    for sid in ids:
        source.store_secret_values(sid, {"k": SENTINEL})
    otel.reset()
    report = migrate(source, target, workers=2)
    assert report.created == 3
    span = otel.one("multicloud_store.migrate")
    a = attrs(span)
    assert a["multicloud_store.outcome"] == "ok"
    assert a["multicloud_store.migrate.created"] == 3
    assert a["multicloud_store.migrate.source_backend"] == "memory"
    stores = otel.finished("multicloud_store.store")
    assert len(stores) == 3
    assert all(s.parent is not None and s.parent.span_id == span.context.span_id for s in stores)
    assert otel.point("multicloud_store.operation.duration", operation="migrate").count == 1


# -- nothing secret in what is exported ----------------------------------------------------------------------


def test_sentinel_scan_of_every_span_metric_and_log_field(
    otel: Captured, library_log: pytest.LogCaptureFixture
) -> None:
    caplog = library_log
    shared: dict[str, Any] = {}
    ours = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=60, deployment_id="ours"),
        driver=MemoryDriver(data=shared),
    )
    theirs = SecretsStore(
        StoreSettings(backend="memory", deployment_id=OTHER_DEPLOYMENT), driver=MemoryDriver(data=shared)
    )
    taken = uuid.uuid4()
    theirs.store_secret_values(taken, {SENTINEL + "-key": SENTINEL})
    otel.reset()
    sid = uuid.uuid4()
    ours.store_secret_values(sid, {"k": SENTINEL})
    ours.get_secret_values(sid)
    ours.get_secret_values(sid)
    ours.refresh(sid)
    ours.update_secret_values(sid, {"k": SENTINEL + "x"})
    with pytest.raises(SecretNotFoundError):
        ours.get_secret_values(taken)  # another deployment's secret under the same name
    with pytest.raises(SecretExistsError):
        ours.store_secret_values(taken, {"k": SENTINEL})
    ours.get_many([sid, taken])
    list(ours.list_secret_ids())
    with pytest.raises(InvalidSecretError):
        ours.get_secret_values(SENTINEL)  # type: ignore[arg-type]
    migrate(ours, memory_store())
    ours.delete_secret_values(sid)

    exported: list[str] = []
    for span in otel.finished():
        exported += [span.name, str(span.status.description), json.dumps(dict(span.attributes or {}))]
        exported += [json.dumps(dict(e.attributes or {})) + e.name for e in span.events]
        exported.append(json.dumps(dict(span.resource.attributes)))
    for name, points in otel.metrics().items():
        exported += [name] + [json.dumps(dict(p.attributes)) for p in points]
    for record in caplog.records:
        exported.append(record.getMessage())
        exported += [f"{k}={v}" for k, v in vars(record).items() if k.startswith("mcs_")]
    assert len(otel.finished()) >= 12
    blob = "\n".join(exported)
    assert SENTINEL not in blob
    assert OTHER_DEPLOYMENT not in blob


# -- log fields -----------------------------------------------------------------------------------------------


def test_log_lines_carry_the_span_fields(library_log: pytest.LogCaptureFixture) -> None:
    caplog = library_log
    driver = MemoryDriver()
    store = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=60, cache_jitter=0, cache_stale_seconds=600),
        driver=driver,
    )
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": SENTINEL})
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(uuid.uuid4())
    records = [r for r in caplog.records if hasattr(r, "mcs_operation")]
    fields = [(r.mcs_backend, r.mcs_operation, r.mcs_outcome) for r in records]  # type: ignore[attr-defined]
    assert fields == [("memory", "store", "ok"), ("memory", "get", "not_found")]
    assert all(isinstance(r.mcs_duration_ms, float) for r in records)  # type: ignore[attr-defined]
    assert records[0].mcs_secret_id == str(sid)  # type: ignore[attr-defined]
    assert records[1].mcs_error_type == "SecretNotFoundError"  # type: ignore[attr-defined]
    # The stale serve's warning carries them too.
    assert store.cache is not None
    clock = FakeClock()
    store.cache._clock = clock
    store.get_secret_values(sid)
    clock.now += 120
    driver.fail_next(lambda: BackendUnavailableError("injected"), operations=["read"])
    caplog.clear()
    store.get_secret_values(sid)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (warning.mcs_operation, warning.mcs_cache, warning.mcs_outcome) == ("get", "stale", "ok")  # type: ignore[attr-defined]
    assert all(SENTINEL not in json.dumps(vars(r), default=str) for r in caplog.records)


# -- cache control --------------------------------------------------------------------------------------------


def test_refresh_rereads_and_refills_the_cache(otel: Captured) -> None:
    shared: dict[str, Any] = {}
    reader = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=3600), driver=MemoryDriver(data=shared)
    )
    writer = SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver(data=shared))
    sid = uuid.uuid4()
    writer.store_secret_values(sid, {"k": "v1"})
    assert reader.get_secret_values(sid) == {"k": "v1"}
    writer.update_secret_values(sid, {"k": "v2"})  # rotated elsewhere: the reader's cache does not know
    assert reader.get_secret_values(sid) == {"k": "v1"}
    assert reader.refresh(sid) == {"k": "v2"}
    reads = reader.driver.calls["read"]  # type: ignore[attr-defined]
    assert reader.get_secret_values(sid) == {"k": "v2"}  # refilled: a hit
    assert reader.driver.calls["read"] == reads  # type: ignore[attr-defined]
    refresh = [attrs(s) for s in otel.finished("multicloud_store.get")][-2]
    assert refresh["multicloud_store.cache"] == "refresh"
    assert refresh["multicloud_store.round_trips"] == 1


def test_refresh_never_serves_stale_and_keeps_the_entry_for_other_readers() -> None:
    driver = MemoryDriver()
    store = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=60, cache_jitter=0, cache_stale_seconds=600),
        driver=driver,
    )
    assert store.cache is not None
    clock = FakeClock()
    store.cache._clock = clock
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.get_secret_values(sid)
    clock.now += 120
    driver.fail_next(lambda: BackendUnavailableError("injected"), times=2, operations=["read"])
    with pytest.raises(BackendUnavailableError):
        store.refresh(sid)
    assert store.get_secret_values(sid) == {"k": "v"}  # the ordinary read still has its stale copy


def test_refresh_of_a_deleted_secret_is_not_found_and_remembered() -> None:
    shared: dict[str, Any] = {}
    reader = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=3600), driver=MemoryDriver(data=shared)
    )
    writer = SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver(data=shared))
    sid = uuid.uuid4()
    writer.store_secret_values(sid, {"k": "v"})
    reader.get_secret_values(sid)
    writer.delete_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        reader.refresh(sid)
    reads = reader.driver.calls["read"]  # type: ignore[attr-defined]
    with pytest.raises(SecretNotFoundError):
        reader.get_secret_values(sid)  # the negative entry answers
    assert reader.driver.calls["read"] == reads  # type: ignore[attr-defined]


def test_invalidate_and_clear_cache() -> None:
    store = memory_store(cache_ttl_seconds=3600)
    calls = store.driver.calls  # type: ignore[attr-defined]
    a, b = uuid.uuid4(), uuid.uuid4()
    for sid in (a, b):
        store.store_secret_values(sid, {"k": "v"})
        store.get_secret_values(sid)
    reads = calls["read"]
    store.get_secret_values(a)
    assert calls["read"] == reads  # cached
    store.invalidate(a)
    store.get_secret_values(a)
    store.get_secret_values(b)
    assert calls["read"] == reads + 1  # only a went to the backend
    store.clear_cache()
    store.get_secret_values(a)
    store.get_secret_values(b)
    assert calls["read"] == reads + 3
    with pytest.raises(InvalidSecretError):
        store.invalidate("not-a-uuid")
    # Without a cache they are harmless and refresh is a plain read.
    plain = memory_store()
    plain.store_secret_values(a, {"k": "v"})
    plain.invalidate(a)
    plain.clear_cache()
    assert plain.refresh(a) == {"k": "v"}


def test_cli_get_refresh(local_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**local_env, "MULTICLOUD_STORE_CACHE_TTL_SECONDS": "60"}.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    assert main(["put", "k=v", "--json"], stdout=out) == 0
    sid = json.loads(out.getvalue())["id"]
    out = io.StringIO()
    assert main(["get", sid, "--refresh", "--json"], stdout=out) == 0
    assert json.loads(out.getvalue()) == {"id": sid, "keys": ["k"]}
    assert main(["get", str(uuid.uuid4()), "--refresh"], stdout=io.StringIO()) == 3


# -- the health probe ------------------------------------------------------------------------------------------


def probe(*args: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = main(["check", "--probe", *args], stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


def test_probe_reachable(local_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in local_env.items():
        monkeypatch.setenv(key, value)
    code, line = probe()
    assert code == 0
    assert line["outcome"] == "ok" and line["backend"] == "local" and line["error"] is None
    assert isinstance(line["latency_ms"], float)


def test_probe_times_out_on_a_backend_that_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hang(self: MemoryDriver) -> None:
        entered.set()
        release.wait(120)

    monkeypatch.setattr(MemoryDriver, "health_check", hang)
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "memory")
    try:
        code, line = probe("--timeout", "0.5")
    finally:
        release.set()
    # Polled, not read at once: on a loaded machine the thread may still be building the store at the timeout.
    assert entered.wait(120)
    assert code == 6
    assert line["outcome"] == "timeout" and line["error"] == "timeout"


def test_probe_reports_the_error_class(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: MemoryDriver) -> None:
        raise BackendPermissionError("injected: not allowed to list secrets")

    monkeypatch.setattr(MemoryDriver, "health_check", denied)
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "memory")
    code, line = probe()
    assert code == 7
    assert line["outcome"] == "permission" and line["error"] == "BackendPermissionError"
    assert "not allowed" in line["message"]


def test_probe_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "no-such-backend")
    code, line = probe()
    assert code == 5
    assert line["outcome"] == "invalid" and line["backend"] is None


# -- without the SDK, without the API --------------------------------------------------------------------------

WORKLOAD = textwrap.dedent(
    """
    import json, sys, tempfile, uuid
    from pathlib import Path
    from multicloud_store import SecretsStore, StoreSettings
    from multicloud_store.drivers.local import LocalDriver, LocalSettings
    from multicloud_store.drivers.memory import MemoryDriver
    from multicloud_store.errors import BackendUnavailableError, SecretNotFoundError
    from multicloud_store.migrate import migrate
    from multicloud_store.observability import SWITCH

    results = []
    sid = uuid.UUID("8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11")
    with tempfile.TemporaryDirectory() as tmp:
        for store in (
            SecretsStore(StoreSettings(backend="memory", cache_ttl_seconds=60, cache_stale_seconds=600), driver=MemoryDriver()),
            SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(LocalSettings(path=Path(tmp) / "s.db"))),
        ):
            store.store_secret_values(sid, {"k": "v"})
            results.append(store.get_secret_values(sid))
            results.append(store.get_secret_values(sid))
            store.update_secret_values(sid, {"k": "w"})
            results.append(store.refresh(sid))
            results.append([str(i) for i in store.list_secret_ids()])
            results.append({str(k): o.status for k, o in store.get_many([sid, uuid.UUID(int=1)]).items()})
            if store.cache is not None:
                store.cache._entries = {k: e._replace(expires=0) for k, e in store.cache._entries.items()}
                store.driver.fail_next(lambda: BackendUnavailableError("down"), operations=["read"])
                results.append(store.get_secret_values(sid))
            report = migrate(store, SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver()))
            results.append(report.created)
            store.delete_secret_values(sid)
            try:
                store.get_secret_values(sid)
            except SecretNotFoundError as exc:
                results.append(type(exc).__name__)
            store.close()
    print(json.dumps({
        "results": results,
        "telemetry": SWITCH.telemetry is not None,
        "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    }))
    """
)

BLOCK_OTEL = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_workload(prelude: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", prelude + WORKLOAD],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_import_does_not_import_opentelemetry() -> None:
    done = run_workload("")
    assert done["otel"] == []
    assert done["telemetry"] is False


def test_same_behaviour_without_the_api_with_the_api_only_and_with_the_sdk() -> None:
    without = run_workload(BLOCK_OTEL)
    api_only = run_workload("import opentelemetry.trace, opentelemetry.metrics\n")
    sdk = run_workload(
        textwrap.dedent(
            """
            from opentelemetry import metrics, trace
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            trace.set_tracer_provider(TracerProvider())
            metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
            """
        )
    )
    assert without["otel"] == []
    assert without["telemetry"] is False
    assert api_only["otel"] and api_only["telemetry"] is False  # no provider: the ordinary path
    assert sdk["telemetry"] is True
    assert without["results"] == api_only["results"] == sdk["results"]
    assert without["results"][0] == {"k": "v"}


def test_a_provider_installed_after_the_store_was_built_is_picked_up() -> None:
    code = textwrap.dedent(
        """
        import json, uuid
        import opentelemetry.trace
        from multicloud_store import SecretsStore, StoreSettings
        from multicloud_store.drivers.memory import MemoryDriver
        store = SecretsStore(StoreSettings(backend="memory", cache_ttl_seconds=60), driver=MemoryDriver())
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"k": "v"})
        store.get_secret_values(sid)
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        store.get_secret_values(sid)  # a hit: seen from the next backend call on
        store.update_secret_values(sid, {"k": "w"})  # a backend call: picks the provider up
        store.get_secret_values(sid)
        print(json.dumps([s.name for s in exporter.get_finished_spans()]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    # The update's own span starts before its first backend call sees the provider; the next call is traced.
    assert json.loads(done.stdout.splitlines()[-1]) == ["multicloud_store.get"]


def test_an_unusable_api_leaves_the_store_working(
    monkeypatch: pytest.MonkeyPatch, library_log: pytest.LogCaptureFixture
) -> None:
    caplog = library_log
    from types import SimpleNamespace

    from multicloud_store import observability

    def broken(self: Telemetry, *args: Any) -> None:
        raise TypeError("an API too old for this keyword")

    switch = observability.Switch()
    # As if a provider had been installed through an API whose instruments cannot be built.
    switch._trace = SimpleNamespace(_TRACER_PROVIDER=object())
    switch._metrics = SimpleNamespace(_METER_PROVIDER=None)
    monkeypatch.setattr(Telemetry, "__init__", broken)
    monkeypatch.setattr(observability, "SWITCH", switch)
    monkeypatch.setattr("multicloud_store.store._SWITCH", switch)
    store = memory_store()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    assert store.get_secret_values(sid) == {"k": "v"}
    assert switch.telemetry is None
    warnings = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert len(warnings) == 1


def test_refresh_without_a_cache_is_one_get_span(otel: Captured) -> None:
    store = memory_store()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    otel.reset()
    assert store.refresh(sid) == {"k": "v"}
    (get,) = otel.finished()
    assert get.name == "multicloud_store.get"
    assert attrs(get)["multicloud_store.round_trips"] == 1
    assert "multicloud_store.cache" not in attrs(get)
