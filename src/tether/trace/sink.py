"""Where the runtime sends trace records: the ``TraceSink`` protocol, and a sink that
discards them."""

from __future__ import annotations

from typing import Protocol

from tether.store import CheckpointRecord, EventRecord, RunRecord, SpanRecord


class TraceSink(Protocol):
    """Where the runtime sends trace records.

    A record handed to a sink belongs to it from then on: the batching writer reads and
    serializes it on its own thread, after the call returns (copying each record on the
    run's thread would cost the run path a tenth of its time). Build a new record rather
    than change one already sent; a change would reach the store but not the crash journal.
    """

    def run_started(self, run: RunRecord) -> None: ...
    def span(self, span: SpanRecord) -> None: ...
    def event(self, event: EventRecord) -> None: ...
    def checkpoint(self, checkpoint: CheckpointRecord) -> None: ...
    def run_ended(self, run: RunRecord) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...


class NullSink:
    """Discards everything (tracing off)."""

    def run_started(self, run: RunRecord) -> None:
        pass

    def span(self, span: SpanRecord) -> None:
        pass

    def event(self, event: EventRecord) -> None:
        pass

    def checkpoint(self, checkpoint: CheckpointRecord) -> None:
        pass

    def run_ended(self, run: RunRecord) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True
