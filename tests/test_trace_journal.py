"""The writer's crash journal: records accepted before the process dies reach the store."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import EventRecord, RunRecord, SpanRecord, Store, TraceBatch, canonical_url
from tether.trace import BatchingWriter, writer_for
from tether.trace.journal import EVENT, RUN_END, RUN_START, SPAN, Journal, encode, journal_dir


def _run(trace_id: str) -> RunRecord:
    return RunRecord(
        trace_id=trace_id,
        run_id=new_span_id(),
        agent_name="j",
        agent_version="v1",
        started_ns=now_ns(),
    )


def _span(run: RunRecord, i: int) -> SpanRecord:
    start = now_ns()
    return SpanRecord(
        trace_id=run.trace_id,
        run_id=run.run_id,
        span_id=new_span_id(),
        parent_id=None,
        name=f"step {i}",
        kind="tool",
        start_ns=start,
        end_ns=start + 1000,
        attributes={"i": i, "text": "café \ud800 ünïcode", "nested": {"list": [1, 2]}},
    )


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.journal"))


class _Lock:
    """An exclusive write lock on a SQLite file, from a separate raw connection."""

    def __init__(self, url: str) -> None:
        self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


CHILD = textwrap.dedent(
    """
    import os
    import sys
    import time

    from tether.core import new_span_id, now_ns
    from tether.store import EventRecord, RunRecord, SpanRecord
    from tether.trace import writer_for

    url, trace_id, run_id = sys.argv[1], sys.argv[2], sys.argv[3]
    count, mode = int(sys.argv[4]), sys.argv[5]
    writer = writer_for(url)
    writer.run_started(RunRecord(trace_id=trace_id, run_id=run_id, agent_name="doomed",
                                 agent_version="v1", started_ns=now_ns()))
    for i in range(count):
        start = now_ns()
        writer.span(SpanRecord(trace_id=trace_id, run_id=run_id, span_id=new_span_id(),
                               parent_id=None, name=f"step {i}", kind="tool", start_ns=start,
                               end_ns=start + 5,
                               attributes={"i": i, "text": "caf\\u00e9 \\ud800"}))
    writer.event(EventRecord(trace_id=trace_id, run_id=run_id, span_id=None,
                             name="tether.limit", time_ns=now_ns(),
                             attributes={"limit": "max_turns"}))
    print("accepted", flush=True)
    if mode == "exit":  # a clean exit while the database stays locked
        ok = writer.close(timeout=0.3)
        print("closed", ok, flush=True)
        sys.exit(0)
    time.sleep(3600)
    """
)


@pytest.mark.parametrize("mode", ["kill", "exit"])
def test_records_accepted_before_the_process_dies_reach_the_store(
    tmp_path: Path, sqlite_url: str, mode: str
) -> None:
    """The child accepts records while the database is locked, so none can be written, then
    is killed with SIGKILL (or exits cleanly with them unwritten). The next writer opened on
    the store writes every one of them, exactly once."""
    Store(sqlite_url).close()  # migrated before the lock
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    trace_id, run_id, count = new_trace_id(), new_span_id(), 250
    lock = _Lock(sqlite_url)
    try:
        child = subprocess.Popen(
            [sys.executable, str(script), sqlite_url, trace_id, run_id, str(count), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "accepted":
            child.kill()
            pytest.fail(f"child did not accept records: {line!r} {child.communicate()}")
        if mode == "kill":
            child.kill()
        out, err = child.communicate(timeout=30)
    finally:
        lock.release()
    if mode == "kill":
        assert child.returncode == -9
    else:
        assert child.returncode == 0, err
        assert "closed False" in out
        assert "kept in the trace journal" in err

    store = Store(sqlite_url)
    try:
        assert store.get_spans(run_id) == []  # the child never wrote a thing
        directory = journal_dir(Path(os.environ["TETHER_HOME"]), canonical_url(sqlite_url))
        left = _segments(directory)
        assert left, "the child left its journal"

        writer = writer_for(sqlite_url)
        assert writer.flush(timeout=30)
        assert writer.replayed == count + 2
        run = store.get_run(trace_id)
        assert run.agent_name == "doomed" and run.run_id == run_id
        # Its process is gone, so the run can never end: it is closed as failed, saying why.
        assert (run.status, run.outcome) == ("failed", "error")
        assert run.error and f"pid {child.pid}" in run.error and "exited" in run.error
        assert run.ended_ns is not None and run.ended_ns >= run.started_ns
        spans = store.get_spans(run_id)
        assert sorted(s.attributes["i"] for s in spans) == list(range(count))
        assert spans[0].attributes["text"].startswith("café")
        events = store.get_events(run_id)
        assert [e.name for e in events] == ["tether.limit"]
        assert not any(p.exists() for p in left), "replayed segments are deleted"
    finally:
        store.close()


def test_replay_skips_what_the_store_already_has(tmp_path: Path, store_url: str) -> None:
    """A process may die after its batch commits and before its segment is deleted: the
    replay must not write those records twice (both backends)."""
    store = Store(store_url)
    directory = tmp_path / "journal"
    run = _run(new_trace_id())
    spans = [_span(run, i) for i in range(10)]
    event = EventRecord(
        trace_id=run.trace_id, run_id=run.run_id, span_id=None, name="x", time_ns=now_ns()
    )
    # A "dead" writer's segment: journaled, never deleted (released as at process exit).
    journal = Journal(directory)
    journal.append(encode(RUN_START, run)[0])
    for span in spans:
        journal.append(encode(SPAN, span)[0])
    journal.append(encode(EVENT, event)[0])
    journal.close()
    # Half of it was committed before the "crash".
    store.write(TraceBatch(runs_started=[run], spans=spans[:5], events=[event]))
    try:
        writer = BatchingWriter(store, journal=directory)
        assert writer.flush(timeout=30)
        writer.close()
        assert sorted(s.attributes["i"] for s in store.get_spans(run.run_id)) == list(range(10))
        assert len(store.get_events(run.run_id)) == 1
        assert _segments(directory) == []
    finally:
        store.close()


def test_a_live_writers_segments_are_not_replayed_by_another(
    tmp_path: Path, sqlite_url: str
) -> None:
    store = Store(sqlite_url)
    directory = tmp_path / "journal"
    run = _run(new_trace_id())
    lock = _Lock(sqlite_url)
    first = BatchingWriter(store, journal=directory)
    try:
        first.run_started(run)
        for i in range(20):
            first.span(_span(run, i))
        second = BatchingWriter(store, journal=directory)
        assert second.flush(timeout=5)
        assert second.replayed == 0  # the first writer is alive and holds its segments
    finally:
        lock.release()
    assert first.flush(timeout=30)
    second.close()
    first.close()
    assert len(store.get_spans(run.run_id)) == 20
    assert _segments(directory) == []
    store.close()


def test_written_records_leave_no_journal_behind(tmp_path: Path, sqlite_url: str) -> None:
    store = Store(sqlite_url)
    directory = tmp_path / "journal"
    writer = BatchingWriter(store, journal=directory, max_batch=7)
    run = _run(new_trace_id())
    writer.run_started(run)
    for i in range(100):
        writer.span(_span(run, i))
    assert writer.flush(timeout=30)
    # Only the current (empty) segment is left while the writer runs; none once it is closed.
    live = _segments(directory)
    assert len(live) == 1 and live[0].read_bytes().count(b"\n") == 1  # the header alone
    assert stat.S_IMODE(live[0].stat().st_mode) == 0o600
    writer.close()
    assert _segments(directory) == []
    assert len(store.get_spans(run.run_id)) == 100
    store.close()


def test_a_torn_last_line_is_skipped_and_the_rest_replayed(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(sqlite_url)
    directory = tmp_path / "journal"
    run = _run(new_trace_id())
    journal = Journal(directory)
    journal.append(encode(RUN_START, run)[0])
    journal.append(encode(SPAN, _span(run, 0))[0])
    journal.append(encode(SPAN, _span(run, 1))[0][:40])  # the crash cut this write short
    journal.close()
    with caplog.at_level(logging.WARNING, logger="tether.trace"):
        writer = BatchingWriter(store, journal=directory)
        assert writer.flush(timeout=30)
        writer.close()
    assert [s.attributes["i"] for s in store.get_spans(run.run_id)] == [0]
    assert "skipping unreadable trace journal line" in caplog.text
    store.close()


def test_a_line_whose_values_are_not_of_their_types_is_skipped(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A line damaged on disk that is still JSON (a number turned to text, NaN): SQLite kept
    the text in the integer column as given, and every later ``tether traces list`` failed
    with a TypeError, for good."""
    store = Store(sqlite_url)
    directory = tmp_path / "journal"
    good, bad, nan = _run(new_trace_id()), _run(new_trace_id()), _run(new_trace_id())
    journal = Journal(directory)
    journal.append(encode(RUN_START, good)[0])
    bad.started_ns = "1700000000000000000"  # type: ignore[assignment]
    journal.append(encode(RUN_START, bad)[0])
    journal.append(encode(RUN_START, nan)[0].replace(b"0.0,", b"NaN,", 1))
    journal.append(encode(SPAN, _span(good, 0))[0].replace(b'"tool",', b"true,", 1))
    journal.close()
    with caplog.at_level(logging.WARNING, logger="tether.trace"):
        writer = BatchingWriter(store, journal=directory)
        assert writer.flush(timeout=30)
        writer.close()
    assert [r.run_id for r in store.list_runs()] == [good.run_id]
    assert store.get_spans(good.run_id) == []
    assert caplog.text.count("skipping unreadable trace journal line") == 3
    store.close()


