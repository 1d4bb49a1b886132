"""Processes racing on one store's journal: a live writer's segment is never taken by another
process (which would replay and delete it, and record the live writer's runs as failed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tether.core import new_trace_id
from tether.store import Store
from tether.trace import writer_for

# Opens a new segment on nearly every append (tiny segments), as fast as it can, a fixed number
# of times (not for a fixed time: on a loaded machine it then takes longer, not races less).
APPENDER = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    from tether.core import new_span_id, now_ns
    from tether.store import SpanRecord
    from tether.trace.journal import SPAN, Journal, encode

    directory, count = Path(sys.argv[1]), int(sys.argv[2])
    journal = Journal(directory, segment_bytes=64)
    print(journal.writer_id, flush=True)
    sys.stdin.readline()  # the racers are running
    errors, appended = [], 0
    while appended < count:
        start = now_ns()
        span = SpanRecord("t" * 32, new_span_id(), None, "s", "tool", start, start, run_id="r" * 16)
        line = encode(SPAN, span)
        try:
            journal.append(line[0])
        except OSError as exc:
            errors.append(str(exc))
        appended += 1
        if appended % 50 == 0:
            # As the writer does once a batch is written (half the time with a spare segment
            # made beforehand, half making one under the rotation).
            spare = journal.spare() if appended % 100 == 0 else None
            for segment in journal.rotate(spare):
                segment.discard()
    print(json.dumps({"appended": appended, "errors": errors[:5]}), flush=True)
    sys.stdin.readline()  # alive (its segments locked) until the racers have stopped
    """
)

# What a process opening a writer on the store does first: take the dead writers' segments.
RACER = textwrap.dedent(
    """
    import collections
    import json
    import sys
    import time
    from pathlib import Path

    from tether.trace.journal import orphaned_segments, writer_of

    directory, stop = Path(sys.argv[1]), Path(sys.argv[2])
    print("ready", flush=True)
    taken = collections.Counter()
    while not stop.exists():
        for segment, _items in orphaned_segments(directory):
            taken[writer_of(segment)] += 1
            segment.discard()
    print(json.dumps(taken), flush=True)
    """
)


def _start(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_segment_is_never_taken_while_its_writer_lives(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    (tmp_path / "appender.py").write_text(APPENDER)
    (tmp_path / "racer.py").write_text(RACER)
    appender = _start(tmp_path / "appender.py", str(directory), "3000")
    stop = tmp_path / "stop"
    racers = [_start(tmp_path / "racer.py", str(directory), str(stop)) for _ in range(2)]
    try:
        assert appender.stdout is not None and appender.stdin is not None
        writer_id = appender.stdout.readline().strip()
        assert writer_id, appender.communicate(timeout=30)
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline().strip() == "ready", racer.communicate(timeout=30)
        appender.stdin.write("go\n")
        appender.stdin.flush()
        report = json.loads(appender.stdout.readline())
        stop.touch()
        taken: dict[str, int] = {}
        for racer in racers:
            racer_out, racer_err = racer.communicate(timeout=120)
            assert racer.returncode == 0, racer_err
            for writer, count in json.loads(racer_out.strip().splitlines()[-1]).items():
                taken[writer] = taken.get(writer, 0) + count
        _, err = appender.communicate("exit\n", timeout=60)
        assert appender.returncode == 0, err
    finally:
        for process in (appender, *racers):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert report["appended"] == 3000  # it did race: many segments were opened
    assert report["errors"] == [], "the live writer lost its segment to another process"
    assert taken.get(writer_id, 0) == 0, "another process took a live writer's segment"


WRITER_OPENER = textwrap.dedent(
    """
    import sys
    import time

    from tether.trace import close_writers, writer_for

    url, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        writer_for(url).flush(30)
        close_writers()
    """
)


def test_processes_opening_writers_never_fail_a_live_writers_run(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The same race end to end: processes open (and close) writers on the store in a loop
    while this one records a run; the run is never recorded as failed, nor its journal lost."""
    from tether.core import new_span_id, now_ns
    from tether.store import RunRecord, SpanRecord

    Store(sqlite_url).close()
    (tmp_path / "opener.py").write_text(WRITER_OPENER)
    openers = [_start(tmp_path / "opener.py", sqlite_url, "4") for _ in range(2)]
    writer = writer_for(sqlite_url)
    trace_id = new_trace_id()
    run_id = new_span_id()
    writer.run_started(RunRecord(trace_id, "live", "v1", now_ns(), run_id=run_id))
    spans = 0
    try:
        while any(p.poll() is None for p in openers):
            start = now_ns()
            writer.span(
                SpanRecord(trace_id, new_span_id(), None, "s", "tool", start, start, run_id=run_id)
            )
            spans += 1
            if spans % 10 == 0:
                assert writer.flush(timeout=30)
                assert writer.journal_ok, writer.journal_error
        for opener in openers:
            _, err = opener.communicate(timeout=60)
            assert opener.returncode == 0, err
            assert "recorded as failed" not in err
    finally:
        for opener in openers:
            if opener.poll() is None:
                opener.kill()
                opener.communicate()
    assert writer.flush(timeout=30)
    assert writer.journal_ok
    run = writer.store.get_run(trace_id)
    assert run.status == "running"  # its process is alive: nobody else may close it
    assert len(writer.store.get_spans(run_id)) == spans
