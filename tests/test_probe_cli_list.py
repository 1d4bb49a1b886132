"""``traces list`` on runs with long inputs and outputs: the table keeps every column."""

from __future__ import annotations

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
