"""The trace writer copies SQLite's write-ahead log into the database while it is idle, so
that no commit of a run's records has to do it (fsyncs included) on the way."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


STRACE = shutil.which("strace")

WRITE = """\
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_trace_writer_wal import _records
from tether.store import Store
from tether.trace import BatchingWriter

folder = Path(sys.argv[1])
store = Store(f"sqlite:///{folder / 't.db'}")
writer = BatchingWriter(store, journal=folder / "journal")
for _ in range(20):
    run, spans = _records(100)  # statements of 64 rows of ~2 KB: past SQLite's 64 KiB spill
    writer.run_started(run)
    for span in spans:
        writer.span(span)
    assert writer.flush()
writer.close()
store.close()
"""


@pytest.mark.skipif(
    STRACE is None and os.environ.get("CI") != "true",
    reason="strace is not installed (make test installs it where it can)",
)
def test_the_writer_keeps_sqlite_temporary_files_in_memory(tmp_path: Path) -> None:
    """A multi-row INSERT inside the writer's transaction keeps a statement journal (to undo
    that statement alone); past 64 KiB SQLite spills it into a temporary file on disk, a
    second copy of every page the batch changes. The store keeps temporary files in memory
    (``temp_store=MEMORY``): the writer's only file writes are the log's and the journal's."""
    if STRACE is None:
        pytest.fail("CI needs strace for this test: apt-get install strace")
    child = tmp_path / "child.py"
    child.write_text(WRITE)
    out = tmp_path / "strace.txt"
    argv = [sys.executable, str(child), str(tmp_path), str(Path(__file__).parent)]
    run = subprocess.run(
        [STRACE, "-f", "-qq", "-o", str(out), "-e", "trace=openat,open,creat", *argv],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    trace = out.read_text()
    assert "t.db-wal" in trace  # the scenario ran and wrote through the log
    temporary = [line for line in trace.splitlines() if "etilqs_" in line or "O_TMPFILE" in line]
    assert temporary == [], temporary[:3]
