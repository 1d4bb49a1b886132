"""A reader (``tether traces list``) running while another process replays a dead writer's
journal into the same store says so on stderr: what it reads may be part of that replay."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

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
