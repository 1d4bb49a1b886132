"""A process that forks after building its harness (``multiprocessing`` with fork, a
pre-forking server with the app preloaded, Celery's prefork workers): each child traces into
the store through a journal and a thread of its own, and never into the parent's.

Before, the child used the parent's writer as the fork left it: no thread (its records were
never written), the parent's memory-mapped journal segment (the child's records overwrote
the parent's and were deleted with the parent's), and at the child's exit that segment was
truncated under the parent, whose next record then killed it with SIGBUS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakes.cli import run_cli
from test_probe_journal_replay import start_script

FORKING_APP = textwrap.dedent(
    """
    import asyncio, os, signal, sys

    from tether import Harness, Outcome

    url = sys.argv[1]
    harness = Harness(trace=url)  # built before the fork, as a preloaded app does


    async def one(tag, *, die=False):
        async with harness.open_run(tag + " " + "x" * 20_000) as run:
            await run.input()
            if die:  # killed mid-run: its records are in its journal only
                os.kill(os.getpid(), signal.SIGKILL)
            run.end(Outcome.FINAL_ANSWER, output=tag)


    if sys.argv[2] == "warm":  # the parent's writer has written (rotated its journal) before
        asyncio.run(one("parent before the fork"))
    children = []
    for tag in ("child 0", "child 1", "child killed"):
        pid = os.fork()
        if pid == 0:
            asyncio.run(one(tag, die=tag == "child killed"))
            sys.exit(0)  # a normal exit: atexit closes the writer
        children.append(pid)
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    print(json.dumps(statuses), flush=True)
    asyncio.run(one("parent after the children"))  # 20 KB: past the first page of a segment
    """
).replace("import asyncio, os", "import asyncio, json, os")


@pytest.mark.parametrize("warm", [False, True])
def test_runs_of_forked_children_reach_the_store_and_the_parent_lives(
    tmp_path: Path, store_url: str, warm: bool
) -> None:
    script = tmp_path / "forking_app.py"
    script.write_text(FORKING_APP)
    app = subprocess.run(
        [sys.executable, str(script), store_url, "warm" if warm else "cold"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert app.returncode == 0, (app.returncode, app.stderr)  # before, cold: -7 (SIGBUS)
    assert json.loads(app.stdout) == [0, 0, -9], app.stdout

    listed = run_cli("--database-url", store_url, "traces", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = {r["input"].split(" x")[0]: r for r in json.loads(listed.stdout)["runs"]}
    expected = {
        "child 0": ("completed", "final_answer"),
        "child 1": ("completed", "final_answer"),
        "parent after the children": ("completed", "final_answer"),
        "child killed": ("failed", "error"),  # replayed from its own journal, then closed
    }
    if warm:
        expected["parent before the fork"] = ("completed", "final_answer")
    assert {tag: (r["status"], r["outcome"]) for tag, r in runs.items()} == expected
    # The children flushed at exit, as they said (before: "not written yet ... kept in the
    # trace journal", from a writer whose records were in the parent's segment, deleted).
    assert "not written yet" not in app.stderr, app.stderr


FORK_DURING_MIGRATION = textwrap.dedent(
    """
    import asyncio, json, os, sys, time

    from tether import Harness, Outcome

    harness = Harness(trace=sys.argv[1])


    async def one(tag):
        async with harness.open_run(tag) as run:
            run.end(Outcome.FINAL_ANSWER, output=tag)


    asyncio.run(one("parent"))  # its writer's thread opens the store: it migrates it
    store = harness.sink.store
    deadline = time.monotonic() + 60
    while not store._ready_lock.locked():  # the migration waits for the test's lock
        assert time.monotonic() < deadline, "the writer never began migrating"
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        asyncio.run(one("child"))
        print(json.dumps({"child flushed": harness.sink.flush(timeout=30)}), flush=True)
        os._exit(0)
    print("forked", flush=True)
    os.waitpid(pid, 0)
    """
)


def test_a_child_forked_while_the_parent_migrates_the_store_writes_its_runs(
    tmp_path: Path, pg_url: str, pg_admin_url: str
) -> None:
    """Before, the child inherited the store's migration lock held by the parent's writer
    thread, which the child does not have: its writer waited for it for ever."""
    import psycopg

    from tether.store.db import _PG_MIGRATION_LOCK

    conninfo = pg_admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_PG_MIGRATION_LOCK,))
        app = start_script(tmp_path, FORK_DURING_MIGRATION, pg_url)
        try:
            assert app.stdout is not None
            said = app.stdout.readline()
            assert said == "forked\n", (said, app.stderr.read() if app.stderr else "")
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (_PG_MIGRATION_LOCK,))
    out, err = app.communicate(timeout=120)
    assert app.returncode == 0, err
    assert json.loads(out) == {"child flushed": True}, err

    listed = run_cli("--database-url", pg_url, "traces", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)["runs"]
    assert sorted((r["input"], r["status"]) for r in runs) == [
        ("child", "completed"),
        ("parent", "completed"),
    ]


POOLED_CONNECTION = textwrap.dedent(
    """
    import os, sys

    from sqlalchemy import text

    from tether.store import create_store_engine

    engine = create_store_engine(sys.argv[1])
    with engine.connect() as conn:  # back in the pool after this
        parent = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        with engine.connect() as conn:
            os.write(write, str(conn.execute(text("SELECT pg_backend_pid()")).scalar()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print(parent, os.read(read, 100).decode(), flush=True)
    """
)


def test_a_forked_child_never_uses_the_parents_pooled_connection(
    tmp_path: Path, pg_url: str
) -> None:
    """Before, the child took the connection the parent had left in the pool: one session of
    the server used by two processes (their statements and results mixed; on SQLite, a file
    handle whose locks the child does not hold). Any Tether engine: the trace store's, a
    budget ledger's, the server's."""
    script = tmp_path / "pooled.py"
    script.write_text(POOLED_CONNECTION)
    done = subprocess.run(
        [sys.executable, str(script), pg_url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    parent, child = done.stdout.split()
    assert parent != child
