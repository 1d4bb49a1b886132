"""Processes replaying one dead writer's journal at the same time: its segments are replayed by
one process, in order, so a later segment (spans, the run's end) is never written before an
earlier one (the run's start) and rejected for lack of its run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tether.store import Store, store_identity
from tether.trace import writer_for
from tether.trace.recorder import journal_for

# A writer that journals a run's start in one segment and the rest of the run in the next (as
# a writer does when its thread rotates between the two), then dies without writing any.
DEAD_WRITER = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    from tether.core import new_span_id, new_trace_id, now_ns
    from tether.store import RunRecord, SpanRecord
    from tether.trace.journal import RUN_END, RUN_START, SPAN, Journal, encode

    directory, identity = Path(sys.argv[1]), sys.argv[2]
    journal = Journal(directory, identity=identity)
    trace_id, run_id, start = new_trace_id(), new_span_id(), now_ns()
    run = RunRecord(trace_id, "split", "v1", start, input="go", run_id=run_id)
    journal.append(encode(RUN_START, run)[0])
    journal.rotate()  # the run's start in the first segment, the rest in the second
    for name in ("agent", "model"):
        span = SpanRecord(
            trace_id, new_span_id(), run_id, name, "tool", start, now_ns(), run_id=run_id
        )
        journal.append(encode(SPAN, span)[0])
    run.status, run.outcome, run.output, run.ended_ns = "completed", "final_answer", "ok", now_ns()
    journal.append(encode(RUN_END, run)[0])
    print(run_id, journal.writer_id, flush=True)
    os._exit(0)  # no close: both segments stay, unlocked, as after kill -9
    """
)

# Another process in the middle of replaying that journal: it holds the first segment.
REPLAYER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from tether.trace.journal import orphaned_segments

    for segment, items in orphaned_segments(Path(sys.argv[1])):
        print(segment.path.name, flush=True)
        sys.stdin.readline()  # "crashes" (exits without writing) when told to
        break
    """
)


def dead_writers_journal(tmp_path: Path, store_url: str) -> tuple[Path, str, str]:
    """The journal folder of ``store_url`` holding ``DEAD_WRITER``'s two segments: the folder,
    the run's id and the dead writer's id."""
    directory = journal_for(store_url)
    assert directory is not None
    dead = tmp_path / "dead.py"
    dead.write_text(DEAD_WRITER)
    made = subprocess.run(
        [sys.executable, str(dead), str(directory), store_identity(store_url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id, dead_writer = made.stdout.split()
    return directory, run_id, dead_writer


def start_script(tmp_path: Path, text: str, *args: str) -> subprocess.Popen[str]:
    """``text`` run as a Python script in a child process, its stdin, stdout and stderr piped."""
    script = tmp_path / "replayer.py"
    script.write_text(text)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_dead_writers_segments_are_not_split_between_replaying_processes(
    tmp_path: Path, store_url: str
) -> None:
    directory, run_id, dead_writer = dead_writers_journal(tmp_path, store_url)
    assert len(sorted(directory.glob("*.journal"))) == 2

    replayer = start_script(tmp_path, REPLAYER, str(directory))
    try:
        assert replayer.stdout is not None and replayer.stdin is not None
        taken = replayer.stdout.readline().strip()
        assert taken.endswith("00000001.journal"), replayer.communicate()

        # This process opens the store meanwhile: it must not write the second segment alone.
        writer = writer_for(store_url)
        assert writer.flush(timeout=30)
        assert writer.dropped == 0, writer.last_error
        writer.close()
    finally:
        replayer.stdin.write("\n")  # type: ignore[union-attr]
        replayer.communicate(timeout=30)

    # The other process went away without writing: the next writer replays the whole journal.
    writer = writer_for(store_url)
    assert writer.flush(timeout=30)
    assert writer.dropped == 0, writer.last_error
    store = Store(store_url)
    run = store.get_run(run_id)
    assert (run.status, run.outcome) == ("completed", "final_answer")
    assert sorted(s.name for s in store.get_spans(run_id)) == ["agent", "model"]
    assert not list(directory.glob(f"{dead_writer}-*"))


# A process replaying a dead writer's journal that dies itself once the records are written,
# as it asks the store which of that writer's runs are still running.
DYING_REPLAYER = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    from tether.store import Store
    from tether.trace.recovery import replay_orphans
    from tether.trace.recovery import to_batch

    store = Store(sys.argv[2])


    def write(items):
        store.write(to_batch(items), skip_existing=True)


    def die(call):
        print("dying", flush=True)
        os._exit(9)


    replay_orphans(Path(sys.argv[1]), store, write=write, retrying=die)
    """
)

# A writer that journals the start of a run and one span, then dies.
DEAD_MID_RUN = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    from tether.core import new_span_id, new_trace_id, now_ns
    from tether.store import RunRecord, SpanRecord
    from tether.trace import semconv
    from tether.trace.journal import RUN_START, SPAN, Journal, encode

    journal = Journal(Path(sys.argv[1]), identity=sys.argv[2])
    trace_id, run_id, start = new_trace_id(), new_span_id(), now_ns()
    run = RunRecord(trace_id, "mid", "v1", start, input="go", run_id=run_id,
                    attributes={semconv.TETHER_WRITER_ID: journal.writer_id})
    journal.append(encode(RUN_START, run)[0])
    span = SpanRecord(trace_id, new_span_id(), run_id, "tool", "tool", start, now_ns(),
                      run_id=run_id)
    journal.append(encode(SPAN, span)[0])
    print(run_id, flush=True)
    os._exit(0)
    """
)


def test_a_run_is_not_left_running_when_its_replayer_dies_before_closing_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    directory = journal_for(sqlite_url)
    assert directory is not None
    scripts = {"dead": DEAD_MID_RUN, "replayer": DYING_REPLAYER}
    for name, text in scripts.items():
        (tmp_path / f"{name}.py").write_text(text)
    made = subprocess.run(
        [sys.executable, str(tmp_path / "dead.py"), str(directory), store_identity(sqlite_url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = made.stdout.strip()
    Store(sqlite_url)  # created and migrated
    replayer = subprocess.run(
        [sys.executable, str(tmp_path / "replayer.py"), str(directory), sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (replayer.returncode, replayer.stdout.strip()) == (9, "dying"), replayer.stderr
    assert Store(sqlite_url).get_run(run_id).status == "running"  # written, not closed yet

    # The next writer opened on the store closes the run the dead writer left running.
    writer = writer_for(sqlite_url)
    assert writer.flush(timeout=30)
    run = Store(sqlite_url).get_run(run_id)
    assert (run.status, run.outcome) == ("failed", "error")
    assert run.tool_calls == 1
