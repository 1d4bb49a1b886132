"""SQLite's write-ahead log copied into the database file off the request path.

Left to SQLite, the commit that finds the log past 1000 pages copies it into the database
file itself, with two fsyncs: tens of milliseconds here, paid by whichever request commits
then (an OTLP batch of 512 spans writes about a quarter of that). ``WalCheckpointer`` does it
in a thread of its own after each commit instead (``PRAGMA wal_checkpoint(PASSIVE)``: it never
waits for readers or writers, and SQLite releases the GIL while it copies and syncs), so the
log rarely reaches the size at which a commit would do it. Nothing is less durable: a commit
is in the log either way, and a checkpoint only moves committed pages. A failed checkpoint is
harmless (SQLite still checkpoints by itself).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger("tether.store")

IDLE_EXIT_S = 5.0
"""The thread ends after this long without a commit (and starts again with the next one)."""


class WalCheckpointer:
    """Checkpoints a SQLite store's log after commits, one at a time, in a background thread
    (for any other database, ``poke`` does nothing)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """A commit happened: checkpoint soon (once, however many pokes come meanwhile)."""
        if not self._sqlite:
            return
        self._wake.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tether-wal-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(IDLE_EXIT_S):
                with self._lock:
                    if not self._wake.is_set():  # no poke slipped in: end; the next starts one
                        self._thread = None
                        return
            self._wake.clear()
            try:
                with self._engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # housekeeping: never let it raise
                log.debug("WAL checkpoint failed: %s", exc)
