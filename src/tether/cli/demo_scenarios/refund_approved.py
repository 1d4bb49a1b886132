"""Demo scenario: a refund that needs a person's approval, approved, and the run resumed.

The refunds example's ``refund-approval`` policy (``@escalate``) asks a person before any
refund over 100. Asked to refund 250, the run pauses on the ``issue_refund`` call; the demo
approves that call as ``demo-manager`` (an ``approval`` entry in the audit log) and resumes
the run: the approved call runs once and the model answers. What ``tether approvals approve``
and ``tether resume`` do from the command line.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tether.cli.demo import print_run
from tether.cli.demo_scenarios.report import ScenarioReport
from tether.core import Outcome
from tether.runtime import Agent
from tether.runtime.scope import TraceTarget

NAME = "refund approved by a person"
QUESTION = "Please refund 250.00 on order 1002."
TOOL = "issue_refund"
APPROVER = "demo-manager"
WHY = "checked the order"


async def refund_approved(trace: TraceTarget, examples: Path) -> ScenarioReport:
    """Pause on the refund, approve it, resume; say what each step did."""
    async with Agent.from_yaml(examples / "refunds" / "agent.yaml", trace=trace) as agent:
        paused = await agent.run(QUESTION, metadata={"demo": NAME})
        waiting = paused.state.awaiting_approval
        if waiting is None:  # the policy did not ask: nothing to approve
            answer, resumed = None, None
        else:
            answer = agent.approve(paused.run_id, by=APPROVER, reason=WHY)
            resumed = await agent.resume(paused.run_id, actor={"via": "demo"})
    refunds = [r for r in (resumed.state.tool_history if resumed else []) if r.name == TOOL]
    call = next((c for c in paused.state.pending_tool_calls if c.name == TOOL), None)
    args = ", ".join(f"{k}={v}" for k, v in (call.arguments if call else {}).items())

    def show(console: Console) -> None:
        console.print(f"[cyan]user:[/]  {escape(QUESTION)}", highlight=False)
        asked = waiting.reason if waiting else "(the run did not pause)"
        console.print(f"[dim]paused:[/] {escape(asked)}", highlight=False)
        if answer is not None and resumed is not None:
            console.print(
                f"[dim]approved:[/] {TOOL}({escape(args)}) by {escape(answer.approver)} "
                f"({escape(answer.reason)}), then resumed as run {resumed.run_id}: the "
                f"refund ran {len(refunds)} time(s)",
                highlight=False,
            )
            print_run(console, QUESTION, resumed, user=False)

    return ScenarioReport(
        name=NAME,
        agent=agent.name,
        as_expected=(
            paused.outcome == Outcome.ESCALATED
            and resumed is not None
            and resumed.outcome == Outcome.FINAL_ANSWER
            and len(refunds) == 1
        ),
        show=show,
        runs=[paused, *([resumed] if resumed else [])],
        data={
            "input": QUESTION,
            "paused_run_id": paused.run_id,
            "escalation": waiting.reason if waiting else None,
            "approval": answer.to_json() if answer else None,
            "resumed_run_id": resumed.run_id if resumed else None,
            "refunds_made": len(refunds),
            "output": resumed.output if resumed else paused.output,
        },
    )
