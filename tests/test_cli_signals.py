"""``tether run`` stopped by SIGTERM keeps the trace of what already happened."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tether import RunState
from tether.store import Store


def test_sigterm_during_a_run_flushes_the_trace_and_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(
        "import time\n"
        "def fast() -> str:\n    return 'fast result'\n"
        "def hang() -> str:\n    time.sleep(60)\n    return 'never'\n"
    )
    (tmp_path / "script.yaml").write_text(
        "steps:\n  - tool_calls: [{name: fast}]\n  - tool_calls: [{name: hang}]\n  - text: done\n"
    )
    (tmp_path / "agent.yaml").write_text(
        "name: sig\n"
        "model: {provider: scripted, name: m, script: script.yaml}\n"
        "tools:\n"
        "  - {name: fast, function: tools.py:fast}\n"
        "  - {name: hang, function: tools.py:hang, timeout_s: 120}\n"
    )
    db = tmp_path / "t.db"
    url = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "--database-url", url, "run", "agent.yaml", "-i", "go"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        spans: list[object] = []
        while time.monotonic() < deadline:
            if db.exists():
                store = Store(url)
                runs = store.list_runs()
                if runs:
                    spans = store.get_spans(runs[0].run_id)
                    if any(getattr(s, "name", "") == "execute_tool fast" for s in spans):
                        break
            time.sleep(0.05)
        assert spans, "the fast tool's span never reached the store"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated by SIGTERM" in stderr and "recorded as failed" in stderr

    store = Store(url)
    run = store.list_runs()[0]
    assert run.status == "failed" and run.outcome == "error"
    assert run.error and "cancelled before it finished" in run.error
    names = [s.name for s in store.get_spans(run.run_id)]
    assert "execute_tool fast" in names and "invoke_agent sig" in names
    checkpoints = store.get_checkpoints(run.run_id)
    assert [c.reason for c in checkpoints] == ["crash"]
    state = RunState.from_json(checkpoints[0].state_json)
    assert state.tool_calls == 2 and state.messages[-1].tool_calls[0].name == "hang"


def test_ctrl_c_in_a_command_that_runs_nothing_says_nothing_of_runs(tmp_path: Path) -> None:
    """``tether validate`` reading a named pipe no one writes to (it waits, as ``cat`` does)
    and stopped with Ctrl-C: it says it was interrupted, not that a run was recorded."""
    fifo = tmp_path / "agent.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "validate", str(fifo)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until it is blocked opening the pipe: Linux names where it sleeps.
        deadline = time.monotonic() + 30
        waiting = False
        while time.monotonic() < deadline and not waiting:
            with contextlib.suppress(OSError):
                waiting = Path(f"/proc/{proc.pid}/wchan").read_text() == "wait_for_partner"
            time.sleep(0.05)
        assert waiting, "tether validate never waited on the pipe"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted"
