"""Tracing: OTel GenAI names, the batching writer, per-run recorder, pricing, and the views
of runs and traces that readers print (CLI ``--json``, HTTP API)."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports
from tether.trace import semconv
from tether.trace.pricing import ModelPrice, PricingTable, default_pricing

if TYPE_CHECKING:
    from tether.trace.audit import AuditLog
    from tether.trace.recorder import RunRecorder, close_writers, new_run_record, writer_for
    from tether.trace.views import EventView, RunDetail, RunPage, RunSummary, SpanView
    from tether.trace.writer import BatchingWriter, NullSink, TraceSink

# The writer and the recorder need the store (SQLAlchemy): they load on first use.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        ".audit": ("AuditLog",),
        ".recorder": ("RunRecorder", "close_writers", "new_run_record", "writer_for"),
        ".views": ("EventView", "RunDetail", "RunPage", "RunSummary", "SpanView"),
        ".writer": ("BatchingWriter", "NullSink", "TraceSink"),
    },
)

__all__ = [
    "AuditLog",
    "BatchingWriter",
    "EventView",
    "ModelPrice",
    "NullSink",
    "PricingTable",
    "RunDetail",
    "RunPage",
    "RunRecorder",
    "RunSummary",
    "SpanView",
    "TraceSink",
    "close_writers",
    "default_pricing",
    "new_run_record",
    "semconv",
    "writer_for",
]
