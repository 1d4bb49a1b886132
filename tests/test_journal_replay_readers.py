"""A reader (``tether traces list``) running while another process replays a dead writer's
journal into the same store says so on stderr: what it reads may be part of that replay."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakes.cli import run_cli
from test_probe_journal_replay import dead_writers_journal, start_script

# A process replaying that journal that stops after writing its first segment (the run's
# start, without its spans and end) until told to go on.
PAUSED_REPLAYER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from tether.store import Store
    from tether.trace.recovery import replay_orphans, to_batch

    store = Store(sys.argv[2])
    written = 0


    def write(items):
        global written
        store.write(to_batch(items), skip_existing=True)
        written += 1
        if written == 1:
            print("wrote the first segment", flush=True)
            sys.stdin.readline()


    replay_orphans(Path(sys.argv[1]), store, write=write, retrying=lambda call: call())
    print("done", flush=True)
    """
)


def test_traces_list_warns_while_another_process_replays_a_journal(
    tmp_path: Path, store_url: str
) -> None:
    """Before: the list showed the run half-replayed (running, no spans) and said nothing."""
    directory, run_id, _ = dead_writers_journal(tmp_path, store_url)
    replayer = start_script(tmp_path, PAUSED_REPLAYER, str(directory), store_url)
    try:
        assert replayer.stdout is not None and replayer.stdin is not None
        said = replayer.stdout.readline()
        assert said.startswith("wrote the first segment"), replayer.communicate()

        listed = run_cli("--database-url", store_url, "traces", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [run] = json.loads(listed.stdout)["runs"]
        assert run["run_id"] == run_id and run["status"] == "running"  # half replayed
        assert "replaying" in listed.stderr and str(replayer.pid) in listed.stderr, listed.stderr
        assert "incomplete" in listed.stderr
    finally:
        replayer.stdin.write("\n")  # type: ignore[union-attr]
        out, err = replayer.communicate(timeout=60)
    assert "done" in out, err

    after = run_cli("--database-url", store_url, "traces", "list", "--json")
    assert after.returncode == 0 and "replaying" not in after.stderr, after.stderr
    [run] = json.loads(after.stdout)["runs"]
    assert run["status"] == "completed"
    assert not list(directory.glob("*.replaying"))  # the replayer removed its mark


def _runs_with_long_outputs(store_url: str, runs: int) -> None:
    """``runs`` finished runs whose outputs make a listing far longer than a pipe holds."""
    import asyncio

    from tether import Harness, Outcome
    from tether.trace import writer_for

    async def make() -> None:
        harness = Harness(trace=store_url)
        for n in range(runs):
            async with harness.open_run(f"question {n}") as run:
                run.end(Outcome.FINAL_ANSWER, output=f"answer {n} " + "x" * 20_000)

    asyncio.run(make())
    assert writer_for(store_url).flush(timeout=60)


@pytest.mark.parametrize("replay_over", [False, True])
def test_traces_list_warns_of_a_replay_that_began_during_its_read(
    tmp_path: Path, store_url: str, replay_over: bool
) -> None:
    """Before: the check ran once, before reading; a replay that began while a long listing
    was streamed (still under way at its end, or over already) was not mentioned. The
    listing is held mid-stream by not reading its pipe while the replay begins."""
    _runs_with_long_outputs(store_url, 20)  # about 400 KB of JSON: the pipe holds 64 KB
    listing = subprocess.Popen(
        [sys.executable, "-m", "tether", "--database-url", store_url, "traces", "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None
    head = listing.stdout.read(4096)  # the store is open and the runs are being written
    assert head.startswith(b"{"), head

    directory, _run_id, _ = dead_writers_journal(tmp_path, store_url)
    replayer = start_script(tmp_path, PAUSED_REPLAYER, str(directory), store_url)
    released = False
    try:
        assert replayer.stdout is not None and replayer.stdin is not None
        said = replayer.stdout.readline()
        assert said.startswith("wrote the first segment"), replayer.communicate()
        if replay_over:
            replayer.stdin.write("\n")
            replayer.stdin.flush()
            released = True
            assert replayer.stdout.readline().startswith("done"), replayer.communicate()
        rest, err = listing.communicate(timeout=120)
    finally:
        if not released:
            replayer.stdin.write("\n")  # type: ignore[union-attr]
        replayer.communicate(timeout=60)
    assert listing.returncode == 0, err
    assert len(json.loads(head + rest)["runs"]) == 20
    stderr = err.decode()
    assert "while this command read it" in stderr, stderr
    assert (str(replayer.pid) in stderr) is not replay_over, stderr

    after = run_cli("--database-url", store_url, "traces", "list", "--json")
    assert after.returncode == 0 and "replay" not in after.stderr, after.stderr
