"""Batching trace writer: the run path appends to a queue; one thread writes batches.

Accepted records are written in order. A locked or unreachable database is retried with
backoff and nothing is dropped; neither is anything when the store cannot be opened or its
SQLite file is deleted or replaced under the process (records wait in the journal). A record
the database rejects outright is isolated, logged, and skipped so it cannot block the records
behind it. With a journal (``writer_for`` always gives one, but for in-memory SQLite), each
record is also appended to a local file when it is accepted, so records survive the process
being killed before they are written: see ``tether.trace.journal``. The store is opened by the
writer's thread, never the caller's: a store that is slow to answer does not hold up a run.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tether.core import StoreError
from tether.store import (
    AuditRecord,
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    Store,
    store_identity,
)
from tether.store.db import sync_committed
from tether.trace import semconv
from tether.trace.journal import (
    AUDIT,
    CHECKPOINT,
    EVENT,
    RUN_END,
    RUN_START,
    SPAN,
    Journal,
    Record,
    Segment,
    encode_line,
)
from tether.trace.recovery import Queued, discard, replay_orphans, to_batch
from tether.trace.sink import NullSink, TraceSink
from tether.trace.store_gate import StoreGate, StoreUnavailable, must_wait, timed_out

__all__ = ["BatchingWriter", "NullSink", "TraceSink"]

log = logging.getLogger("tether.trace")

T = TypeVar("T")


class BatchingWriter:
    """Writes trace records to a ``Store`` from a background thread.

    ``flush()`` waits until everything accepted before the call is in the database. With a
    ``journal`` folder, records accepted but not yet written survive a crash of the process
    and are written by the next writer opened with the same folder.
    """

    def __init__(
        self,
        store: Store,
        *,
        journal: Path | None = None,
        max_batch: int = 1000,
        flush_interval_s: float = 0.05,
        max_backoff_s: float = 2.0,
        checkpoint_records: int = 256,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.checkpoint_records = checkpoint_records
        """SQLite: records written since the last WAL checkpoint that make an idle writer run
        one (see ``_checkpoint``)."""
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.last_error: str | None = None
        """Why the store cannot take records now; None while it can."""
        self.last_rejection: str | None = None
        """Why the store last refused a record outright (it was skipped, and counted in
        ``dropped``); kept after later writes succeed."""
        self.journal_error: str | None = None
        """Why the journal could not be used (records not yet written are then lost if the
        process dies); None while it protects them, or when there is none to use."""
        self.dropped = 0
        self.dropped_after_close = 0
        self.lost_at_close = 0
        """Records neither written nor kept in a journal when the writer closed: lost."""
        self.replayed = 0
        """Records left in the journal by a process that died, written by this writer."""
        self._queue: deque[Queued] = deque()
        self._lock = threading.Lock()  # journal order == queue order
        self._journal: Journal | None = None
        self._held: list[Segment] = []  # of a journal that failed: discarded once written
        self._taken: list[Segment] = []  # the segments of the batch being written (for sync)
        self._gate = StoreGate(store)
        self._outage: type[StoreError] | None = None  # down or unusable, not refusing a record
        self.journal_dir = journal
        self.writer_id: str | None = None
        self._replay_done = threading.Event()
        self._cond = threading.Condition()
        self._written = 0
        self._closing = False
        self._since_checkpoint = 0
        self._stop = threading.Event()
        self._forked = False
        """In a child forked from the process that made this writer, until it first traces
        (see ``_after_fork``)."""
        self._start()
        _live_writers.add(self)
        atexit.register(_close_at_exit, weakref.ref(self))

    def _start(self) -> None:
        """Open a journal of this process's own and start the writer's thread."""
        if self.journal_dir is not None:
            try:
                self._journal = Journal(self.journal_dir, identity=store_identity(self.store.url))
            except OSError as exc:
                self._journal_lost(exc)
        self.writer_id = None if self._journal is None else self._journal.writer_id
        self._thread = threading.Thread(target=self._loop, name="tether-trace-writer", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        """In a child just forked from the process that made this writer (``multiprocessing``,
        a pre-forking server, Celery's workers, with a harness built before the fork). The
        writer's thread is not in the child, its queue holds the parent's records (the parent
        writes them), and its journal segments are the parent's files, mapped and locked by
        the parent: a child that wrote into them overwrote the parent's records, had its own
        deleted with them, and, truncating one at its exit, killed the parent with SIGBUS.
        The child lets all of it go (its copies only: the files and their locks stay the
        parent's) and starts a journal and a thread of its own when it first traces."""
        self._lock = threading.Lock()  # another thread may have held them at the fork
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._replay_done = threading.Event()
        self._queue = deque()
        journal, self._journal = self._journal, None
        parents = [*self._held, *self._taken, *(journal.detach() if journal else [])]
        self._held, self._taken = [], []
        for segment in parents:
            segment.forget()
        self._written = self._since_checkpoint = 0
        self.writer_id = None
        self.store.forked()
        self._forked = not self._closing

    def _start_after_fork(self) -> None:
        """The first record of a forked child: its own journal, connections and thread."""
        with self._lock:
            if not self._forked:
                return
            self._start()
            self._forked = False

    # -- producer side (hot path: one journal write, one deque append) -----------------

    def _put(self, op: int, record: Record) -> None:
        if self._forked:
            self._start_after_fork()
        if self._closing:
            # Tracing must never break a run: count the loss and say so, once.
            if not self.dropped_after_close:
                log.error(
                    "trace writer for %s is closed; records are dropped", self.store.display_url
                )
            self.dropped_after_close += 1
            self.dropped += 1
            return
        if self._journal is None:
            with self._lock:
                self._queue.append((op, record, None))
        else:
            # One serialization on the run path; the store writes the attributes' JSON again
            # on the writer's thread (the record is not changed once accepted).
            line = encode_line(op, record)
            with self._lock:
                if self._journal is not None:
                    try:
                        self._journal.append(line)
                    except (OSError, ValueError):  # disk full: try again, in a new segment
                        self._use_journal(lambda journal, fresh: journal.append(line, fresh=fresh))
                self._queue.append((op, record, None))
        if len(self._queue) >= self.max_batch:
            with self._cond:
                self._cond.notify()

    def _use_journal(self, call: Callable[[Journal, bool], T]) -> T | None:
        """Called under the lock: ``call(journal, fresh)``, and if the journal fails, once more
        with ``fresh`` (in a new segment). If that fails too, go on without the journal rather
        than break a run, and say so loudly, once."""
        assert self._journal is not None
        try:
            return call(self._journal, False)
        except (OSError, ValueError):
            pass
        try:
            return call(self._journal, True)
        except (OSError, ValueError) as exc:
            journal, self._journal = self._journal, None
            # Held, not released: their records are still to be written by this writer, and
            # another process must not take them for a dead writer's.
            self._held.extend(journal.detach())
            self._journal_lost(exc)
            return None

    def _journal_lost(self, exc: Exception) -> None:
        self.journal_error = str(exc) or type(exc).__name__
        log.error(
            "trace journal %s cannot be used (%s): records not yet written to the store are "
            "lost if this process dies",
            self.journal_dir,
            self.journal_error,
        )

    @property
    def journal_ok(self) -> bool:
        """False once the journal that should protect accepted records could not be used."""
        return self.journal_error is None

    def run_started(self, run: RunRecord) -> None:
        if self._forked:  # (before the writer's id is read: its own, not the parent's)
            self._start_after_fork()
        if self.writer_id is not None:
            run.attributes[semconv.TETHER_WRITER_ID] = self.writer_id
        self._put(RUN_START, run)

    def span(self, span: SpanRecord) -> None:
        self._put(SPAN, span)

    def event(self, event: EventRecord) -> None:
        self._put(EVENT, event)

    def checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._put(CHECKPOINT, checkpoint)

    def run_ended(self, run: RunRecord) -> None:
        self._put(RUN_END, run)

    def audit(self, entry: AuditRecord) -> None:
        """Accept an audit entry: journaled like the trace, chained when it is written."""
        self._put(AUDIT, entry)

    @property
    def pending(self) -> int:
        """Records accepted but not yet written."""
        return len(self._queue)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every record accepted so far is written (and, first, what a dead
        process left in the journal). False on timeout."""
        if self._forked:  # a forked child that has accepted nothing
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._replay_done.wait(timeout):  # a crash journal is written first
            return False
        with self._cond:
            # Items leave the queue only after they are written, so this covers all accepted.
            target = self._written + len(self._queue)
            self._cond.notify()
            while self._written < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 0.1))
        return True

    def sync(self, timeout: float | None = 1.0) -> bool:
        """Make every record accepted so far survive a power cut, not only the process dying
        (which the journal alone covers): for the rare record that must never be lost, such
        as a resumed run's note that it is about to run an approved call. The records are
        written and the store's commit synced (``tether.store.db.sync_committed``); if the
        store does not take them within ``timeout`` (it is down or busy), the journal
        segments holding them are synced instead: as durable, without waiting for the store.
        False when neither could be done (logged)."""
        if self.flush(timeout):
            try:
                sync_committed(self.store.url)
                return True
            except OSError as exc:
                log.warning("syncing %s to disk failed: %s", self.store.display_url, exc)
        with self._lock:
            journal = self._journal
            try:
                for segment in self._taken:
                    if segment.fd >= 0:  # (a discarded one's records are in the store)
                        segment.sync()
                if journal is not None:
                    journal.sync()
                    return True
            except (OSError, ValueError) as exc:
                log.warning("syncing trace journal %s to disk failed: %s", self.journal_dir, exc)
        return False

    @property
    def closed(self) -> bool:
        """Closed, or its thread has died (then ``writer_for`` replaces it)."""
        return self._closing or (not self._forked and not self._thread.is_alive())

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, then stop the thread. Returns False if records were still pending."""
        if self._forked:  # a forked child that has accepted nothing: no thread, no journal
            self._closing = True
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.25 if deadline is None else min(0.25, max(deadline - time.monotonic(), 0))
            ok = self.flush(step)
            if ok or (deadline is not None and time.monotonic() >= deadline):
                break
            if self.last_error is not None and self._journal is not None:
                break  # the store is failing and the records are safe in the journal
        self._closing = True
        self._stop.set()  # a thread waiting for the store gives up (its records are kept)
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout=1.0)
        with self._lock:
            journal, self._journal = self._journal, None
            held, self._held = self._held, []
        try:
            if journal is not None:
                journal.close()
            for segment in held:
                segment.release()
        except OSError as exc:
            log.error("closing trace journal %s failed: %s", self.journal_dir, exc)
        if not ok and self.pending:
            # One message: what is left, why, and where it is kept (if anywhere).
            why = self.last_error or f"{self.store.display_url} is slow to answer"
            if journal is not None:
                log.warning(
                    "%d trace records are not written yet (%s); they are kept in the trace "
                    "journal %s and written the next time Tether opens this store",
                    self.pending,
                    why,
                    self.journal_dir,
                )
            else:
                self.lost_at_close = self.pending
                log.error(
                    "%d trace records could not be written and are lost (%s)", self.pending, why
                )
        return ok

    # -- consumer side -----------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._replay_orphans()
        finally:
            self._replay_done.set()
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(self.flush_interval_s)
                if self._closing and not self._queue:
                    return
                idle = not self._queue
            if idle and self._since_checkpoint >= self.checkpoint_records:
                self._checkpoint()
            while self._queue:
                # Take everything queued so far, and the journal segment holding exactly it.
                spare = self._spare_segment()  # made before taking the lock: runs wait less
                with self._lock:
                    total = len(self._queue)
                    segments = self._taken = self._rotate_journal(spare)
                done = 0
                while done < total:
                    n = min(total - done, self.max_batch)
                    items = [self._queue[i] for i in range(n)]
                    try:
                        self._write_with_retry(items)
                    except _Stopped:  # closed while the store is down: keep them for later
                        for segment in segments:
                            segment.release()
                        return
                    done += n
                    if done == total:
                        for segment in segments:  # before flush() returns: all is written
                            discard(segment)
                    # Dequeue and count together: flush() never sees written items as neither.
                    with self._cond:
                        for _ in range(n):
                            self._queue.popleft()
                        self._written += n
                        self._cond.notify_all()
                    self._since_checkpoint += n

    def _checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file now, while the writer is
        idle. Left to SQLite, the commit that finds the log past 1000 pages does it, fsyncs
        included (tens of ms here), and everything queued meanwhile waits for that commit.
        PASSIVE: it never waits for readers or writers; what it cannot copy now is copied by
        a later one. A failure is harmless (SQLite still checkpoints by itself)."""
        self._since_checkpoint = 0
        if self._gate.path is None or self.last_error is not None:
            return  # not SQLite, or a store that is failing anyway
        try:
            with self.store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # never let housekeeping kill the writer thread
            log.debug("WAL checkpoint of %s failed: %s", self.store.display_url, exc)

    def _spare_segment(self) -> Segment | None:
        """A segment for the next rotation, made without the lock (creating one reserves a
        megabyte on disk: about a millisecond the run path would otherwise wait for)."""
        journal = self._journal
        if journal is None:
            return None
        try:
            return journal.spare()
        except OSError:  # the rotation makes one itself, and deals with the failure
            return None

    def _rotate_journal(self, spare: Segment | None = None) -> list[Segment]:
        """Called under the lock: the segments holding exactly what is queued now."""
        if self._journal is None:
            if spare is not None:
                Journal.drop_spare(spare)
        else:
            rotated = self._use_journal(
                lambda journal, fresh: journal.rotate(None if fresh else spare)
            )
            # A journal that failed has handed what it holds to ``_held``.
            self._held.extend(rotated or [])
        held, self._held = self._held, []
        return held

    def _replay_orphans(self) -> None:
        """Write what processes that died left in this store's journal, before anything else."""
        if self.journal_dir is None or self._journal is None:
            return
        try:
            self.replayed = replay_orphans(
                self.journal_dir,
                self.store,
                write=lambda items: self._write_with_retry(items, replay=True),
                retrying=self._retrying,
            )
        except _Stopped:  # closed first: what is left stays in the journal
            pass
        except Exception as exc:  # never let recovery kill the writer thread
            log.error("replaying the trace journal %s failed: %s", self.journal_dir, exc)

    def _retrying(self, call: Callable[[], T], *, split_after_timeouts: int | None = None) -> T:
        """``call()`` on the store, retried with backoff while the store is unreachable or
        locked, or cannot take records (the records stay queued and journaled meanwhile);
        other ``StoreError``s (a record rejected) propagate. With ``split_after_timeouts``,
        a call the database's statement timeout cuts off that many times in a row propagates
        too, so that a batch too big to write in the time allowed is written in pieces
        instead of being retried forever."""
        backoff = 0.05
        timeouts = 0
        while True:
            try:
                result = self._gate.call(call)
            except StoreError as exc:
                if not must_wait(exc):
                    raise
                timeouts = timeouts + 1 if timed_out(exc) else 0
                if split_after_timeouts is not None and timeouts >= split_after_timeouts:
                    log.warning(
                        "%s (%d times in a row); writing this batch in smaller pieces",
                        exc.message,
                        timeouts,
                    )
                    raise
                if self._outage is not type(exc):  # said once per outage (and kind of it)
                    self._log_outage(exc)
                self._outage = type(exc)
                self.last_error = exc.message
                if self._stop.wait(backoff):
                    raise _Stopped from exc
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if self._outage is not None:  # only after an outage: not after a rejected record
                log.warning("trace store %s is writable again", self.store.display_url)
                self._outage = None
            self.last_error = None
            return result

    def _log_outage(self, exc: StoreError) -> None:
        where = "in memory" if self._journal is None else f"in the trace journal {self.journal_dir}"
        if isinstance(exc, StoreUnavailable):
            log.error("%s; trace records are kept %s until it can be written", exc.message, where)
        else:
            log.warning("%s; retrying, trace records are kept %s", exc.message, where)

    def _write_with_retry(self, items: list[Queued], *, replay: bool = False) -> None:
        if len(items) == 1:
            self._write_one(items, replay=replay)
            return
        batch = to_batch(items)
        try:
            self._retrying(
                lambda: self.store.write(batch, skip_existing=replay),
                split_after_timeouts=_TIMEOUTS_BEFORE_SPLIT,
            )
        except StoreError:  # rejected outright, or too big for the statement timeout
            middle = len(items) // 2  # each half written, and halved again if refused too
            self._write_with_retry(items[:middle], replay=replay)
            self._write_with_retry(items[middle:], replay=replay)

    def _write_one(self, items: list[Queued], *, replay: bool = False) -> None:
        """One record. Rejected by the store on its own, it is skipped, and said; so is one
        that the statement timeout cuts off time after time while the tables answer at once
        (a record too big to write in the time allowed would hold up everything queued
        behind it for ever). One the store cannot take for now waits, like any record."""
        batch = to_batch(items)
        strikes = 0  # rounds of timeouts in a row, each followed by tables that answered
        while True:
            try:
                self._retrying(
                    lambda: self.store.write(batch, skip_existing=replay),
                    split_after_timeouts=_TIMEOUTS_BEFORE_SPLIT,
                )
                return
            except StoreError as exc:
                why = exc.message
                if timed_out(exc):
                    # Twice, so that a lock released just before the tables were read (the
                    # record was slow because of it) does not count against the record.
                    strikes = strikes + 1 if self._tables_answer() else 0
                    if strikes < 2:
                        continue  # the store is slow for everyone: this record waits too
                    why += (
                        ": writing this one record takes longer than the store's statement "
                        "timeout allows (TETHER_DB_STATEMENT_TIMEOUT_S), while its tables "
                        "answer at once"
                    )
            self.dropped += 1
            self.last_rejection = why
            log.error("trace record rejected by the store and skipped: %s", why)
            return

    def _tables_answer(self) -> bool:
        """Whether the trace tables can be read within the statement timeout now (they are
        not locked, the server is not overloaded), and, on PostgreSQL, the audit chain's head
        row can be locked at once."""
        from sqlalchemy import text

        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1 FROM tether_runs, tether_spans, tether_events LIMIT 0"))
                if conn.dialect.name == "postgresql":
                    # An audit entry is appended behind the chain's head row lock: held by a
                    # session cut off mid-append (a frozen host) until its server notices,
                    # it holds every append up, and no record is to blame.
                    conn.execute(
                        text("SELECT 1 FROM tether_audit_head WHERE id = 1 FOR UPDATE NOWAIT")
                    )
                    conn.rollback()
        except Exception:
            return False
        return True


_TIMEOUTS_BEFORE_SPLIT = 3
"""Statement timeouts in a row after which a batch is written in halves."""


class _Stopped(Exception):
    """The writer was closed while it waited for its store."""


_live_writers: weakref.WeakSet[BatchingWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_live_writers):
        writer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_exit(ref: weakref.ref[BatchingWriter]) -> None:
    writer = ref()
    if writer is not None and not writer._closing:
        writer.close(timeout=5.0)
