"""The trace writer copies SQLite's write-ahead log into the database while it is idle, so
that no commit of a run's records has to do it (fsyncs included) on the way."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunRecord, SpanRecord, Store
from tether.trace import BatchingWriter


def _records(n: int) -> tuple[RunRecord, list[SpanRecord]]:
    run = RunRecord(
        trace_id=new_trace_id(),
        run_id=new_span_id(),
        agent_name="wal",
        agent_version="v1",
        started_ns=now_ns(),
    )
    spans = [
        SpanRecord(
            trace_id=run.trace_id,
            run_id=run.run_id,
            span_id=new_span_id(),
            parent_id=run.run_id,
            name=f"step {i}",
            kind="tool",
            start_ns=now_ns(),
            end_ns=now_ns(),
            attributes={"payload": "x" * 2000},
        )
        for i in range(n)
    ]
    return run, spans


def _wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_an_idle_writer_checkpoints_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store(f"sqlite:///{db}")
    writer = BatchingWriter(store, journal=tmp_path / "journal", checkpoint_records=100)
    try:
        assert writer.flush()
        size_before = db.stat().st_size
        run, spans = _records(300)  # ~600 KB: far below SQLite's own 1000-page checkpoint
        writer.run_started(run)
        for span in spans:
            writer.span(span)
        assert writer.flush()
        # Written, into the log; the database file grows once the log is copied into it.
        assert _wait_for(lambda: db.stat().st_size > size_before + 300 * 2000)
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("SELECT count(*) FROM tether_spans").fetchone() == (300,)
        finally:
            conn.close()
    finally:
        writer.close()
        store.close()
