"""Tracing: OTel GenAI names, the batching writer, per-run recorder, and pricing."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports
from tether.trace import semconv
from tether.trace.pricing import ModelPrice, PricingTable, default_pricing

if TYPE_CHECKING:
    from tether.trace.recorder import RunRecorder, close_writers, new_run_record, writer_for
    from tether.trace.writer import BatchingWriter, NullSink, TraceSink

# The writer and the recorder need the store (SQLAlchemy): they load on first use.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        ".recorder": ("RunRecorder", "close_writers", "new_run_record", "writer_for"),
        ".writer": ("BatchingWriter", "NullSink", "TraceSink"),
    },
)

__all__ = [
    "BatchingWriter",
    "ModelPrice",
    "NullSink",
    "PricingTable",
    "RunRecorder",
    "TraceSink",
    "close_writers",
    "default_pricing",
    "new_run_record",
    "semconv",
    "writer_for",
]
