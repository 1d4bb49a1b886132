"""The demo's issue-14 scenarios, each run as ``tether demo`` runs it and checked in the trace
it leaves: a refund denied by a Cedar policy (the policy named, the tool never run), a
calculation in the sandbox (or, without bubblewrap, a clear skip with no code run), and the
registry ``tether demo`` reads them from."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from fakes.cli import run_cli
from fakes.sandbox import require_sandbox
from fakes.traces import trace_of
from tether.cli.demo import examples_dir
from tether.cli.demo_scenarios import (
    SCENARIOS,
    failing_upstream_scenario,
    refund_approved,
    refund_denied,
    sandboxed_calculation,
)
from tether.cli.demo_scenarios.report import ScenarioReport
from tether.sandbox.command import BWRAP_ENV
from tether.store import Store
from tether.trace import semconv, writer_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def shown(report: ScenarioReport) -> str:
    console = Console(record=True, width=200)
    report.show(console)
    return console.export_text()


def test_the_demo_runs_the_scenarios_in_order() -> None:
    assert SCENARIOS[:2] == [refund_denied, refund_approved]
    assert failing_upstream_scenario in SCENARIOS
    assert SCENARIOS.index(failing_upstream_scenario) < SCENARIOS.index(sandboxed_calculation)
    assert examples_dir() == EXAMPLES  # a checkout: the repository's examples


def test_a_refund_over_the_cap_is_denied_naming_the_policy(sqlite_url: str) -> None:
    report = asyncio.run(refund_denied(writer_for(sqlite_url), EXAMPLES))

    assert report.as_expected, report.to_json()
    data = report.to_json()
    assert data["denied_by"] == ["refund-cap"] and data["tool_ran"] is False
    assert data["arguments"] == {"order_id": "1003", "amount": "1500.00"}
    text = shown(report)
    assert "why: Cedar policy refund-cap denied issue_refund(order_id=1003, amount=1500.00)" in text
    assert "the tool did not run" in text and "issue_refund⊘ refused" in text

    (run,) = report.runs
    _, spans, events = trace_of(sqlite_url, run.run_id)
    (refund,) = [s for s in spans if s.attributes.get(semconv.GEN_AI_TOOL_NAME) == "issue_refund"]
    assert refund.status == "error"
    assert refund.status_message.endswith("denied by Cedar policy refund-cap")
    (block,) = [
        e.attributes
        for e in events
        if e.span_id == refund.span_id and e.name == semconv.EVENT_CONTROL_DECISION
    ]
    assert block[semconv.TETHER_DECISION] == "block"
    assert block[semconv.TETHER_CONTROL_NAME] == "cedar_authorization"
    assert block[semconv.TETHER_DECISION_REASON] == (
        "tool 'issue_refund' denied by Cedar policy refund-cap"
    )
    # The look-up before it was permitted, and ran.
    assert [r.name for r in run.state.tool_history] == ["lookup_order"]
    # The denial and the policy load are in the audit log.
    from tether.store.audit import iter_audit

    with Store(sqlite_url).engine.connect() as conn:
        entries = [e for e, _, _ in iter_audit(conn)]
    kinds = [(e.kind, e.details.get("reason", "")) for e in entries]
    assert ("decision", "tool 'issue_refund' denied by Cedar policy refund-cap") in kinds
    (load,) = [e for e in entries if e.kind == "policy_load" and e.actor["agent"] == "refunds"]
    assert load.details["policies"] == [
        "lookups",
        "refund-approval",
        "refund-cap",
        "small-refunds",
    ]


def test_a_refund_needing_approval_pauses_is_approved_and_runs_once(sqlite_url: str) -> None:
    report = asyncio.run(refund_approved(writer_for(sqlite_url), EXAMPLES))

    assert report.as_expected, report.to_json()
    paused, resumed = report.runs
    assert (paused.outcome, resumed.outcome) == ("escalated", "final_answer")
    assert report.main_run is resumed
    data = report.to_json()
    assert data["approval"]["approver"] == "demo-manager" and data["refunds_made"] == 1
    assert '"refunded":250.0' in data["output"]
    text = shown(report)
    assert "needs approval under Cedar policy refund-approval" in text
    assert f"by demo-manager (checked the order), then resumed as run {resumed.run_id}" in text
    assert "tools: lookup_order✓, issue_refund✓  outcome final_answer" in text

    from tether.store.audit import iter_audit

    with Store(sqlite_url).engine.connect() as conn:
        kinds = [(e.kind, e.run_id) for e, _, _ in iter_audit(conn)]
    assert ("approval", paused.run_id) in kinds and ("run_resumed", paused.run_id) in kinds
    run, _, _ = trace_of(sqlite_url, resumed.run_id)
    assert run.attributes["resumed_from"] == paused.run_id


def test_the_refund_policies_pass_their_own_fixtures() -> None:
    proc = run_cli("policy", "test", str(EXAMPLES / "refunds" / "policies" / "fixtures.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 of 4 cases passed" in proc.stdout


def test_the_sandboxed_calculation_runs_the_models_program(sqlite_url: str) -> None:
    require_sandbox()
    report = asyncio.run(sandboxed_calculation(writer_for(sqlite_url), EXAMPLES))

    assert report.as_expected, report.to_json()
    assert report.skipped is None
    data = report.to_json()
    assert data["sandbox"]["exit_code"] == 0 and data["sandbox"]["killed_reason"] is None
    assert data["output"] == "25! = 15511210043330985984000000"  # no newline of print()
    assert "math.factorial(25)" in data["code"]
    text = shown(report)
    assert "'import math; print(math.factorial(25))' exited 0 in" in text
    assert "no network" in text

    _, spans, _ = trace_of(sqlite_url, report.runs[0].run_id)
    (tool,) = [s for s in spans if s.kind == "tool"]
    assert tool.status != "error"
    result = json.loads(tool.attributes[semconv.GEN_AI_TOOL_CALL_RESULT])
    assert result["stdout"] == "15511210043330985984000000\n"


def test_without_bubblewrap_the_calculation_is_skipped_saying_why(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BWRAP_ENV, "/nonexistent/bwrap")
    report = asyncio.run(sandboxed_calculation(writer_for(sqlite_url), EXAMPLES))

    assert report.as_expected and report.runs == [] and report.main_run is None
    assert report.skipped is not None
    assert "bubblewrap (bwrap) is not installed" in report.skipped
    assert "fails closed, so no code ran" in report.skipped
    assert report.to_json()["hint"]
    text = shown(report)
    assert text.startswith("skipped: bubblewrap (bwrap) is not installed")
    assert "hint: install bubblewrap" in text
    writer_for(sqlite_url).flush()
    assert Store(sqlite_url).list_runs() == []  # no run was made


def test_a_bwrap_that_cannot_start_is_a_skip_too(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv(BWRAP_ENV, str(fake))
    report = asyncio.run(sandboxed_calculation(writer_for(sqlite_url), EXAMPLES))

    assert report.as_expected and report.runs == []
    assert report.skipped is not None and "Permission denied" in report.skipped


def test_the_demo_without_bubblewrap_ends_well_saying_the_sandbox_was_skipped(
    tmp_path: Path,
) -> None:
    """The whole demo with the sandbox missing: every other scenario as expected (exit 0),
    the sandbox one skipped, saying why."""
    env = {**os.environ, BWRAP_ENV: "/nonexistent/bwrap", "COLUMNS": "200"}
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    proc = run_cli("--database-url", db, "demo", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "11. sandboxed calculation (calculator) (skipped)" in proc.stdout
    assert "the sandbox fails closed, so no code ran" in proc.stdout
    assert "sandboxed calculation                │ skipped" in proc.stdout
    assert proc.stdout.count("traces show ") == 11  # every scenario that made a run
