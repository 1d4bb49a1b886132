"""The demo's "budget running out mid-run" scenario: three model calls fit in the run's $0.002,
the fourth is never made; the run ends ``budget_exceeded`` with a message naming the budget,
and the trace and the budget's counters (in the same SQLite file) say so."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from fakes.traces import trace_of
from tether.cli.demo_scenarios import SCENARIOS, budget_running_out
from tether.controls.budget_sql import SqlBudgetLedger
from tether.core import Outcome


async def test_the_budget_runs_out_after_three_calls(sqlite_url: str, tmp_path: Path) -> None:
    assert budget_running_out in SCENARIOS
    report = await budget_running_out(sqlite_url, tmp_path)
    assert report.as_expected and report.name == "budget running out mid-run"
    [result] = report.runs
    assert result.outcome is Outcome.BUDGET_EXCEEDED and result.state.turns == 3
    assert [r.name for r in result.state.tool_history] == ["fetch_report"] * 3
    assert "a usage budget has been reached (US dollars per run of this request: $0.002)" in (
        result.output
    )
    assert report.data["reports_read"] == 3 and report.data["outcome"] == "budget_exceeded"

    out = io.StringIO()
    report.show(Console(file=out, width=200, color_system=None))
    shown = out.getvalue()
    assert "outcome budget_exceeded" in shown
    assert "the budget on US dollars per run of run " in shown and "limit $0.002" in shown
    assert "3 of 4 reports read" in shown

    run, _, events = trace_of(sqlite_url, result.run_id)
    assert run.outcome == "budget_exceeded"
    [block] = [e.attributes for e in events if e.attributes.get("tether.decision") == "block"]
    assert block["tether.control.name"] == "budgets" and block["tether.budget.limit"] == 0.002
    ledger = SqlBudgetLedger(sqlite_url)  # the counters went to the demo's store
    try:
        used, held = ledger.spent(f"run:{result.run_id}:usd:run:run")
    finally:
        ledger.close()
    assert held == 0 and used == block["tether.budget.used"] * 1_000_000
    assert abs(used / 1e6 - (result.cost_usd or 0)) < 3e-6  # each call rounded to a millionth
