"""A process killed (SIGKILL) while it resumes a paused run, and the next resume: a resume
whose process died before its run let the approved call through does not use up the pause
(the run can be resumed again, and the call runs once); one whose process died after it did
is not resumed twice. Real agents from YAML, a real store, real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_approvals import agent_dir, audit_entries, refunds_made
from tether import Agent
from tether.core import TetherError
from tether.runtime.approvals import waiting_calls
from tether.store import Store
from tether.trace import close_writers, writer_for

# A resume whose process is killed at a chosen point: right after its claim on the paused
# run is recorded ("claimed"), or inside the approved tool, after its side effect ("tool").
KILLED_RESUME = """\
import asyncio, os, signal, sys
import tether.runtime.approvals as approvals
from tether import Agent

spec, url, run_id, where = sys.argv[1:]
claim = approvals.claim_resume

def claim_then_die(*args, **kwargs):
    claim(*args, **kwargs)
    if where == "claimed":
        os.kill(os.getpid(), signal.SIGKILL)

approvals.claim_resume = claim_then_die
if where == "tool":
    os.environ["DIE_AFTER_REFUND"] = "1"

async def main() -> None:
    agent = Agent.from_yaml(spec, trace=url)
    await agent.resume(run_id)

asyncio.run(main())
"""

DYING_REFUND = """
import os, signal

_refund = issue_refund


def issue_refund(order_id: int, amount: int) -> str:
    \"\"\"Refund an order.\"\"\"
    done = _refund(order_id, amount)
    if os.environ.get("DIE_AFTER_REFUND"):
        os.kill(os.getpid(), signal.SIGKILL)
    return done
"""


async def _paused_and_approved(tmp_path: Path, url: str) -> tuple[Path, str]:
    spec = agent_dir(tmp_path)
    tools = tmp_path / "tools.py"
    tools.write_text(tools.read_text() + DYING_REFUND)
    agent = Agent.from_yaml(spec, trace=url)
    paused = await agent.run("please refund 500 on 7")
    assert paused.status == "paused"
    agent.approve(paused.run_id, by="alice")
    await agent.aclose()
    writer_for(url).flush()
    return spec, paused.run_id


def _resume_killed(tmp_path: Path, spec: Path, url: str, run_id: str, where: str) -> None:
    script = tmp_path / "killed_resume.py"
    script.write_text(KILLED_RESUME)
    child = subprocess.run(
        [sys.executable, str(script), str(spec), url, run_id, where],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    close_writers()  # the next writer is a new one: it replays what the killed process left


async def test_a_resume_killed_right_after_its_claim_does_not_use_up_the_pause(
    tmp_path: Path, store_url: str
) -> None:
    spec, paused = await _paused_and_approved(tmp_path, store_url)
    _resume_killed(tmp_path, spec, store_url, paused, "claimed")
    assert refunds_made(tmp_path) == []

    agent = Agent.from_yaml(spec, trace=store_url)
    assert writer_for(store_url).flush()  # the killed process's trace recovered
    (waiting,) = waiting_calls(Store(store_url))[0]
    assert waiting.state == "approved"  # to be resumed (again): the dead resume is not one
    resumed = await agent.resume(paused)
    await agent.aclose()

    assert resumed.outcome == "final_answer"
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]  # once
    claims = [e for e in audit_entries(store_url) if e.kind == "run_resumed"]
    assert len(claims) == 2 and claims[-1].details["resumed_as"] == resumed.run_id
    killed = Store(store_url).get_run(str(claims[0].details["resumed_as"]))
    assert killed.status == "failed" and killed.error and "exited" in killed.error
    with pytest.raises(TetherError, match="resumed already, as run " + resumed.run_id) as info:
        await Agent.from_yaml(spec, trace=store_url).resume(paused)
    assert info.value.hint is None  # that run ended: nothing to wait for


async def test_a_resume_killed_after_the_approved_call_ran_is_not_resumed_again(
    tmp_path: Path, store_url: str
) -> None:
    spec, paused = await _paused_and_approved(tmp_path, store_url)
    _resume_killed(tmp_path, spec, store_url, paused, "tool")
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]

    agent = Agent.from_yaml(spec, trace=store_url)
    with pytest.raises(TetherError, match="resumed already, as run "):
        await agent.resume(paused)
    await agent.aclose()
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]  # not twice
    claims = [e for e in audit_entries(store_url) if e.kind == "run_resumed"]
    assert len(claims) == 1


# A control that escalates refunds only while a flag file exists: on resume the same call is
# no longer escalated (as a Cedar policy on context.budget or context.risk may stop asking),
# so the pipeline lets it through without settling the approval.
FLAGGED_RESUME = """\
import asyncio, os, sys
from pathlib import Path
from tether import Agent
from tether.controls import Control
from tether.controls.pipeline import ALLOW, Decision

