"""Demo scenario: a refund tool call denied by a Cedar policy, the policy named.

The refunds example (``examples/refunds``) has its tool calls decided by Cedar policies
(``policies/refunds.cedar``): refunds up to 100 run, larger ones wait for a person's approval,
and the ``refund-cap`` forbid refuses anything over 1,000. Asked to refund 1,500, the model
calls ``issue_refund``; Cedar denies it naming ``refund-cap``, the tool never runs, and the
model is told why and answers the customer.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tether.cli import render
from tether.cli.demo import print_run
from tether.cli.demo_scenarios.report import ScenarioReport
from tether.core import Outcome
from tether.runtime import Agent, RunResult
from tether.runtime.scope import TraceTarget

NAME = "refund denied by policy"
QUESTION = "Please refund 1500.00 on order 1003."
TOOL = "issue_refund"
_DENIED = re.compile(r"denied by Cedar polic(?:y|ies) (?P<ids>.+)$")


def _refusal(result: RunResult) -> str | None:
    """What the model was told about the refund call, when it was refused."""
    for m in result.state.messages:
        if m.role == "tool" and m.name == TOOL and m.content.startswith("Tool call refused"):
            return m.content
    return None


async def refund_denied(trace: TraceTarget, examples: Path) -> ScenarioReport:
    """Run the refunds agent on a refund over the cap and say what Cedar decided."""
    async with Agent.from_yaml(examples / "refunds" / "agent.yaml", trace=trace) as agent:
        result = await agent.run(QUESTION, metadata={"demo": NAME})
    refusal = _refusal(result)
    found = _DENIED.search(refusal or "")
    policies = [p.strip() for p in found.group("ids").split(",")] if found else []
    ran = any(r.name == TOOL for r in result.state.tool_history)
    call = next(
        (c for m in result.state.messages for c in m.tool_calls if c.name == TOOL),
        None,
    )

    def show(console: Console) -> None:
        print_run(console, QUESTION, result)
        args = ", ".join(f"{k}={v}" for k, v in (call.arguments if call else {}).items())
        who = f"Cedar policy [bold]{escape(', '.join(policies))}[/]" if policies else "nothing"
        console.print(
            f"[dim]why:[/] {who} denied {TOOL}({escape(args)}); "
            + ("[red]the tool ran[/]" if ran else "the tool did not run"),
            highlight=False,
        )

    return ScenarioReport(
        name=NAME,
        agent=agent.name,
        as_expected=(
            result.outcome == Outcome.FINAL_ANSWER and policies == ["refund-cap"] and not ran
        ),
        show=show,
        runs=[result],
        data={
            "input": QUESTION,
            "tool": TOOL,
            "arguments": call.arguments if call else None,
            "denied_by": policies,
            "tool_ran": ran,
            "reason": refusal,
            **render.result_json(result),
        },
    )
