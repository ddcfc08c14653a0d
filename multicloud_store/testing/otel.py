"""In-memory OpenTelemetry capture for tests of a backend's spans and metrics (needs ``opentelemetry-sdk``).

Example, in a backend's test module::

    @pytest.fixture
    def otel(monkeypatch):
        captured = Captured()
        monkeypatch.setattr(SWITCH, "telemetry", captured.telemetry)
        yield captured
        captured.shutdown()
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from multicloud_store.observability import Telemetry

__all__ = ["Captured", "exported_text"]


class Captured:
    """What a real SDK would export: finished spans in memory, metrics from an in-memory reader."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        """Return the finished spans, optionally only those of one name.

        Args:
            name: A span name such as ``multicloud_store.get``.

        Returns:
            The spans, in the order they finished.
        """
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """Return every metric's data points, by metric name.

        Returns:
            Name to data points.
        """
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def points(self, name: str, **attributes: str) -> list[Any]:
        """Return the data points of one metric whose attributes match.

        Args:
            name: The metric's name.
            **attributes: Attributes without the ``multicloud_store.`` prefix (``error.type`` as is).

        Returns:
            The matching data points.
        """
        wanted = {(k if k == "error.type" else f"multicloud_store.{k}"): v for k, v in attributes.items()}
        return [
            p
            for p in self.metrics().get(name, [])
            if all(p.attributes.get(k) == v for k, v in wanted.items())
        ]

    def shutdown(self) -> None:
        """Shut both providers down."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def exported_text(captured: Captured) -> str:
    """Return every exported span's name, attributes and events, and every metric point's attributes, as text.

    A sentinel scan searches this for values that must never be exported.

    Args:
        captured: What was captured.

    Returns:
        One string.
    """
    parts: list[str] = []
    for span in captured.finished():
        parts.append(span.name)
        parts.extend(f"{k}={v!s}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            parts.append(event.name)
            parts.extend(f"{k}={v!s}" for k, v in (event.attributes or {}).items())
    for points in captured.metrics().values():
        for point in points:
            parts.extend(f"{k}={v}" for k, v in point.attributes.items())
    return "\n".join(parts)
