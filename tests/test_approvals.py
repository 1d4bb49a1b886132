"""Approving an escalated tool call and resuming the run, end to end: real agents from YAML
(ScriptedModel, Python tools that log each call to a file), Cedar policies, traces and the
audit log in a real store, and the ``tether`` command in child processes.

An approved call runs once on resume; a denied one is refused naming who denied it; any other
call still asks; an answer is final; a run is resumed once, even by two processes at once; an
approval entry that was tampered with is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fakes.cli import run_cli
from fakes.traces import control_decisions, trace_of
from test_authz_agent import POLICIES, TOOLS_PY, calls, decisions
from tether import Agent
from tether.controls.approvals import APPROVAL_BY, Approval
from tether.core import TetherError, content_hash
from tether.providers import ToolCall
from tether.store import Store
from tether.store.audit import iter_audit
from tether.trace import semconv, writer_for

SCRIPT = """\
rules:
  - when: 'at once: (?P<a1>\\d+) on (?P<o1>\\d+) and (?P<a2>\\d+) on (?P<o2>\\d+)'
    steps:
      - tool_calls:
          - {name: issue_refund, arguments: {order_id: "{o1}", amount: "{a1}"}}
          - {name: issue_refund, arguments: {order_id: "{o2}", amount: "{a2}"}}
      - text: "Done: {result:issue_refund}"
  - when: 'refund (?P<a1>\\d+) on (?P<o1>\\d+) and (?P<a2>\\d+) on (?P<o2>\\d+)'
    steps:
      - tool_calls: [{name: issue_refund, arguments: {order_id: "{o1}", amount: "{a1}"}}]
      - tool_calls: [{name: issue_refund, arguments: {order_id: "{o2}", amount: "{a2}"}}]
      - text: "Done: {result:issue_refund}"
  - when: 'refund (?P<amount>\\d+) on (?P<order>\\d+)'
    steps:
      - tool_calls: [{name: issue_refund, arguments: {order_id: "{order}", amount: "{amount}"}}]
      - text: "Refund: {result:issue_refund}"
steps:
  - text: "How can I help?"
"""

SPEC = """\
name: support
model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}
paradigm: PARADIGM
tools:
  - {name: lookup_order, function: tools.py:lookup_order, side_effects: read}
  - {name: issue_refund, function: tools.py:issue_refund, side_effects: external}
  - {name: delete_account, function: tools.py:delete_account, side_effects: write}
authorization:
  policies: [refunds.cedar]
