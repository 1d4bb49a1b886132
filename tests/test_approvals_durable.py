"""A person's answer to an approval, a resume's claim, and a resumed run's note that it is
about to run the approved call are on disk (synced) before anything acts on them, so that a
power cut cannot lose them and let a later resume run the approved call a second time.

A power cut cannot be pulled in a test; what it would lose can be seen: on SQLite (WAL,
``synchronous=NORMAL``) a commit is a ``pwrite`` into the log, on disk only at its next
``fsync``. The processes run under ``strace`` (real syscalls, real store, real child
processes), and the tests check that every write into the store's log before the moment
that matters (the approval's reply, the approved tool's first act) is followed by an
``fsync`` of the log before that moment. Without the syncs, each check fails: the
store commits with ``synchronous=NORMAL``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_approvals import agent_dir, refunds_made
from tether import Agent
from tether.trace import writer_for

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(
    STRACE is None and os.environ.get("CI") != "true",
    reason="strace is not installed (make test installs it where it can)",
)

_CALL = re.compile(r"^(\d+)\s+(?:(\w+)\((\d+)<([^>]*)>|<\.\.\. (\w+) resumed>)")


def unsynced_log_writes(trace: str, sentinel: str) -> list[str]:
    """The writes into a ``-wal`` file (the store's log) that ``strace`` saw before the first
    ``openat`` of ``sentinel`` and that no completed ``fsync``/``fdatasync`` of that file,
    started after them, covered before it."""
    writes: dict[str, list[str]] = {}
    synced: dict[str, int] = {}  # path -> how many of its writes a finished fsync covers
    started: dict[str, tuple[str, int]] = {}  # an fsync still running: pid -> (path, covers)
    for line in trace.splitlines():
        if "openat(" in line and sentinel in line:
            return [w for path, ws in writes.items() for w in ws[synced.get(path, 0) :]]
        m = _CALL.match(line)
        if m is None:
            continue
        pid, name, _fd, path, resumed = m.groups()
        if name in ("pwrite64", "write", "pwritev") and path.endswith("-wal"):
            writes.setdefault(path, []).append(line[:120])
        elif name in ("fsync", "fdatasync") and path.endswith("-wal"):
            covers = len(writes.get(path, ()))
            if "<unfinished" in line:
                started[pid] = (path, covers)
            elif line.endswith("= 0"):
                synced[path] = max(synced.get(path, 0), covers)
        elif resumed in ("fsync", "fdatasync") and pid in started:
            path, covers = started.pop(pid)
            if line.endswith("= 0"):
                synced[path] = max(synced.get(path, 0), covers)
    raise AssertionError(f"the sentinel {sentinel} was never opened: the scenario did not run")


def written_to_log_before(trace: str, sentinel: str, needle: str) -> bool:
    """Whether a write into a ``-wal`` file before the first ``openat`` of ``sentinel`` holds
    ``needle`` (``strace -s`` long enough to show whole pages)."""
    for line in trace.splitlines():
        if "openat(" in line and sentinel in line:
            return False
        if needle in line and (m := _CALL.match(line)) and (m.group(4) or "").endswith("-wal"):
            return True
    return False


def _strace(tmp_path: Path, script: str, *args: str) -> str:
    if STRACE is None:
        pytest.fail("CI needs strace for these tests: apt-get install strace")
    path = tmp_path / "child.py"
    path.write_text(script)
    out = tmp_path / "strace.txt"
    child = subprocess.run(
        [
            STRACE,
            "-f",
            "-y",
            "-qq",
            "-s",
            "16384",
            "-o",
            str(out),
            "-e",
            "trace=openat,pwrite64,write,pwritev,fsync,fdatasync",
            sys.executable,
            str(path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return out.read_text()


async def _paused(tmp_path: Path, url: str) -> tuple[Path, str]:
    spec = agent_dir(tmp_path)
    agent = Agent.from_yaml(spec, trace=url)
    paused = await agent.run("please refund 500 on 7")
    await agent.aclose()
    assert paused.status == "paused"
    writer_for(url).flush()
    return spec, paused.run_id


APPROVE = """\
import sys
from pathlib import Path
from tether import Agent

spec, url, run_id, sentinel = sys.argv[1:]
Agent.from_yaml(spec, trace=url).approve(run_id, by="alice", reason="ok")
Path(sentinel).write_text("answered")  # what the person is told: the answer is recorded
"""


async def test_an_approval_is_on_disk_before_the_person_is_told(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    spec, run_id = await _paused(tmp_path, url)
    sentinel = str(tmp_path / "answered.flag")
    trace = _strace(tmp_path, APPROVE, str(spec), url, run_id, sentinel)
    assert "-wal>" in trace  # the answer went into the log (the check sees what it checks)
    assert unsynced_log_writes(trace, sentinel) == []


RESUME = """\
import asyncio, sys
from tether import Agent

spec, url, run_id = sys.argv[1:]

async def main() -> None:
    agent = Agent.from_yaml(spec, trace=url)
    resumed = await agent.resume(run_id)
    await agent.aclose()
    assert resumed.outcome == "final_answer", resumed.outcome

asyncio.run(main())
"""


async def test_a_resume_claims_and_notes_the_call_on_disk_before_the_tool_acts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    spec, run_id = await _paused(tmp_path, url)
    Agent.from_yaml(spec, trace=url).approve(run_id, by="alice")
    trace = _strace(tmp_path, RESUME, str(spec), url, run_id)
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    # The tool's first act is opening its log: before it, the claim (run_resumed), the
    # resumed run and its note that the call starts are all in the store, synced.
    assert written_to_log_before(trace, "calls.log", "run_resumed")
    assert written_to_log_before(trace, "calls.log", "tether.resume.tool_started")
    assert unsynced_log_writes(trace, "calls.log") == []


def test_the_check_sees_a_write_left_unsynced() -> None:
    """The checker itself: a log write an fsync covers is cleared (also one finished in a
    later line), a write issued while an fsync runs is not covered by it, and nothing after
    the sentinel counts."""
    wal = "3</s/t.db-wal>"
    lines = [
        f'10 pwrite64({wal}, "x", 4096, 0) = 4096',
        f"11 fsync({wal} <unfinished ...>",
        f'10 pwrite64({wal}, "y", 4096, 4096) = 4096',
        "11 <... fsync resumed>) = 0",
        f'10 pwrite64({wal}, "z", 4096, 8192) = 4096',
        '10 openat(AT_FDCWD</s>, "/s/calls.log", O_WRONLY|O_APPEND) = 5</s/calls.log>',
        f"10 fsync({wal}) = 0",
    ]
    assert [w.split('"')[1] for w in unsynced_log_writes("\n".join(lines), "calls.log")] == [
        "y",
        "z",
    ]
    lines.insert(5, f"12 fdatasync({wal}) = 0")
    assert unsynced_log_writes("\n".join(lines), "calls.log") == []
    with pytest.raises(AssertionError, match="never opened"):
        unsynced_log_writes("\n".join(lines), "other.log")


STORE_DOWN = """\
import sys
from pathlib import Path
from tether.store import EventRecord, Store
from tether.trace.writer import BatchingWriter

journal, sentinel = sys.argv[1:]
# Nothing listens on port 1: the store is down, the record waits in the journal.
store = Store("postgresql+psycopg://tether@127.0.0.1:1/test?connect_timeout=1", connect=False)
writer = BatchingWriter(store, journal=Path(journal))
writer.event(EventRecord("ab" * 16, None, "tether.resume.tool_started", 1, run_id="cd" * 8))
synced = writer.sync(timeout=0.5)
Path(sentinel).write_text(str(synced))
"""


def test_with_the_store_down_the_journal_itself_is_synced(tmp_path: Path) -> None:
    """When the store cannot take the record in time, ``BatchingWriter.sync`` syncs the
    crash journal that holds it: its segment's pages (``msync``), the segment and the
    journal's folder (``fsync``), all before it returns."""
    if STRACE is None:
        pytest.fail("CI needs strace for these tests: apt-get install strace")
    script = tmp_path / "child.py"
    script.write_text(STORE_DOWN)
    journal, sentinel, out = tmp_path / "journal", tmp_path / "synced.flag", tmp_path / "st.txt"
    child = subprocess.run(
        [
            STRACE,
            "-f",
            "-y",
            "-qq",
            "-o",
            str(out),
            "-e",
            "trace=openat,msync,fsync",
            sys.executable,
            str(script),
            str(journal),
            str(sentinel),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert sentinel.read_text() == "True"
    before = out.read_text().split(str(sentinel))[0]
    assert re.search(r"msync\(.*MS_SYNC\) = 0", before)
    assert re.search(rf"fsync\(\d+<{re.escape(str(journal))}/[^>]+\.journal>\) = 0", before)
    assert re.search(rf"fsync\(\d+<{re.escape(str(journal))}>\) = 0", before)
