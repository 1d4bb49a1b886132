"""``RunRecorder``: the runtime's handle on one run's trace (spans, events, run row)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.core import Settings, new_span_id, now_ns
from tether.store import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    Store,
    canonical_url,
    parse_store_url,
    store_identity,
)
from tether.trace.audit import AuditLog
from tether.trace.journal import journal_dir, move_orphans, read_identity, undelivered
from tether.trace.writer import BatchingWriter, TraceSink

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

    def end_span(
        self, span: SpanRecord, *, error: str | None = None, ended_ns: int | None = None
    ) -> None:
        """Close a span and hand it to the sink (``ended_ns``: when it ended, if that was
        before now: a span held back until a later decision)."""
        span.end_ns = ended_ns if ended_ns is not None else now_ns()
        if error is not None:
            span.status = "error"
            span.status_message = error
        self.sink.span(span)

    def event(self, span_id: str | None, name: str, attributes: dict[str, Any]) -> None:
        self.sink.event(
            EventRecord(self.trace_id, span_id, name, now_ns(), attributes, run_id=self.run_id)
        )

    def audit(
        self, kind: str, span_id: str | None, actor: dict[str, Any], details: dict[str, Any]
    ) -> None:
        """An audit entry of this run (kept when the sink keeps audit entries)."""
        AuditLog(self.sink).record(
            kind, actor, details, trace_id=self.trace_id, run_id=self.run_id, span_id=span_id
        )

    def sync(self) -> bool:
        """Make what was sent so far survive a power cut, where the sink can (its ``sync``,
        as ``BatchingWriter.sync``; a sink without one has nothing to do). Blocks: call it
        from a worker thread. False when it could not (the sink logged why)."""
        sync = getattr(self.sink, "sync", None)
        return True if sync is None else bool(sync())

    def checkpoint(self, schema_version: int, state_json: str, reason: str) -> None:
        self.sink.checkpoint(
            CheckpointRecord(
                self.trace_id, schema_version, now_ns(), state_json, reason, run_id=self.run_id
            )
        )


_writers: dict[str, BatchingWriter] = {}
_writers_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _writers_lock
    _writers_lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def writer_for(url: str) -> BatchingWriter:
    """The process-wide batching writer for a database URL. It never connects in the caller's
    thread: the store is opened (and migrated) by the writer's thread, so a run starts at once
    even when the store is slow or down, and its trace waits in the journal meanwhile. A bad
    URL or a missing driver still raises here."""
    with _writers_lock:
        writer = _writers.get(url)
        if writer is None or writer.closed:
            writer = BatchingWriter(Store(url, connect=False), journal=journal_for(url))
            _writers[url] = writer
        return writer


def journal_for(url: str) -> Path | None:
    """The crash journal of a store, in ``TETHER_HOME``; none for in-memory SQLite, which
    dies with the process anyway. Records an older Tether left in a folder named by the whole
    URL (password included) are moved into it. A URL that does not parse is a ``StoreError``
    saying so."""
    parsed = parse_store_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        return None
    home = Settings.from_env().home
    directory = journal_dir(home, store_identity(url))
    legacy = journal_dir(home, canonical_url(url))
    if legacy != directory and legacy.is_dir():
        try:
            move_orphans(legacy, directory)
        except OSError as exc:  # the records stay where they are; say so, go on
            log.warning("cannot move the trace journal %s into %s: %s", legacy, directory, exc)
    return directory


@dataclass(frozen=True)
class StrandedJournal:
    """Records waiting in the journal folder of a store other than the one in use."""

    store: str | None
    """The store's identity (no credentials); None for a folder of an older Tether."""
    directory: Path
    records: int


def stranded_journals(url: str) -> list[StrandedJournal]:
    """Journal folders in ``TETHER_HOME`` holding records of other stores that no live
    process is writing: runs made with another URL (another password, host spelling or
    schema), delivered only when a command is pointed at that store."""
    own = journal_for(url)
    root = Settings.from_env().home / "journal"
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and p != own)
    except OSError:  # no journal yet
        return []
    found = []
    for folder in folders:
        _segments, records = undelivered(folder)
        if records:
            found.append(StrandedJournal(read_identity(folder), folder, records))
    return found


def writers_opened() -> bool:
    """Whether this process has a trace writer open (it traces runs to a store)."""
    with _writers_lock:
        return bool(_writers)


def close_writers() -> int:
    """Flush and close every process-wide writer (tests and CLI exit). Returns how many
    records were lost: neither written to their store nor kept in a crash journal, or
    refused by the store outright (each was logged with the store's reason)."""
    lost = 0
    with _writers_lock:
        for writer in _writers.values():
            writer.close()
            writer.store.close()
            lost += writer.lost_at_close + writer.dropped
        _writers.clear()
    return lost


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