"""


def agent_dir(tmp_path: Path, paradigm: str = "react") -> Path:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "script.yaml").write_text(SCRIPT)
    (tmp_path / "refunds.cedar").write_text(POLICIES)
    spec = tmp_path / "agent.yaml"
    spec.write_text(SPEC.replace("PARADIGM", paradigm))
    return spec


def refunds_made(tmp_path: Path) -> list[str]:
    return [c for c in calls(tmp_path) if c.startswith("issue_refund")]


def audit_entries(url: str) -> list[Any]:
    writer_for(url).flush()
    with Store(url).engine.connect() as conn:
        return [e for e, _, _ in iter_audit(conn)]


async def test_an_approved_call_runs_once_on_resume_and_the_audit_log_says_who(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7")
    assert (paused.outcome, paused.status) == ("escalated", "paused")
    waiting = paused.state.awaiting_approval
    assert waiting is not None and waiting.tool == "issue_refund"
    assert waiting.control == "cedar_authorization" and "refund-approval" in waiting.reason
    assert refunds_made(tmp_path) == []

    with pytest.raises(TetherError, match="nobody has approved or denied call"):
        await agent.resume(paused.run_id)  # not answered yet: nothing to go on with

    answer = agent.approve(paused.run_id, by="alice@example.com", reason="checked the order")
    assert answer.approved and answer.call_id == waiting.call_id
    resumed = await agent.resume(paused.run_id)

    assert resumed.outcome == "final_answer"
    assert resumed.output == "Refund: refunded 500 on order 7"
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]  # once
    assert resumed.trace_id == paused.trace_id and resumed.run_id != paused.run_id
    assert resumed.state.metadata["resumed_from"] == paused.run_id
    (allow,) = decisions(sqlite_url, resumed.run_id)
    assert allow[semconv.TETHER_DECISION] == "allow"
    assert allow[APPROVAL_BY] == "alice@example.com"
    assert allow[semconv.TETHER_DECISION_REASON].endswith(
        "; approved by alice@example.com: checked the order"
    )
    run, _, _ = trace_of(sqlite_url, resumed.run_id)
    assert run.attributes["resumed_from"] == paused.run_id
    # The result counts the whole conversation (limits do); each record what its run did.
    before, _, _ = trace_of(sqlite_url, paused.run_id)
    assert (before.turns, run.turns, resumed.state.turns) == (1, 1, 2)
    assert (before.tool_calls, run.tool_calls, resumed.state.tool_calls) == (0, 1, 1)
    assert before.input_tokens + run.input_tokens == resumed.usage.input_tokens
    assert run.input_tokens > 0 and before.input_tokens > 0
    assert before.cost_usd is not None and run.cost_usd is not None
    assert before.cost_usd + run.cost_usd == pytest.approx(resumed.state.cost_usd)

    entries = audit_entries(sqlite_url)
    kinds = [e.kind for e in entries]
    assert kinds == ["policy_load", "decision", "approval", "run_resumed", "decision"]
    approval = entries[2]
    assert approval.run_id == paused.run_id
    assert approval.actor == {"approver": "alice@example.com", "via": "sdk"}
    assert approval.details["approved"] is True
    assert approval.details["call_id"] == waiting.call_id
    assert approval.details["args_hash"] == waiting.args_hash
    assert entries[3].details == {"resumed_as": resumed.run_id}
    assert entries[4].details["verdict"] == "allow"
    assert entries[4].details["approval"]["entry_id"] == approval.entry_id
    assert entries[4].run_id == resumed.run_id

    with pytest.raises(TetherError, match="resumed already, as run " + resumed.run_id):
        await agent.resume(paused.run_id)
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    await agent.aclose()


async def test_a_denied_call_is_refused_naming_who_denied_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7")
    agent.deny(paused.run_id, by="bob", reason="over the customer's total")
    resumed = await agent.resume(paused.run_id)

    assert resumed.outcome == "final_answer"  # the model is told, and answers
    assert refunds_made(tmp_path) == []
    assert resumed.output is not None
    assert "Tool call refused by policy" in resumed.output
    assert "denied by bob: over the customer's total" in resumed.output
    (block,) = decisions(sqlite_url, resumed.run_id)
    assert block[semconv.TETHER_DECISION] == "block" and block[APPROVAL_BY] == "bob"
    audited = [e for e in audit_entries(sqlite_url) if e.kind == "decision"]
    assert audited[-1].details["verdict"] == "block"
    assert audited[-1].details["approval"]["approved"] is False


async def test_another_call_still_asks_after_an_approval(tmp_path: Path, sqlite_url: str) -> None:
    """The approval lets its call through; the next refund (another call) pauses the resumed
    run again, and is answered and resumed in its turn."""
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    first = await agent.run("please refund 500 on 7 and 600 on 8")
    agent.approve(first.run_id, by="alice")
    second = await agent.resume(first.run_id)

    assert (second.outcome, second.status) == ("escalated", "paused")
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    waiting, before = second.state.awaiting_approval, first.state.awaiting_approval
    assert waiting is not None and before is not None and waiting.call_id != before.call_id
    asked = decisions(sqlite_url, second.run_id)
    assert [d[semconv.TETHER_DECISION] for d in asked] == ["allow", "escalate"]

    agent.approve(second.run_id, by="carol")
    third = await agent.resume(second.run_id)
    assert third.outcome == "final_answer"
    assert refunds_made(tmp_path) == ["issue_refund 7 500", "issue_refund 8 600"]
    assert third.state.tool_calls == 2  # the runs' counts carry over
    await agent.aclose()


@pytest.mark.parametrize("first", ["approve", "deny"])
async def test_two_escalated_calls_of_one_reply_pause_and_resume_one_after_the_other(
    tmp_path: Path, sqlite_url: str, first: str
) -> None:
    """One reply asks for two refunds that both need approval: the run pauses on the first,
    the resumed run settles it and pauses on the second (the call left pending), and that run
    is answered and resumed in its turn; each call runs at most once."""
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    one = await agent.run("refund at once: 500 on 7 and 600 on 8")
    waiting_one = one.state.awaiting_approval
    assert one.outcome == "escalated" and waiting_one is not None
    pending = [c.id for c in one.state.pending_tool_calls]
    assert len(pending) == 2 and pending[0] == waiting_one.call_id
    getattr(agent, first)(one.run_id, by="alice")
    two = await agent.resume(one.run_id)

    assert (two.outcome, two.status) == ("escalated", "paused")
    waiting_two = two.state.awaiting_approval
    assert waiting_two is not None and waiting_two.call_id != waiting_one.call_id
    assert refunds_made(tmp_path) == (["issue_refund 7 500"] if first == "approve" else [])
    assert [c.id for c in two.state.pending_tool_calls] == [waiting_two.call_id]
    with pytest.raises(TetherError, match="resumed already"):
        await agent.resume(one.run_id)  # the first pause is spent

    agent.approve(two.run_id, by="carol")
    three = await agent.resume(two.run_id)
    assert three.outcome == "final_answer"
    assert refunds_made(tmp_path)[-1] == "issue_refund 8 600"
    assert len(refunds_made(tmp_path)) == (2 if first == "approve" else 1)
    assert three.state.metadata["resumed_from"] == two.run_id
    assert two.state.metadata["resumed_from"] == one.run_id
    assert {three.trace_id, two.trace_id} == {one.trace_id}
    with pytest.raises(TetherError, match="resumed already"):
        await agent.resume(two.run_id)
    entries = audit_entries(sqlite_url)
    assert [e.kind for e in entries].count("run_resumed") == 2
    assert [e.kind for e in entries].count("approval") == 2
    await agent.aclose()


async def test_a_plan_execute_run_resumes_with_its_plan_and_the_solver(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(agent_dir(tmp_path, "plan_execute"), trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7")
    assert paused.outcome == "escalated"
    agent.approve(paused.run_id, by="alice")
    resumed = await agent.resume(paused.run_id)
    assert resumed.outcome == "final_answer"
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    _, spans, _ = trace_of(sqlite_url, resumed.run_id)
    plan = next(s for s in spans if s.kind == "plan")
    (tool,) = [s for s in spans if s.kind == "tool"]
    assert tool.parent_id == plan.span_id
    await agent.aclose()


async def test_an_answer_is_final_and_must_name_the_waiting_call(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7")
    with pytest.raises(TetherError, match=r"waits on call .* not on 'call_9_9'"):
        agent.approve(paused.run_id, by="alice", call_id="call_9_9")
    with pytest.raises(TetherError, match="the approver is empty"):
        agent.approve(paused.run_id, by="  ")
    with pytest.raises(TetherError, match="control characters"):
        agent.approve(paused.run_id, by="alice\x1b[2J")
    # A name is one line: a newline in it broke the row 'tether approvals list' prints.
    with pytest.raises(TetherError, match="the approver holds control characters"):
        agent.approve(paused.run_id, by="alice\n    4f3c  support  refund  [waiting]")
    with pytest.raises(TetherError, match="at most 2,000"):
        agent.approve(paused.run_id, by="alice", reason="x" * 2001)
    agent.deny(paused.run_id, by="bob")
    with pytest.raises(TetherError, match=r"was denied already by bob .*an answer is final"):
        agent.approve(paused.run_id, by="alice")
    done = await agent.run("please refund 50 on 7")  # a run that never paused
    with pytest.raises(TetherError, match=r"is completed .*not paused"):
        agent.approve(done.run_id, by="alice")
    assert [e.kind for e in audit_entries(sqlite_url)].count("approval") == 1
    await agent.aclose()


def test_an_answer_settles_only_its_own_call() -> None:
    call = ToolCall(id="call_1_0", name="issue_refund", arguments={"order_id": 7, "amount": 500})
    answer = Approval(
        run_id="r",
        call_id="call_1_0",
        tool="issue_refund",
        args_hash=content_hash(call.arguments),
        control="cedar_authorization",
        approved=True,
        approver="alice",
    )
    assert answer.settles(call, "cedar_authorization")
    other_args = call.model_copy(update={"arguments": {"order_id": 7, "amount": 5000}})
    assert not answer.settles(other_args, "cedar_authorization")
    cedar = "cedar_authorization"
    assert not answer.settles(call.model_copy(update={"id": "call_2_0"}), cedar)
    assert not answer.settles(call.model_copy(update={"name": "lookup_order"}), cedar)
    assert not answer.settles(call, "guard_injection")  # another control's escalation


async def test_a_resume_under_another_spec_version_is_refused(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = agent_dir(tmp_path)
    agent = Agent.from_yaml(spec, trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7")
    agent.approve(paused.run_id, by="alice")
    spec.write_text(spec.read_text() + "description: changed\n")
    changed = Agent.from_yaml(spec, trace=sqlite_url)
    with pytest.raises(TetherError, match="was paused in agent 'support' version"):
        await changed.resume(paused.run_id)
    assert refunds_made(tmp_path) == []


async def test_an_edited_approval_is_not_trusted(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A denial turned into an approval in the database: its hash no longer holds, and the
    resume refuses it. With TETHER_AUDIT_KEY, an unkeyed entry someone wrote is refused too."""
    monkeypatch.setenv("TETHER_AUDIT_KEY", "k" * 32)
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7")
    agent.deny(paused.run_id, by="bob")
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    db.execute(
        "UPDATE tether_audit SET details = replace(details, '\"approved\":false', "
        "'\"approved\":true') WHERE kind = 'approval'"
    )
    db.commit()
    db.close()
    with pytest.raises(TetherError, match="cannot be trusted: audit entry 3 was changed"):
        await agent.resume(paused.run_id)
    assert refunds_made(tmp_path) == []

    monkeypatch.delenv("TETHER_AUDIT_KEY")
    other = await agent.run("please refund 700 on 8")
    agent.approve(other.run_id, by="mallory")  # unkeyed: written without the key
    monkeypatch.setenv("TETHER_AUDIT_KEY", "k" * 32)
    with pytest.raises(TetherError, match="not keyed although TETHER_AUDIT_KEY is set"):
        await agent.resume(other.run_id)
    assert refunds_made(tmp_path) == []
    await agent.aclose()


