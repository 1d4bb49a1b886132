"""``RunRecorder``: the runtime's handle on one run's trace (spans, events, run row)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from tether.core import Settings, StoreError, new_span_id, now_ns
from tether.store import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    Store,
    canonical_url,
)
from tether.trace.journal import journal_dir
from tether.trace.writer import BatchingWriter, TraceSink, is_transient

log = logging.getLogger("tether.trace")


class RunRecorder:
    """Builds span and event records for one run and hands them to a sink."""

    __slots__ = ("run_id", "sink", "trace_id")

    def __init__(self, sink: TraceSink, trace_id: str, run_id: str) -> None:
        self.sink = sink
        self.trace_id = trace_id
        self.run_id = run_id
        """The id of the run's root span (several runs may share a trace)."""

    def start_span(
        self,
        name: str,
        kind: str,
        parent_id: str | None,
        attributes: dict[str, Any],
        *,
        span_id: str | None = None,
    ) -> SpanRecord:
        """Open a span (a new id unless ``span_id`` is given: the root span's is the run
        id); nothing is written until :meth:`end_span`."""
        return SpanRecord(
            trace_id=self.trace_id,
            run_id=self.run_id,
            span_id=span_id or new_span_id(),
            parent_id=parent_id,
            name=name,
            kind=kind,
            start_ns=now_ns(),
            attributes=attributes,
        )

    def end_span(self, span: SpanRecord, *, error: str | None = None) -> None:
        """Close a span and hand it to the sink."""
        span.end_ns = now_ns()
        if error is not None:
            span.status = "error"
            span.status_message = error
        self.sink.span(span)

    def event(self, span_id: str | None, name: str, attributes: dict[str, Any]) -> None:
        self.sink.event(
            EventRecord(self.trace_id, span_id, name, now_ns(), attributes, run_id=self.run_id)
        )

    def checkpoint(self, schema_version: int, state_json: str, reason: str) -> None:
        self.sink.checkpoint(
            CheckpointRecord(
                self.trace_id, schema_version, now_ns(), state_json, reason, run_id=self.run_id
            )
        )


_writers: dict[str, BatchingWriter] = {}
_writers_lock = threading.Lock()


def writer_for(url: str) -> BatchingWriter:
    """The process-wide batching writer for a database URL (opened and migrated once)."""
    with _writers_lock:
        writer = _writers.get(url)
        if writer is None or writer.closed:
            journal = _journal_for(url)
            writer = BatchingWriter(_open(url, journaled=journal is not None), journal=journal)
            _writers[url] = writer
        return writer


def _open(url: str, *, journaled: bool) -> Store:
    """The store; with a journal, one that is down (unreachable, locked) is opened lazily, so
    runs go on and their records wait in the journal until it is back. A bad URL or driver
    still raises."""
    try:
        return Store(url)
    except StoreError as exc:
        if not journaled or not is_transient(exc):
            raise
        log.warning(
            "%s; runs go on, and their traces are kept in the local journal and written "
            "when the store is reachable",
            exc.message,
        )
        return Store(url, connect=False)


def _journal_for(url: str) -> Path | None:
    """The crash journal of a store, in ``TETHER_HOME``; none for in-memory SQLite, which
    dies with the process anyway."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        return None
    return journal_dir(Settings.from_env().home, canonical_url(url))


def close_writers() -> None:
    """Flush and close every process-wide writer (tests and CLI exit)."""
    with _writers_lock:
        for writer in _writers.values():
            writer.close()
            writer.store.close()
        _writers.clear()


def new_run_record(
    trace_id: str,
    agent_name: str,
    agent_version: str,
    input_text: str,
    attributes: dict[str, Any],
    *,
    run_id: str,
) -> RunRecord:
    return RunRecord(
        trace_id=trace_id,
        run_id=run_id,
        agent_name=agent_name,
        agent_version=agent_version,
        started_ns=now_ns(),
        input=input_text,
        attributes=attributes,
    )
