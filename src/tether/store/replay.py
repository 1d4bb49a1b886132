"""Replaying a crash journal: what the store already has is left out, and records from a
journal of a Tether before run ids are given the run of their trace."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select

from tether.store import tables
from tether.store.records import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    TraceBatch,
)
from tether.store.values import EVENT_NAME, clean_text, fit


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _existing(conn: Any, columns: Sequence[Any], key: Any, values: set[Any]) -> set[Any]:
    found: set[Any] = set()
    for chunk in _chunks(sorted(values)):
        for row in conn.execute(select(*columns).where(key.in_(chunk))):
            found.add(tuple(row) if len(columns) > 1 else row[0])
    return found


def _give_legacy_records_their_run(conn: Any, batch: TraceBatch) -> None:
    """Records from a crash journal written before runs had their own ids have an empty
    ``run_id``. Tether then gave each run its own trace id, so such a record belongs to the
    run of its trace: the one stored (migration 0002 gave it its root span's id, or the first
    16 hex characters of the trace id), or a new one with that derived id."""
    everything: list[RunRecord | SpanRecord | EventRecord | CheckpointRecord] = [
        *batch.runs_started,
        *batch.spans,
        *batch.events,
        *batch.checkpoints,
        *batch.runs_ended,
    ]
    records = [r for r in everything if not r.run_id]
    if not records:
        return
    runs = tables.runs.c
    stored: dict[str, list[tuple[str, int]]] = {}
    for chunk in _chunks(sorted({r.trace_id for r in records})):
        query = select(runs.trace_id, runs.run_id, runs.started_ns).where(runs.trace_id.in_(chunk))
        for trace_id, run_id, started_ns in conn.execute(query):
            stored.setdefault(trace_id, []).append((run_id, started_ns))
    for record in records:
        derived = record.trace_id[:16]
        candidates = stored.get(record.trace_id)
        if not candidates:
            record.run_id = derived
            continue
        # A trace reused by a newer Tether may hold several runs: the migrated (or derived)
        # one is the oldest.
        record.run_id = min(candidates, key=lambda c: (c[0] != derived, c[1], c[0]))[0]


def without_existing(conn: Any, batch: TraceBatch) -> TraceBatch:
    """The batch minus what is already stored: runs by run id, spans by span id, events by
    (run, name, time), checkpoints by (run, time). Run ends are updates, idempotent already."""
    _give_legacy_records_their_run(conn, batch)
    runs, spans, events = tables.runs.c, tables.spans.c, tables.events.c
    checks = tables.checkpoints.c
    have_runs = _existing(conn, [runs.run_id], runs.run_id, {r.run_id for r in batch.runs_started})
    have_spans = _existing(conn, [spans.span_id], spans.span_id, {s.span_id for s in batch.spans})
    have_events = _existing(
        conn,
        [events.run_id, events.name, events.time_ns],
        events.run_id,
        {e.run_id for e in batch.events},
    )
    have_checks = _existing(
        conn,
        [checks.run_id, checks.created_ns],
        checks.run_id,
        {c.run_id for c in batch.checkpoints},
    )
    return TraceBatch(
        runs_started=[r for r in batch.runs_started if r.run_id not in have_runs],
        spans=[s for s in batch.spans if s.span_id not in have_spans],
        events=[
            e
            for e in batch.events
            if (e.run_id, clean_text(fit(e.name, EVENT_NAME)), e.time_ns) not in have_events
        ],
        checkpoints=[c for c in batch.checkpoints if (c.run_id, c.created_ns) not in have_checks],
        runs_ended=batch.runs_ended,
        audit=batch.audit,  # left out by entry id when written (``tether.store.audit``)
        attributes_json=batch.attributes_json,
    )
