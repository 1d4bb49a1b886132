"""Tracing: OTel GenAI names, the batching writer, per-run recorder, and pricing."""

from tether.trace import semconv
from tether.trace.pricing import ModelPrice, PricingTable, default_pricing
from tether.trace.recorder import RunRecorder, close_writers, new_run_record, writer_for
from tether.trace.writer import BatchingWriter, NullSink, TraceSink

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