spec, url, run_id, flag = sys.argv[1:5]

class AskWhileFlagged(Control):
    name = "ask_while_flagged"

    async def before_tool(self, ctx, call):
        if call.name == "issue_refund" and Path(flag).exists():
            return Decision.escalate("flagged refunds need a person")
        return ALLOW

async def main() -> None:
    agent = Agent.from_yaml(spec, trace=url, controls=[AskWhileFlagged()])
    if run_id == "-":
        paused = await agent.run("please refund 50 on 7")
        assert paused.status == "paused", paused.status
        agent.approve(paused.run_id, by="alice")
        print(paused.run_id)
    else:
        await agent.resume(run_id)

asyncio.run(main())
"""


async def test_a_resume_killed_after_a_call_let_through_without_an_escalation_is_not_taken_over(
    tmp_path: Path, store_url: str
) -> None:
    # The resumed run's pipeline let the paused call through with no escalation (so no
    # approval settled it), the tool ran, and its process was killed: the claim holds, or
    # the next resume would make the refund a second time.
    spec = agent_dir(tmp_path)
    tools = tmp_path / "tools.py"
    tools.write_text(tools.read_text() + DYING_REFUND)
    script, flag = tmp_path / "flagged.py", tmp_path / "flag"
    script.write_text(FLAGGED_RESUME)
    flag.touch()

    def child(run_id: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(spec), store_url, run_id, str(flag)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )

    first = child("-")
    assert first.returncode == 0, first.stderr
    paused = first.stdout.strip().splitlines()[-1]
    flag.unlink()
    killed = child(paused, DIE_AFTER_REFUND="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert refunds_made(tmp_path) == ["issue_refund 7 50"]

    again = child(paused)
    assert again.returncode != 0 and "resumed already" in again.stderr, again.stderr
    assert refunds_made(tmp_path) == ["issue_refund 7 50"]  # not twice


RESUME = """\
import asyncio, sys
from tether import Agent

async def main() -> None:
    await Agent.from_yaml(sys.argv[1], trace=sys.argv[2]).resume(sys.argv[3])

asyncio.run(main())
"""


def _resume_at_once(
    tmp_path: Path, spec: Path, url: str, run_id: str, count: int
) -> list[tuple[int, str]]:
    """``count`` processes resuming ``run_id`` at once: their exit codes and stderr."""
    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(spec), url, run_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    return [(c.wait(timeout=120), c.communicate()[1]) for c in children]


async def test_two_processes_taking_over_an_abandoned_resume_at_once_run_the_call_once(
    tmp_path: Path, store_url: str
) -> None:
    # A resume killed right after its claim, then two processes resume the run at the same
    # moment: both see the claim abandoned, one takes it over, the other is refused.
    spec, paused = await _paused_and_approved(tmp_path, store_url)
    _resume_killed(tmp_path, spec, store_url, paused, "claimed")
    results = _resume_at_once(tmp_path, spec, store_url, paused, 2)
    assert sorted(code for code, _ in results) == [0, 1], results
    assert any("resumed already" in err for code, err in results if code == 1), results
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]  # once
    claims = [e for e in audit_entries(store_url) if e.kind == "run_resumed"]
    assert len(claims) == 2
