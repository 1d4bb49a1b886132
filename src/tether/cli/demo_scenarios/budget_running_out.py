"""Demo scenario: a budget running out mid-run.

An analyst agent (a scripted model priced as ``gpt-4.1-mini``, ``max_tokens`` 300) is asked to
compare four quarterly reports; each report it fetches is long, so each model call's input
grows. Its spec gives every run a budget of $0.002. Before each model call the budgets
control reserves the call's worst case (its input, estimated, plus 300 output tokens, at the
model's price) and after it reconciles with what the call cost. Three calls fit; the fourth
would need up to about $0.0015 with $0.0012 spent, so it is never made: the run ends with
outcome ``budget_exceeded``, a message naming the budget, and what it found so far kept. The
counters live in the demo's store (the SQL backend), next to the trace.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tether.cli import render
from tether.cli.demo import print_run
from tether.cli.demo_scenarios.report import ScenarioReport
from tether.core import Outcome
from tether.providers import ScriptedModel
from tether.runtime import Agent
from tether.runtime.scope import TraceTarget
from tether.spec import AgentSpec, BudgetsConfig, ModelConfig
from tether.tools import tool

NAME = "budget running out mid-run"
QUESTION = "Compare our four quarterly reports for 2026 and tell me which quarter grew most."
BUDGET_USD = 0.002
QUARTERS = ("Q1", "Q2", "Q3", "Q4")


@tool(side_effects="read")
def fetch_report(quarter: str) -> str:
    """Fetch the full quarterly report of 2026 for one quarter (Q1 to Q4)."""
    lines = [f"Acme Outfitters, quarterly report 2026 {quarter}."]
    for region in ("North", "South", "East", "West", "Online", "Wholesale"):
        lines.append(
            f"{region}: revenue grew steadily on outdoor apparel; footwear held level; returns "
            "stayed under four percent; the new loyalty program added repeat customers; "
            "shipping costs fell after the carrier change; inventory turned faster than plan."
        )
    return "\n".join(lines * 2)


def _spec() -> AgentSpec:
    return AgentSpec(
        name="analyst",
        persona="You are an analyst who reads Acme's quarterly reports.",
        model=ModelConfig(name="gpt-4.1-mini", script="(in code)", max_tokens=300),
        budgets=BudgetsConfig(limits=[{"scope": "run", "usd": BUDGET_USD}]),
    )


def _model() -> ScriptedModel:
    steps: list[dict[str, object]] = [
        {"tool_calls": [{"name": "fetch_report", "arguments": {"quarter": q}}]} for q in QUARTERS
    ]
    steps.append({"text": "Q3 grew most."})
    return ScriptedModel(steps, name="gpt-4.1-mini")


async def budget_running_out(trace: TraceTarget, examples: Path) -> ScenarioReport:
    """Run the analyst until its per-run budget has no room for the next model call."""
    async with Agent(_spec(), model=_model(), tools=[fetch_report], trace=trace) as agent:
        result = await agent.run(QUESTION, metadata={"demo": NAME})
    fetched = [r.name for r in result.state.tool_history]

    def show(console: Console) -> None:
        print_run(console, QUESTION, result)
        console.print(
            f"[dim]budget:[/] ${BUDGET_USD:g} per run; spent {render.fmt_cost(result.cost_usd)} "
            f"in {result.state.turns} model calls, {len(fetched)} of {len(QUARTERS)} reports "
            "read; each call reserved its worst case first and was charged its real cost after",
            highlight=False,
        )

    return ScenarioReport(
        name=NAME,
        agent=agent.name,
        as_expected=result.outcome == Outcome.BUDGET_EXCEEDED and len(fetched) == 3,
        show=show,
        runs=[result],
        data={
            "input": QUESTION,
            "budget_usd": BUDGET_USD,
            "reports_read": len(fetched),
            **render.result_json(result),
        },
    )