def test_an_unusable_journal_folder_does_not_stop_tracing(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the journal folder should be")
    store = Store(sqlite_url)
    run = _run(new_trace_id())
    with caplog.at_level(logging.ERROR, logger="tether.trace"):
        writer = BatchingWriter(store, journal=blocker / "journal")
    writer.run_started(run)
    writer.span(_span(run, 0))
    assert writer.flush(timeout=30)
    writer.close()
    assert len(store.get_spans(run.run_id)) == 1
    assert "cannot be used" in caplog.text
    assert not writer.journal_ok and writer.journal_error
    store.close()


def test_a_journal_lost_mid_run_is_said_once_and_exposed(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal folder disappears under a live writer: it cannot open a new segment (not
    even on a second try), says so once, exposes it, and still writes every record."""
    import shutil

    store = Store(sqlite_url)
    directory = tmp_path / "journal"
    writer = BatchingWriter(store, journal=directory)
    run = _run(new_trace_id())
    writer.run_started(run)
    assert writer.flush(timeout=30)
    assert writer.journal_ok
    shutil.rmtree(directory)
    with caplog.at_level(logging.ERROR, logger="tether.trace"):
        for i in range(50):
            writer.span(_span(run, i))
            if i % 10 == 0:
                assert writer.flush(timeout=30)
        assert writer.flush(timeout=30)
    writer.close()
    assert not writer.journal_ok and "No such file" in (writer.journal_error or "")
    assert caplog.text.count("cannot be used") == 1
    assert len(store.get_spans(run.run_id)) == 50 and writer.dropped == 0
    store.close()


def test_journal_names_do_not_reveal_the_database_url(tmp_path: Path) -> None:
    url = "postgresql+psycopg://tether:s3cret@db.internal:5432/traces"
    directory = journal_dir(tmp_path, url)
    assert "s3cret" not in str(directory) and "db.internal" not in str(directory)
    assert directory != journal_dir(tmp_path, url.replace("traces", "other"))


def test_writer_for_an_in_memory_store_has_no_journal() -> None:
    assert writer_for("sqlite:///:memory:").journal_dir is None
    time.sleep(0)  # nothing else to wait for: the writer is closed by the autouse fixture


def test_only_the_dead_writers_running_runs_are_closed(tmp_path: Path, sqlite_url: str) -> None:
    """Runs of a live writer, and runs of the dead one that ended or paused, stay as they are."""
    store = Store(sqlite_url)
    directory = tmp_path / "journal"
    live = BatchingWriter(store, journal=directory)
    dead = Journal(directory)  # a writer whose process "died": its segments are released
    ids = {name: new_trace_id() for name in ("live", "dead_running", "dead_ended", "dead_paused")}
    live.run_started(_run(ids["live"]))
    assert live.flush(timeout=30)
    for name in ("dead_running", "dead_ended", "dead_paused"):
        run = _run(ids[name])
        if name == "dead_running":  # started after the file's (coarse) modification time
            run.started_ns += 5_000_000_000
        run.attributes["tether.writer.id"] = dead.writer_id
        dead.append(encode(RUN_START, run)[0])
        if name != "dead_running":
            run.status = "completed" if name == "dead_ended" else "paused"
            run.ended_ns = now_ns()
            dead.append(encode(RUN_END, run)[0])
    dead.close()

    recovering = BatchingWriter(store, journal=directory)
    assert recovering.flush(timeout=30)
    assert store.get_run(ids["live"]).status == "running"
    closed = store.get_run(ids["dead_running"])
    assert closed.status == "failed"
    assert closed.ended_ns is not None and closed.ended_ns >= closed.started_ns
    assert store.get_run(ids["dead_ended"]).status == "completed"
    assert store.get_run(ids["dead_paused"]).status == "paused"
    recovering.close()
    live.close()
    store.close()


def test_the_cli_shows_a_trace_a_killed_process_left_in_the_journal(sqlite_url: str) -> None:
    from click.testing import CliRunner

    from tether.cli import cli

    Store(sqlite_url).close()
    dead = Journal(journal_dir(Path(os.environ["TETHER_HOME"]), canonical_url(sqlite_url)))
    run = _run(new_trace_id())
    run.attributes["tether.writer.id"] = dead.writer_id
    dead.append(encode(RUN_START, run)[0])
    dead.append(encode(SPAN, _span(run, 7))[0])
    dead.close()
    result = CliRunner().invoke(
        cli, ["--database-url", sqlite_url, "traces", "show", run.trace_id, "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["run"]["status"] == "failed"
    assert [s["attributes"]["i"] for s in shown["spans"]] == [7]


def test_a_run_goes_on_while_the_store_is_down_and_its_trace_arrives_later(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL unreachable when `tether run` starts: the run still answers, its trace
    waits in the journal, and the next Tether process that reaches the store writes it."""
    from fakes.tcp_proxy import TcpProxy, free_port

    Store(pg_url).close()  # the schema exists; only the network path to it is missing
    port = free_port()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    assert url != pg_url
    (tmp_path / "s.yaml").write_text('steps: [{text: "hello {input}"}]\n')
    spec = tmp_path / "a.yaml"
    spec.write_text("name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: s.yaml}\n")

    # A process of its own, which exits (with the store still down) before the store is back.
    args = ["--database-url", url, "run", str(spec), "-i", "hi", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["outcome"] == "final_answer" and answer["output"] == "hello hi"
    assert "warning:" in done.stderr and "journal" in done.stderr

    proxy = TcpProxy(port, ("127.0.0.1", 5432))
    try:
        writer = writer_for(url)
        assert writer.flush(timeout=30)
        assert writer.replayed >= 4
        store = Store(url)
        run = store.get_run(answer["trace_id"])
        assert (run.status, run.output) == ("completed", "hello hi")
        assert {s.kind for s in store.get_spans(run.run_id)} == {"agent", "model"}
        store.close()
    finally:
        from tether.trace import close_writers

        close_writers()
        proxy.close()
