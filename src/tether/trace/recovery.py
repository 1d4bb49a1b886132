"""What a process that died left behind: the records in its journal, written to the store,
and the runs it left ``running``, closed as failed with totals rebuilt from their spans.

A trace writer does this first, from its thread (``replay_orphans``, retrying while the store
is down); a command that only reads does it once, in its own thread, before reading
(``deliver_orphans``): no writer is started to read.

The process never wrote a run's end, so the run row still holds the zeros it started with.
What the spans say is what is known; what they cannot say (a model call the pricing table does
not know, a run with no model call recorded) is marked unknown, never counted as free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tether.core import Outcome, StoreError
from tether.store import RunRecord, SpanRecord, Store, TraceBatch
from tether.trace import semconv
from tether.trace.journal import (
    EVENT,
    RUN_END,
    SPAN,
    Record,
    Segment,
    orphaned_segments,
    replay_mark,
    writer_of,
)
from tether.trace.pricing import round_cost
from tether.trace.store_gate import StoreGate, must_wait

log = logging.getLogger("tether.trace")

T = TypeVar("T")
Queued = tuple[int, Record, str | None]
"""A record, and its attributes already serialized for the journal (reused by the store)."""


class Retrying(Protocol):
    """Calls the store, retrying while it is down (records wait meanwhile)."""

    def __call__(self, call: Callable[[], T]) -> T: ...


def to_batch(items: list[Queued]) -> TraceBatch:
    """The batch of queued records (an op is the index of its list in ``TraceBatch``)."""
    batch = TraceBatch()
    lists: tuple[list[Any], ...] = (
        batch.runs_started,
        batch.spans,
        batch.events,
        batch.checkpoints,
        batch.runs_ended,
        batch.audit,
    )
    for op, record, attributes_json in items:
        lists[op].append(record)
        if attributes_json is not None and op in (SPAN, EVENT):
            batch.attributes_json[id(record)] = attributes_json
    return batch


def deliver_orphans(directory: Path, store: Store) -> int:
    """``replay_orphans`` once, in this thread, with no writer: a command that reads the
    store first writes what dead processes left in its journal. A record the store rejects is
    skipped (and logged), as a writer skips it; a store that is down or cannot take records
    raises ``StoreError``, and what is not written stays in the journal for the next process.
    Returns how many records were replayed."""
    gate = StoreGate(store)

    def write(items: list[Queued]) -> None:
        try:
            gate.call(lambda: store.write(to_batch(items), skip_existing=True))
            return
        except StoreError as exc:
            if must_wait(exc):
                raise
        for item in items:  # rejected: find the record(s) at fault
            try:
                gate.call(lambda: store.write(to_batch([item]), skip_existing=True))  # noqa: B023
            except StoreError as exc:
                if must_wait(exc):
                    raise
                log.error("trace record rejected by the store and skipped: %s", exc.message)

    def once(call: Callable[[], T]) -> T:  # not retried: the reader says the store is down
        return gate.call(call)

    return replay_orphans(directory, store, write=write, retrying=once)


def discard(segment: Segment) -> None:
    """Delete a segment whose records are all in the store."""
    try:
        segment.discard()
    except OSError as exc:
        # Harmless: a replay skips records already in the store.
        log.warning("cannot delete trace journal segment %s: %s", segment.path, exc)


def replay_orphans(
    directory: Path,
    store: Store,
    *,
    write: Callable[[list[Queued]], None],
    retrying: Retrying,
) -> int:
    """Write the records of the segments dead processes left in a journal folder (``write``
    skips those already in the store), then close the runs those processes left running.
    Returns how many records were replayed."""
    replayed = 0
    writer: str | None = None
    done: list[Segment] = []  # the current writer's, written, discarded once its runs are closed
    last_write_ns = 0
    marked_yet = False
    with (
        contextlib.ExitStack() as marked,
        contextlib.closing(orphaned_segments(directory)) as segments,
    ):
        for segment, items in segments:
            if not marked_yet:
                # Held until the last run is closed: readers meanwhile say what they read
                # may be part of this replay (``replays_in_progress``).
                marked.enter_context(replay_mark(directory))
                marked_yet = True
            if writer_of(segment) != writer:
                _finish_writer(store, writer, last_write_ns, done, write=write, retrying=retrying)
                writer, done, last_write_ns = writer_of(segment), [], 0
            last_write_ns = max(last_write_ns, segment.path.stat().st_mtime_ns)
            done.append(segment)
            try:
                if items:
                    write([(op, record, None) for op, record in items])
            except BaseException:
                for kept in done:  # not all written: kept, for the next process to replay
                    kept.release()
                raise
            replayed += len(items)
        _finish_writer(store, writer, last_write_ns, done, write=write, retrying=retrying)
    if replayed:
        log.warning(
            "wrote %d trace records that a process left in the journal %s when it exited "
            "before writing them",
            replayed,
            directory,
        )
    return replayed


def _finish_writer(
    store: Store,
    writer: str | None,
    last_write_ns: int,
    segments: list[Segment],
    *,
    write: Callable[[list[Queued]], None],
    retrying: Retrying,
) -> None:
    """Close the runs a dead writer left running, then delete its segments (all written):
    deleted first, a process dying in between would leave its runs running for good, with
    nothing left to say whose they were."""
    if writer is None:
        return
    try:
        _close_abandoned_runs(store, writer, last_write_ns, write=write, retrying=retrying)
    except BaseException:
        for segment in segments:
            segment.release()
        raise
    for segment in segments:
        discard(segment)


def _close_abandoned_runs(
    store: Store,
    writer: str,
    last_write_ns: int,
    *,
    write: Callable[[list[Queued]], None],
    retrying: Retrying,
) -> None:
    """Record as failed the runs a dead writer left running, with the totals of the spans it
    recorded (the run's end, with its totals, never reached the journal)."""
    pid = writer.split("-", 1)[0]
    error = (
        f"the process that ran it (pid {pid}) exited before the run ended; "
        "its trace up to then was recovered from the trace journal"
    )
    runs = retrying(lambda: store.running_runs_of(semconv.TETHER_WRITER_ID, writer))
    ended = []
    for run in runs:
        run_id = run.run_id
        spans = retrying(lambda: store.get_spans(run_id))  # noqa: B023 - called at once
        ended.append(abandoned_run_end(run, spans, last_write_ns=last_write_ns, error=error))
    if ended:
        write([(RUN_END, run, None) for run in ended])
        log.warning("%d run(s) left running by pid %s recorded as failed", len(ended), pid)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def abandoned_run_end(
    run: RunRecord, spans: Sequence[SpanRecord], *, last_write_ns: int, error: str
) -> RunRecord:
    """The end of a run left ``running`` by a process that died: failed, with the tokens,
    cost, turns and tool calls of its recorded spans, ending at its last span's end (or, with
    no span, when its process last wrote to the journal)."""
    models = [s for s in spans if s.kind == "model"]
    input_tokens = output_tokens = cached = 0
    cost = 0.0
    unpriced = 0
    turns: set[Any] = set()
    for i, span in enumerate(models):
        a = span.attributes
        input_tokens += _count(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS))
        output_tokens += _count(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS))
        cached += _count(a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS))
        price = a.get(semconv.TETHER_COST_USD)
        if isinstance(price, int | float) and not isinstance(price, bool):
            cost = round_cost(cost + price)
        elif span.status == "ok" or a.get(semconv.TETHER_COST_UNPRICED):
            unpriced += 1  # answered, but at a price nobody knows
        # Fallback attempts share their turn; spans of an older Tether may lack it. A call a
        # control made for the run (a judge's) counts in its tokens and cost, not its turns.
        if semconv.TETHER_CALLED_BY not in a:
            turns.add(a.get(semconv.TETHER_TURN, f"span {i}"))
    attributes = dict(run.attributes)
    attributes["stop_reason"] = "process exited"
    if unpriced or not models:
        # Unknown, not zero: the renderers show a run with this attribute as unpriced.
        attributes[semconv.TETHER_COST_UNPRICED] = unpriced or True
    ends = [s.end_ns for s in spans if s.end_ns]
    # File times are coarse; span times are the run's own clock: never before it started.
    ended_ns = max(max(ends) if ends else last_write_ns, run.started_ns)
    return dataclasses.replace(
        run,
        status="failed",
        outcome=Outcome.ERROR.value,
        ended_ns=ended_ns,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cost_usd=cost,
        turns=len(turns),
        tool_calls=sum(1 for s in spans if s.kind == "tool"),
        error=error,
        attributes=attributes,
    )
