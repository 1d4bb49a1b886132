"""``traces list`` on runs with long inputs and outputs: the table keeps every column, and
neither the table nor ``--json`` holds every run's whole text in memory at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunRecord, Store, TraceBatch

TEXT_CHARS = 65_536  # TETHER_MAX_PAYLOAD_CHARS: the longest input or output a run stores


def _store_runs(url: str, count: int, text: str) -> None:
    store = Store(url)
    for _ in range(0, count, 100):
        started, ended = TraceBatch(), TraceBatch()
        for _ in range(100):
            run = RunRecord(
                new_trace_id(), "lister", "v1", now_ns(), input=text, run_id=new_span_id()
            )
            started.runs_started.append(run)
        store.write(started)
        for run in started.runs_started:
            run.status, run.outcome, run.output, run.ended_ns = (
                "completed", "final_answer", text, now_ns()
            )  # fmt: skip
            ended.runs_ended.append(run)
        store.write(ended)


def _run_measured(url: str, *args: str) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """A real ``tether`` process, and its peak resident memory (KiB)."""
    argv = [sys.executable, "-m", "tether", "--database-url", url, *args]
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE)
        assert child.stderr is not None
        err = child.stderr.read()
        _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(argv, child.returncode, b"", err), usage.ru_maxrss


def test_a_long_input_leaves_the_other_columns_of_the_table(store_url: str) -> None:
    _store_runs(store_url, 100, "please tell me about the weather " * 10)
    listed = subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", store_url, "traces", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert listed.returncode == 0, listed.stderr
    header, _rule, first = listed.stdout.splitlines()[:3]
    for column in ("run", "agent", "started", "outcome", "tokens", "cost", "latency", "input"):
        assert column in header, header
    assert "lister" in first and "please tell me" in first, first


def test_listing_thousands_of_long_runs_does_not_hold_them_all(sqlite_url: str) -> None:
    count = 600  # about 80 MB of text
    _store_runs(sqlite_url, count, "x" * TEXT_CHARS)
    one, base_kib = _run_measured(sqlite_url, "traces", "list", "--json", "-n", "1")
    assert one.returncode == 0, one.stderr
    for args in (["--json"], []):
        listed, kib = _run_measured(sqlite_url, "traces", "list", "-n", str(count), *args)
        assert listed.returncode == 0, listed.stderr
        # A page of runs at a time (--json), or a line of each (the table): not all of them.
        assert kib - base_kib < 48 * 1024, (args, kib, base_kib)
    argv = [sys.executable, "-m", "tether", "--database-url", sqlite_url, "traces", "list"]
    dumped = subprocess.run(
        [*argv, "--json", "-n", str(count)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    runs = json.loads(dumped.stdout)["runs"]  # the same JSON as in one piece, a run at a time
    assert len(runs) == count
    assert all(len(r["input"]) == len(r["output"]) == TEXT_CHARS for r in runs)
