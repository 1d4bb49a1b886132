"""OpenTelemetry out: Tether's own spans also go over OTLP/HTTP to a collector the user names
(``TETHER_OTLP_ENDPOINT``), alongside its own store.

``OtlpExportSink`` wraps the store's writer: every record goes to the writer first, and each
span, when it ends, is re-created (same trace and span ids, same times, GenAI attributes) on
Tether's *own* ``TracerProvider`` with a ``BatchSpanProcessor`` and the OTLP/HTTP exporter.
The application's global tracer provider is never read or replaced. Structured attributes
(``gen_ai.input.messages``, ...) are sent as JSON strings, as OTLP's attribute types require.
A collector that is down or slow never slows a run: the exporter's queue is bounded and drops.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from tether.store import AuditRecord, CheckpointRecord, EventRecord, RunRecord, SpanRecord
from tether.trace.sink import TraceSink

ENDPOINT_ENV = "TETHER_OTLP_ENDPOINT"
"""Base URL of the collector (``http://host:4318``); spans go to ``<base>/v1/traces``."""
HEADERS_ENV = "TETHER_OTLP_HEADERS"
"""Extra request headers, ``name=value,name=value`` (a collector's API key)."""
MAX_PENDING_EVENTS = 10_000
"""Events held for spans not yet ended; past this the oldest are dropped."""
_KIND = {"model": SpanKind.CLIENT, "tool": SpanKind.INTERNAL}


class _PresetIds(IdGenerator):
    """Ids the next span must carry (Tether's own); random when none is set."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._random = RandomIdGenerator()

    def preset(self, trace_id: int, span_id: int) -> None:
        self._local.ids = (trace_id, span_id)

    def clear(self) -> None:
        self._local.ids = None

    def generate_span_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[1] if ids else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()


def otlp_value(value: Any) -> Any:
    """An attribute value OTLP can carry: scalars and lists of one scalar type as they are,
    anything else (message lists, dicts, None) as JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _parse_headers(text: str) -> dict[str, str]:
    """``TETHER_OTLP_HEADERS`` read as OpenTelemetry reads ``OTEL_EXPORTER_OTLP_HEADERS``
    (the SDK's own parser: ``name=value`` pairs, values percent-decoded, so a value holds a
    comma as ``%2C``). Read as it was written, ``Authorization=Bearer%20tth_...`` (the form
    OpenTelemetry's documentation gives) was sent encoded and every export got 401."""
    from opentelemetry.util.re import parse_env_headers

    return dict(parse_env_headers(text, liberal=True))


class OtlpExportSink:
    """A ``TraceSink`` that hands every record to ``inner`` (the store's writer) and exports
    each ended span over OTLP/HTTP through its own tracer provider."""

    def __init__(
        self,
        inner: TraceSink,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        service_name: str = "tether",
        timeout_s: float = 10.0,
    ) -> None:
        self.inner = inner
        self.endpoint = endpoint.rstrip("/")
        self._ids = _PresetIds()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), id_generator=self._ids
        )
        self.exporter = OTLPSpanExporter(
            endpoint=f"{self.endpoint}/v1/traces", headers=headers or {}, timeout=timeout_s
        )
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self._tracer = self.provider.get_tracer("tether")
        self._events: dict[str, list[EventRecord]] = {}
        self._pending = 0
        self._lock = threading.Lock()  # one span at a time: the preset ids are per thread
        self.last_export_flushed = True
        """Whether the last ``flush`` got every queued span to the collector."""

    # -- TraceSink -------------------------------------------------------------------------

    def run_started(self, run: RunRecord) -> None:
        self.inner.run_started(run)

    def span(self, span: SpanRecord) -> None:
        self.inner.span(span)
        self._export(span)

    def event(self, event: EventRecord) -> None:
        self.inner.event(event)
        if event.span_id is None:
            return
        with self._lock:
            if self._pending >= MAX_PENDING_EVENTS:
                return  # a span that never ends must not hold memory forever
            self._events.setdefault(event.span_id, []).append(event)
            self._pending += 1

    def checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self.inner.checkpoint(checkpoint)

    def run_ended(self, run: RunRecord) -> None:
        self.inner.run_ended(run)

    def audit(self, entry: AuditRecord) -> None:
        """Audit entries are the store's alone (they are not spans): the writer keeps them."""
        audit = getattr(self.inner, "audit", None)
        if audit is not None:
            audit(entry)

    def sync(self) -> bool:
        """The store's sync (``BatchingWriter.sync``): the export is not a store."""
        sync = getattr(self.inner, "sync", None)
        return True if sync is None else bool(sync())

    def flush(self, timeout: float | None = None) -> bool:
        """The store's answer (what callers act on); the export is flushed best-effort: a
        collector that is down must not make a stored trace look lost."""
        stored = self.inner.flush(timeout)
        millis = 30_000 if timeout is None else max(int(timeout * 1000), 1)
        self.last_export_flushed = self.provider.force_flush(millis)
        return stored

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread."""
        self.provider.shutdown()

    # -- exporting ---------------------------------------------------------------------------

    def _export(self, span: SpanRecord) -> None:
        try:
            trace_id, span_id = int(span.trace_id, 16), int(span.span_id, 16)
        except ValueError:
            return  # not an OpenTelemetry id: nothing to export it as
        context = None
        if span.parent_id:
            parent = SpanContext(
                trace_id=trace_id,
                span_id=int(span.parent_id, 16),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            context = otel_trace.set_span_in_context(NonRecordingSpan(parent))
        attributes = {k: otlp_value(v) for k, v in span.attributes.items() if v is not None}
        attributes["tether.span.kind"] = span.kind
        with self._lock:
            events = self._events.pop(span.span_id, [])
            self._pending -= len(events)
            self._ids.preset(trace_id, span_id)
            try:
                otel_span = self._tracer.start_span(
                    span.name,
                    context=context,
                    kind=_KIND.get(span.kind, SpanKind.INTERNAL),
                    attributes=attributes,
                    start_time=span.start_ns,
                )
            finally:
                self._ids.clear()
        for e in events:
            otel_span.add_event(
                e.name,
                {k: otlp_value(v) for k, v in e.attributes.items() if v is not None},
                timestamp=e.time_ns,
            )
        if span.status == "error":
            otel_span.set_status(Status(StatusCode.ERROR, span.status_message or "error"))
        otel_span.end(end_time=span.end_ns or span.start_ns)


_sinks: dict[tuple[int, str], OtlpExportSink] = {}
_sinks_lock = threading.Lock()


def with_otlp_export(sink: TraceSink, environ: dict[str, str] | None = None) -> TraceSink:
    """``sink``, or (when ``TETHER_OTLP_ENDPOINT`` is set) ``sink`` wrapped to export its
    spans there too: one exporting sink per writer and endpoint in a process."""
    env = os.environ if environ is None else environ
    endpoint = env.get(ENDPOINT_ENV, "").strip()
    if not endpoint:
        return sink
    key = (id(sink), endpoint)
    with _sinks_lock:
        found = _sinks.get(key)
        if found is None or found.inner is not sink:
            found = OtlpExportSink(sink, endpoint, headers=_parse_headers(env.get(HEADERS_ENV, "")))
            _sinks[key] = found
        return found


def shutdown_exporters(sinks: Sequence[OtlpExportSink] | None = None) -> None:
    """Flush and stop the process's exporting sinks (at exit)."""
    with _sinks_lock:
        targets = list(_sinks.values()) if sinks is None else list(sinks)
        if sinks is None:
            _sinks.clear()
    for s in targets:
        s.shutdown()
