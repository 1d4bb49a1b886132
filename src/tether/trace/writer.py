"""Batching trace writer: the run path appends to a queue; one thread writes batches.

Accepted records are written in order. A locked or unreachable database is retried with
backoff and nothing is dropped; a record the database rejects outright is isolated, logged,
and skipped so it cannot block the records behind it.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from tether.core import StoreError
from tether.store import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    Store,
    TraceBatch,
)

log = logging.getLogger("tether.trace")

_RUN_START, _SPAN, _EVENT, _CHECKPOINT, _RUN_END = range(5)
_Item = tuple[int, RunRecord | SpanRecord | EventRecord | CheckpointRecord]


class TraceSink(Protocol):
    """Where the runtime sends trace records."""

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


def _is_transient(exc: StoreError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, OperationalError | DisconnectionError):
        return True
    return isinstance(cause, DBAPIError) and bool(cause.connection_invalidated)


def _to_batch(items: list[_Item]) -> TraceBatch:
    batch = TraceBatch()
    lists: tuple[list[Any], ...] = (
        batch.runs_started,
        batch.spans,
        batch.events,
        batch.checkpoints,
        batch.runs_ended,
    )
    for op, record in items:
        lists[op].append(record)
    return batch


class BatchingWriter:
    """Writes trace records to a ``Store`` from a background thread.

    ``flush()`` waits until everything accepted before the call is in the database.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 1000,
        flush_interval_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.last_error: str | None = None
        self.dropped = 0
        self.dropped_after_close = 0
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._written = 0
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="tether-trace-writer", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- producer side (hot path: one deque append) ----------------------------------

    def _put(
        self, op: int, record: RunRecord | SpanRecord | EventRecord | CheckpointRecord
    ) -> None:
        if self._closing:
            # Tracing must never break a run: count the loss and say so, once.
            if not self.dropped_after_close:
                log.error(
                    "trace writer for %s is closed; records are dropped", self.store.display_url
                )
            self.dropped_after_close += 1
            self.dropped += 1
            return
        self._queue.append((op, record))
        if len(self._queue) >= self.max_batch:
            with self._cond:
                self._cond.notify()

    def run_started(self, run: RunRecord) -> None:
        self._put(_RUN_START, run)

    def span(self, span: SpanRecord) -> None:
        self._put(_SPAN, span)

    def event(self, event: EventRecord) -> None:
        self._put(_EVENT, event)

    def checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._put(_CHECKPOINT, checkpoint)

    def run_ended(self, run: RunRecord) -> None:
        self._put(_RUN_END, run)

    @property
    def pending(self) -> int:
        """Records accepted but not yet written."""
        return len(self._queue)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every record accepted so far is written. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
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

    @property
    def closed(self) -> bool:
        """Closed, or its thread has died (then ``writer_for`` replaces it)."""
        return self._closing or not self._thread.is_alive()

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, then stop the thread. Returns False if records were still pending."""
        ok = self.flush(timeout)
        if not ok:
            log.error(
                "%d trace records could not be written to %s before closing (last error: %s)",
                self.pending,
                self.store.display_url,
                self.last_error,
            )
        self._closing = True
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout=1.0)
        return ok

    # -- consumer side -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(self.flush_interval_s)
                if self._closing and not self._queue:
                    return
            while self._queue:
                n = min(len(self._queue), self.max_batch)
                items = [self._queue[i] for i in range(n)]
                self._write_with_retry(items)
                # Dequeue and count together, so flush() never sees written items as neither.
                with self._cond:
                    for _ in range(n):
                        self._queue.popleft()
                    self._written += n
                    self._cond.notify_all()

    def _write_with_retry(self, items: list[_Item]) -> None:
        backoff = 0.05
        while True:
            try:
                self.store.write(_to_batch(items))
                if self.last_error is not None:
                    log.warning("trace store %s is writable again", self.store.display_url)
                    self.last_error = None
                return
            except StoreError as exc:
                if not _is_transient(exc):
                    self._write_one_by_one(items)
                    return
                if self.last_error is None:
                    log.warning(
                        "%s; retrying, records are kept in memory",
                        exc.message,
                    )
                self.last_error = str(exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _write_one_by_one(self, items: list[_Item]) -> None:
        for item in items:
            try:
                self.store.write(_to_batch([item]))
            except StoreError as exc:
                if _is_transient(exc):
                    self._write_with_retry([item])
                    continue
                self.dropped += 1
                self.last_error = str(exc)
                log.error("trace record rejected by the store and skipped: %s", exc.message)


def _close_at_exit(ref: weakref.ref[BatchingWriter]) -> None:
    writer = ref()
    if writer is not None and not writer._closing:
        writer.close(timeout=5.0)
