"""OpenTelemetry traces and metrics for every store call, at no cost when nobody is looking.

This module is the only one that touches OpenTelemetry, and only its API (``pip install multicloud-store[otel]``).
Nothing here imports it at import time: the dispatcher asks `SWITCH` whether a real tracer or meter provider has
been installed (by the application, or by ``opentelemetry-instrument``) and takes its ordinary path otherwise.
The check reads two module globals of the API, so it costs a few attribute reads; it runs on every backend call
and when a store is built. A cache hit only reads `Switch.telemetry`, so a provider set after the store was built
shows up on cache hits from the store's next backend call on.

What is recorded (see docs/observability.md): one CLIENT span per store call named ``multicloud_store.<op>``,
the duration and round-trip histograms, the error counter, and the cache counters. Attributes carry the backend,
the operation, the outcome, the cache result, round trips, batch sizes and the secret id; never a value, a label
of another deployment or a credential.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from multicloud_store.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    InvalidSecretError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)

if TYPE_CHECKING:
    from multicloud_store.cache import ReadCache

__all__ = [
    "ATTR_BACKEND",
    "ATTR_BATCH_SIZE",
    "ATTR_CACHE",
    "ATTR_OPERATION",
    "ATTR_OUTCOME",
    "ATTR_ROUND_TRIPS",
    "ATTR_SECRET_ID",
    "SWITCH",
    "Switch",
    "Telemetry",
    "outcome_of",
    "traced_migration",
    "watch_cache",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

ATTR_BACKEND = "multicloud_store.backend"
ATTR_OPERATION = "multicloud_store.operation"
ATTR_OUTCOME = "multicloud_store.outcome"
ATTR_SECRET_ID = "multicloud_store.secret.id"
ATTR_CACHE = "multicloud_store.cache"
ATTR_ROUND_TRIPS = "multicloud_store.round_trips"
ATTR_BATCH_SIZE = "multicloud_store.batch.size"
ATTR_ERROR_TYPE = "error.type"  # OpenTelemetry's semantic convention for the error class

# Seconds: from a cache hit (microseconds) to a throttled call retried by the SDK (seconds).
_DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)  # fmt: skip
_ROUND_TRIP_BUCKETS = (0, 1, 2, 3, 4, 5, 10, 20, 50, 100)

_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (SecretNotFoundError, "not_found"),
    (SecretExistsError, "exists"),
    (BackendUnavailableError, "unavailable"),
    (BackendPermissionError, "permission"),
    (SecretCorruptedError, "corrupted"),
    (SecretStateError, "state"),
    (InvalidSecretError, "invalid"),
    (ConfigurationError, "invalid"),
)
# Outcomes that answer the question asked; the span status stays unset for them.
_EXPECTED = frozenset({"ok", "not_found", "exists"})


def outcome_of(exc: BaseException | None) -> str:
    """Name the outcome of a call in the vocabulary of spans, metrics and log lines.

    Args:
        exc: What the call raised, or None when it returned.

    Returns:
        ``ok``, ``not_found``, ``exists``, ``unavailable``, ``permission``, ``corrupted``, ``state``,
        ``invalid`` or ``error``.
    """
    if exc is None:
        return "ok"
    for cls, name in _OUTCOMES:
        if isinstance(exc, cls):
            return name
    return "error"


def _id_text(secret_id: object) -> str | None:
    """The id as text when it is a well-formed UUID: a malformed one may be a value pasted in the wrong place."""
    if isinstance(secret_id, UUID):
        return str(secret_id)
    if isinstance(secret_id, str):
        try:
            return str(UUID(secret_id))
        except ValueError:
            return None
    return None


# -- cache statistics, read by observable instruments ---------------------------------------------------------

# Every live read cache and its backend name. Weak, so a closed and dropped store takes its cache along.
_CACHES: weakref.WeakKeyDictionary[ReadCache, str] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def watch_cache(cache: ReadCache, backend: str) -> None:
    """Report a store's read cache through the cache instruments (no OpenTelemetry import).

    Args:
        cache: The cache.
        backend: The store's backend name, the cache instruments' only attribute.
    """
    with _CACHES_LOCK:
        _CACHES[cache] = backend


def _cache_totals(field: str) -> dict[str, int]:
    with _CACHES_LOCK:
        caches = list(_CACHES.items())
    totals: dict[str, int] = {}
    for cache, backend in caches:
        value = len(cache) if field == "entries" else getattr(cache, field)
        totals[backend] = totals.get(backend, 0) + value
    return totals


# -- one store call -------------------------------------------------------------------------------------------


class _Op:
    """What the dispatcher learns while one store call runs: round trips, cache result, batch outcomes."""

    __slots__ = ("cache", "entering", "extra", "outcome", "trips")

    def __init__(self, entering: bool) -> None:
        # True until the store method re-enters itself inside the span (see `Telemetry.outer`).
        self.entering = entering
        self.trips: list[None] = []  # list.append is atomic: get_many's pool threads count here too
        self.cache: str | None = None
        self.outcome: str | None = None
        self.extra: dict[str, int | str] = {}


_CURRENT: contextvars.ContextVar[_Op | None] = contextvars.ContextVar("multicloud_store_op", default=None)


class Telemetry:
    """The tracer and the instruments, built once a real provider is installed.

    Built through the API's global providers; the store reaches it through `SWITCH`.

    Args:
        tracer_provider: A provider to use instead of the global one (tests).
        meter_provider: A provider to use instead of the global one (tests).
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from multicloud_store import __version__

        self._trace = trace
        self._kind = SpanKind.CLIENT
        self._status = Status
        self._error_code = StatusCode.ERROR
        self.tracer = trace.get_tracer("multicloud_store", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("multicloud_store", __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "multicloud_store.operation.duration",
            unit="s",
            description="Duration of store calls, cache hits included.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.round_trips = meter.create_histogram(
            "multicloud_store.operation.round_trips",
            unit="{round_trip}",
            description="Backend calls made by one store call (0 on a cache hit).",
            explicit_bucket_boundaries_advisory=_ROUND_TRIP_BUCKETS,
        )
        self.errors = meter.create_counter(
            "multicloud_store.errors", unit="{error}", description="Store calls that raised, by error class."
        )
        for field, unit, text in (
            ("hits", "{hit}", "Reads answered by the read cache."),
            ("misses", "{miss}", "Reads the cache could not answer."),
            ("evictions", "{entry}", "Entries dropped to keep the cache within its bound."),
            ("stale_serves", "{read}", "Expired values served because the backend was unavailable."),
        ):
            meter.create_observable_counter(
                f"multicloud_store.cache.{field}",
                callbacks=[self._observer(field)],
                unit=unit,
                description=text,
            )
        meter.create_observable_gauge(
            "multicloud_store.cache.entries",
            callbacks=[self._observer("entries")],
            unit="{entry}",
            description="Entries held by the read caches.",
        )

    @staticmethod
    def _observer(field: str) -> Callable[[Any], Iterable[Any]]:
        def observe(options: Any) -> Iterable[Any]:
            from opentelemetry.metrics import Observation

            return [Observation(value, {ATTR_BACKEND: b}) for b, value in _cache_totals(field).items()]

        return observe

    # -- hooks called by the store ------------------------------------------------------------------------

    @staticmethod
    def outer() -> bool:
        """Tell a store method whether it must open its span (True), or runs inside the span it opened.

        `run` calls the method again with a marked record; that inner call takes the ordinary path.

        Returns:
            True when no span was opened for this very call yet.
        """
        op = _CURRENT.get()
        if op is not None and op.entering:
            op.entering = False
            return False
        return True

    @staticmethod
    def round_trip() -> None:
        """Count one backend call for the store call under way."""
        op = _CURRENT.get()
        if op is not None:
            op.trips.append(None)

    @staticmethod
    def note_cache(result: str) -> None:
        """Record the cache's answer for the store call under way: ``hit``, ``miss`` or ``stale``.

        Args:
            result: The answer.
        """
        op = _CURRENT.get()
        if op is not None:
            op.cache = result

    @staticmethod
    def note_batch(statuses: Iterable[str], cache_hits: int, first_error: BaseException | None) -> None:
        """Record a get_many's per-id statuses; the first failed id sets the call's outcome.

        Args:
            statuses: One `ReadOutcome.status` per id.
            cache_hits: Ids answered by the cache.
            first_error: The error of the first id with status ``error``.
        """
        op = _CURRENT.get()
        if op is None:
            return
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            op.extra[f"multicloud_store.batch.{status}"] = count
        op.extra["multicloud_store.batch.cache_hits"] = cache_hits
        if first_error is not None:
            op.outcome = outcome_of(first_error)

    @staticmethod
    def propagating(func: Callable[..., T]) -> Callable[..., T]:
        """Wrap a function handed to a worker pool so it runs in the caller's context (span, call record).

        Args:
            func: The function.

        Returns:
            A function that runs ``func`` in a copy of the context current now.
        """
        captured = contextvars.copy_context()

        def run(*args: Any) -> T:
            # One copy per call: a Context may be entered by one thread at a time.
            return captured.copy().run(func, *args)

        return run

    def run(
        self,
        operation: str,
        backend: str,
        func: Callable[..., T],
        *args: Any,
        secret_id: object = None,
        batch: int | None = None,
        reenter: bool = True,
        attributes: dict[str, str] | None = None,
    ) -> T:
        """Run one store call inside its span, then record its metrics.

        Args:
            operation: ``get``, ``store``, ``update``, ``delete``, ``get_many``, ``migrate``, ...
            backend: The backend name.
            func: The call.
            *args: Its arguments.
            secret_id: The id the call is about, recorded when it is a well-formed UUID.
            batch: The number of ids of a get_many.
            reenter: Whether ``func`` is the store method itself, which checks `outer` first.
            attributes: More span attributes.

        Returns:
            What ``func`` returned.
        """
        op = _Op(reenter)
        token = _CURRENT.set(op)
        span_attributes: dict[str, Any] = {ATTR_BACKEND: backend, ATTR_OPERATION: operation}
        text = _id_text(secret_id)
        if text is not None:
            span_attributes[ATTR_SECRET_ID] = text
        if batch is not None:
            span_attributes[ATTR_BATCH_SIZE] = batch
        if attributes:
            span_attributes.update(attributes)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            with self.tracer.start_as_current_span(
                f"multicloud_store.{operation}",
                kind=self._kind,
                attributes=span_attributes,
                record_exception=False,  # an exception's text and traceback are not span attributes
                set_status_on_exception=False,
            ) as span:
                try:
                    return func(*args)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._finish(span, op, error)
        finally:
            _CURRENT.reset(token)
            self._measure(operation, backend, op, error, time.perf_counter() - started)

    def iterate(self, operation: str, backend: str, items: Iterator[T]) -> Iterator[T]:
        """Yield from a lazy listing inside one span, current only while the listing itself runs.

        The span is made current around each step of ``items`` and not while the consumer runs between steps,
        so the consumer's own spans are not parented by the listing.

        Args:
            operation: ``list``.
            backend: The backend name.
            items: The listing.

        Yields:
            What ``items`` yields.
        """
        op = _Op(False)
        span = self.tracer.start_span(
            f"multicloud_store.{operation}",
            kind=self._kind,
            attributes={ATTR_BACKEND: backend, ATTR_OPERATION: operation},
        )
        started = time.perf_counter()
        error: BaseException | None = None
        count = 0
        try:
            while True:
                token = _CURRENT.set(op)
                try:
                    with self._trace.use_span(
                        span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                    ):
                        item = next(items)
                except StopIteration:
                    break
                finally:
                    _CURRENT.reset(token)
                count += 1
                yield item
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # the consumer stopped early: not a failure
                error = exc
            raise
        finally:
            op.extra["multicloud_store.list.count"] = count
            self._finish(span, op, error)
            span.end()
            self._measure(operation, backend, op, error, time.perf_counter() - started)

    def _finish(self, span: Any, op: _Op, error: BaseException | None) -> None:
        outcome = outcome_of(error) if error is not None else (op.outcome or "ok")
        span.set_attribute(ATTR_OUTCOME, outcome)
        span.set_attribute(ATTR_ROUND_TRIPS, len(op.trips))
        if op.cache is not None:
            span.set_attribute(ATTR_CACHE, op.cache)
        for key, value in op.extra.items():
            span.set_attribute(key, value)
        if error is not None:
            span.set_attribute(ATTR_ERROR_TYPE, type(error).__name__)
        if outcome not in _EXPECTED:
            span.set_status(self._status(self._error_code, type(error).__name__ if error else outcome))

    def _measure(
        self, operation: str, backend: str, op: _Op, error: BaseException | None, seconds: float
    ) -> None:
        outcome = outcome_of(error) if error is not None else (op.outcome or "ok")
        attributes = {ATTR_BACKEND: backend, ATTR_OPERATION: operation, ATTR_OUTCOME: outcome}
        self.duration.record(seconds, attributes)
        self.round_trips.record(len(op.trips), attributes)
        if error is not None:
            self.errors.add(1, {**attributes, ATTR_ERROR_TYPE: type(error).__name__})


def traced_migration(func: F) -> F:
    """Give `multicloud_store.migrate.migrate` its ``multicloud_store.migrate`` span and metrics.

    The span's backend is the target's; the source's backend, the report's counts and an ``error`` outcome when
    any secret failed are added from the report. The copies' own store calls are its children.

    Args:
        func: ``migrate(source, target, **options)``.

    Returns:
        The same function, traced when a provider is installed.
    """

    @functools.wraps(func)
    def migrate(source: Any, target: Any, **options: Any) -> Any:
        telemetry = SWITCH.telemetry or SWITCH.poll()
        if telemetry is None:
            return func(source, target, **options)

        def body() -> Any:
            report = func(source, target, **options)
            op = _CURRENT.get()
            if op is not None:
                for name in ("created", "updated", "skipped", "deleted"):
                    op.extra[f"multicloud_store.migrate.{name}"] = int(getattr(report, name, 0))
                op.extra["multicloud_store.migrate.failed"] = len(getattr(report, "failed", ()))
                op.extra["multicloud_store.migrate.corrupted"] = len(getattr(report, "corrupted", ()))
                if not getattr(report, "ok", True):
                    op.outcome = "error"
            return report

        source_backend = getattr(source, "backend", None)
        return telemetry.run(
            "migrate",
            str(getattr(target, "backend", "unknown")),
            body,
            reenter=False,
            attributes={"multicloud_store.migrate.source_backend": str(source_backend)}
            if source_backend
            else None,
        )

    return cast("F", migrate)


# -- is anybody looking? ------------------------------------------------------------------------------------------


class Switch:
    """Whether a real OpenTelemetry provider is installed, checked cheaply.

    ``telemetry`` is None until `poll` finds a tracer or meter provider set through the API's globals (set once
    per process, never unset), then the `Telemetry` for good. Reading it is the whole cost on a cache hit.
    """

    __slots__ = ("_failed", "_lock", "_metrics", "_trace", "telemetry")

    def __init__(self) -> None:
        self.telemetry: Telemetry | None = None
        self._failed = False
        self._trace: Any = None
        self._metrics: Any = None
        self._lock = threading.Lock()

    def poll(self) -> Telemetry | None:
        """Look whether a provider was installed since the last look.

        Returns:
            The telemetry when one was, else None.
        """
        telemetry = self.telemetry
        if telemetry is not None:
            return telemetry
        trace_module = self._trace
        if trace_module is None:
            # Not imported by anyone: no provider can be set, and importing it here would cost every process.
            trace_module = sys.modules.get("opentelemetry.trace")
            metrics_module = sys.modules.get("opentelemetry.metrics._internal")
            if trace_module is None and metrics_module is None:
                return None
            return self._bind()
        # The API keeps the installed providers in these globals (None until set); a missing name counts as set.
        if (
            getattr(trace_module, "_TRACER_PROVIDER", True) is None
            and getattr(self._metrics, "_METER_PROVIDER", True) is None
        ):
            return None
        return self._build()

    def _bind(self) -> Telemetry | None:
        try:
            import opentelemetry.metrics._internal as metrics_module
            import opentelemetry.trace as trace_module
        except ImportError:  # a broken or partial install: behave as without it
            return None
        if "OTEL_PYTHON_TRACER_PROVIDER" in os.environ:
            trace_module.get_tracer_provider()  # installs the provider the variable names
        if "OTEL_PYTHON_METER_PROVIDER" in os.environ:
            metrics_module.get_meter_provider()
        self._metrics = metrics_module
        self._trace = trace_module
        return self.poll()

    def _build(self) -> Telemetry | None:
        with self._lock:
            if self.telemetry is None and not self._failed:
                try:
                    self.telemetry = Telemetry()
                except Exception as exc:  # an API too old or broken: the store must work on regardless
                    self._failed = True
                    logging.getLogger("multicloud_store").warning(
                        "OpenTelemetry is installed but unusable (%s): no traces or metrics from the store",
                        type(exc).__name__,
                    )
            return self.telemetry


SWITCH = Switch()