def test_the_cli_pauses_approves_resumes_and_the_audit_log_verifies(tmp_path: Path) -> None:
    spec = agent_dir(tmp_path)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "COLUMNS": "200"}

    def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("--database-url", db, *args, env=env, cwd=tmp_path)

    ran = tether("run", str(spec), "-i", "please refund 500 on 7", "--json")
    assert ran.returncode == 3, ran.stdout + ran.stderr  # stopped by a control: paused
    run_id = json.loads(ran.stdout)["run_id"]
    shown = tether("run", str(spec), "-i", "please refund 900 on 8")
    assert "approvals approve" in shown.stdout and " resume " in shown.stdout

    listed = json.loads(tether("approvals", "list", "--json").stdout)["runs"]
    mine = next(r for r in listed if r["run_id"] == run_id)
    assert mine["call"] == 'issue_refund(order_id="7", amount="500")'
    assert mine["answer"] is None and "refund-approval" in mine["escalation"]

    early = tether("resume", str(spec), run_id)
    assert early.returncode == 1 and "nobody has approved or denied" in early.stderr

    approved = tether("approvals", "approve", run_id[:8], "--by", "alice", "--reason", "ok")
    assert approved.returncode == 0, approved.stderr
    assert '✓ approved issue_refund(order_id="7", amount="500")' in approved.stdout
    again = tether("approvals", "deny", run_id, "--by", "bob")
    assert again.returncode == 1 and "approved already by alice" in again.stderr

    resumed = tether("resume", str(spec), run_id, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["output"] == "Refund: refunded 500 on order 7"
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    twice = tether("resume", str(spec), run_id)
    assert twice.returncode == 1 and "resumed already" in twice.stderr
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]

    # In text, the figures of a resumed run count the paused run's too: said, since the new
    # run's trace counts its own (r26 read 9 in / 28 out printed and 8 / 16 in traces show).
    second = next(r for r in listed if r["call"] == 'issue_refund(order_id="8", amount="900")')
    assert tether("approvals", "approve", second["run_id"], "--by", "alice").returncode == 0
    in_text = tether("resume", str(spec), second["run_id"])
    assert in_text.returncode == 0, in_text.stdout + in_text.stderr
    assert f"count the paused run {second['run_id']}'s as well" in in_text.stdout

    verified = tether("audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    entries = json.loads(tether("audit", "list", "--json").stdout)["entries"]
    (approval, _) = [e for e in entries if e["kind"] == "approval"]
    assert approval["actor"]["approver"] == "alice" and approval["actor"]["via"] == "cli"
    assert approval["run_id"] == run_id and approval["details"]["reason"] == "ok"
    listed = json.loads(tether("approvals", "list", "--json").stdout)["runs"]
    assert next(r for r in listed if r["run_id"] == run_id)["resumed_as"]


def test_the_cli_resumes_a_run_that_pauses_again(tmp_path: Path) -> None:
    """Each step its own process: a resumed run reaching a second escalated call pauses (exit
    3, the next steps printed), is answered and resumed again."""
    spec = agent_dir(tmp_path)
    db = f"sqlite:///{tmp_path / 'cli.db'}"

    def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("--database-url", db, *args, env={**os.environ, "COLUMNS": "200"})

    ran = tether("run", str(spec), "-i", "please refund 500 on 7 and 600 on 8", "--json")
    assert ran.returncode == 3, ran.stdout + ran.stderr
    first = json.loads(ran.stdout)["run_id"]
    assert tether("approvals", "approve", first, "--by", "alice").returncode == 0
    again = tether("resume", str(spec), first, "--json")
    assert again.returncode == 3, again.stdout + again.stderr  # paused on the second refund
    second = json.loads(again.stdout)
    assert second["outcome"] == "escalated" and second["run_id"] != first
    listed = json.loads(tether("approvals", "list", "--json").stdout)["runs"]
    mine = next(r for r in listed if r["run_id"] == second["run_id"])
    assert mine["call"] == 'issue_refund(order_id="8", amount="600")' and mine["answer"] is None
    assert tether("approvals", "approve", second["run_id"], "--by", "bob").returncode == 0
    done = tether("resume", str(spec), second["run_id"], "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outcome"] == "final_answer"
    assert refunds_made(tmp_path) == ["issue_refund 7 500", "issue_refund 8 600"]
    assert tether("resume", str(spec), first).returncode == 1  # each pause resumes once
    verified = tether("audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True


RESUME_ONE = """\
import asyncio, sys
from tether import Agent
from tether.core import TetherError

async def main() -> int:
    agent = Agent.from_yaml(sys.argv[1], trace=sys.argv[2])
    try:
        result = await agent.resume(sys.argv[3])
    except TetherError as exc:
        print("refused:", exc.message)
        return 1
    finally:
        await agent.aclose()
    print("resumed:", result.outcome)
    return 0

sys.exit(asyncio.run(main()))
"""


def race_two_resumes(tmp_path: Path, store_url: str, script_text: str) -> tuple[Agent, Any]:
    """A run paused on a refund and approved, then resumed by two processes at once, each
    running ``script_text`` (spec, store URL, run id): the agent and the processes' outputs,
    once exactly one resumed it (exit 0) and the other was refused (exit 1)."""
    spec = agent_dir(tmp_path)
    agent = Agent.from_yaml(spec, trace=store_url)
    paused = agent.run_sync("please refund 500 on 7")
    agent.approve(paused.run_id, by="alice")
    writer_for(store_url).flush()
    script = tmp_path / "resume_one.py"
    script.write_text(script_text)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(spec), store_url, paused.run_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 1], outs
    return agent, outs


def test_two_processes_resuming_at_once_run_the_call_once(tmp_path: Path, store_url: str) -> None:
    _, outs = race_two_resumes(tmp_path, store_url, RESUME_ONE)
    assert any("resumed already" in out for out, _ in outs), outs
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    kinds = [e.kind for e in audit_entries(store_url)]
    assert kinds.count("run_resumed") == 1


async def test_a_run_budget_counts_the_conversation_across_an_approval(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A resumed run is a new run: its run budget was keyed by its own id, so each approval
    started the conversation's run budget afresh (its limits counted the whole conversation).
    It now counts what the runs before it used: exactly, at the edge."""

    def spec_with(limit: int, folder: Path) -> Path:
        folder.mkdir()
        spec = agent_dir(folder)
        spec.write_text(
            spec.read_text() + f"budgets:\n  limits:\n    - {{scope: run, tokens: {limit}}}\n"
        )
        return spec

    async def conversation(limit: int, folder: Path) -> tuple[Any, Any]:
        spec = spec_with(limit, folder)
        agent = Agent.from_yaml(spec, trace=sqlite_url)
        paused = await agent.run("please refund 500 on 7")
        assert paused.status == "paused", paused.stop_reason
        agent.approve(paused.run_id, by="alice@example.com")
        return paused, await agent.resume(paused.run_id)

    paused, resumed = await conversation(1_000_000, tmp_path / "roomy")
    assert resumed.outcome == "final_answer"
    before = paused.usage.total_tokens
    assert before > 0
    writer_for(sqlite_url).flush()
    (allowed,) = control_decisions(sqlite_url, resumed.run_id, "budgets")
    worst = allowed["tether.budget.reserved_tokens"]  # the resumed call's worst case
    _, exact = await conversation(before + worst, tmp_path / "exact")
    assert exact.outcome == "final_answer"
    _, short = await conversation(before + worst - 1, tmp_path / "short")
    assert short.outcome == "budget_exceeded", short.stop_reason
    limit = f"{before + worst - 1:,} tokens, used {before:,} tokens"
    assert limit in str(short.stop_reason)


async def test_approvals_list_keeps_each_run_on_its_own_lines(tmp_path: Path) -> None:
    """An escalation's reason may quote what the model or a tool wrote (a guard's evidence):
    one holding a newline printed a line of `approvals list` that read as another run's row."""
    from tether import Control, Decision, HookContext

    class Quoting(Control):
        name = "quoting"

        async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
            quoted = "x\n0000000000000000  support  issue_refund()  [approved by ceo; resume it]"
            return Decision.escalate(f"the call quotes {quoted}")

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    spec = agent_dir(tmp_path)
    agent = Agent.from_yaml(spec, trace=db, controls=[Quoting()])
    paused = await agent.run("please refund 5 on 7")
    assert paused.status == "paused", paused.stop_reason
    writer_for(db).flush()
    listed = run_cli("--database-url", db, "approvals", "list").stdout.splitlines()
    assert len(listed) == 2, listed  # the run's row and its escalation, nothing else
    assert listed[0].startswith(paused.run_id) and listed[0].endswith("[waiting]")
    assert "x\\n0000000000000000" in listed[1]


RISK_SCRIPT = """\
rules:
  - when: 'look 7 up, close the account, refund 50'
    steps:
      - tool_calls: [{name: lookup_order, arguments: {order_id: 7}}]
      - tool_calls: [{name: delete_account, arguments: {user: "3"}}]
      - tool_calls: [{name: issue_refund, arguments: {order_id: 7, amount: 50}}]
      - text: "Done: {result:issue_refund}"
steps:
  - text: "How can I help?"
"""

RISK_POLICIES = """\
@id("lookups")
permit(principal, action == Tether::Action::"lookup_order", resource);
@id("closing-asks")
@escalate("closing an account needs a person")
permit(principal, action == Tether::Action::"delete_account", resource);
@id("refunds")
permit(principal, action == Tether::Action::"issue_refund", resource);
@id("no-refunds-after-a-flagged-text")
forbid(principal, action == Tether::Action::"issue_refund", resource)
when { context.risk.categories.contains("deny_list") };
"""


async def test_a_resumed_run_keeps_what_the_guards_found_before_the_pause(
    tmp_path: Path, store_url: str
) -> None:
    # A tool result the deny list flags makes the run's risk forbid refunds; an approval of
    # another call in between must not launder the run: the resumed run still refuses.
    spec = agent_dir(tmp_path)
    (tmp_path / "script.yaml").write_text(RISK_SCRIPT)
    (tmp_path / "refunds.cedar").write_text(RISK_POLICIES)
    spec.write_text(
        spec.read_text()
        + "guards:\n  rules:\n    - {guard: deny_list, channels: [tool_output], terms: [shipped],"
        " action: mask}\n"
    )
    agent = Agent.from_yaml(spec, trace=store_url)
    paused = await agent.run("look 7 up, close the account, refund 50")
    assert paused.status == "paused" and paused.state.awaiting_approval is not None
    assert paused.state.awaiting_approval.tool == "delete_account"
    agent.approve(paused.run_id, by="alice")
    resumed = await Agent.from_yaml(spec, trace=store_url).resume(paused.run_id)
    await agent.aclose()
    refund = [m.content for m in resumed.state.messages if m.name == "issue_refund"]
    assert refund and refund[0].startswith("Tool call refused by policy"), refund
    assert refunds_made(tmp_path) == []


RESUME_THROUGH_HARNESS = """\
import asyncio, sys
from tether import Agent
from tether.core import TetherError
from tether.runtime.approvals import answers_for, paused_state
from tether.runtime.paradigms import resume

async def main() -> int:
    agent = Agent.from_yaml(sys.argv[1], trace=sys.argv[2])
    harness = agent.harness
    store = harness.store()
    paused = paused_state(store, sys.argv[3])
    answers = list(answers_for(store, paused).values())
    try:
        async with harness.resume_run(paused, approvals=answers) as run:
            await resume(run)
    except TetherError as exc:
        print("refused:", exc.message)
        return 1
    finally:
        await agent.aclose()
    print("resumed:", run.result().outcome)
    return 0

sys.exit(asyncio.run(main()))
"""


def test_two_processes_resuming_through_the_harness_run_the_call_once(
    tmp_path: Path, store_url: str
) -> None:
    """``Harness.resume_run`` (the run scope's own resume, for code that is not an ``Agent``)
    did not claim the paused run: two resumes through it both ran the approved refund. It
    claims as ``Agent.resume`` does, in the scope, so every resume path does."""
    agent, outs = race_two_resumes(tmp_path, store_url, RESUME_THROUGH_HARNESS)
    assert any("resumed already" in out for out, _ in outs), outs
    assert refunds_made(tmp_path) == ["issue_refund 7 500"]
    resumed = [e for e in audit_entries(store_url) if e.kind == "run_resumed"]
    assert len(resumed) == 1 and resumed[0].actor == {
        "via": "sdk",
        "agent": "support",
        "agent_version": agent.version,
    }
