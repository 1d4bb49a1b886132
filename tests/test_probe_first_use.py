"""Slips a new user makes while following the README, through the real ``tether`` command."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from fakes.cli import run_cli
from fakes.stored_runs import add_run
from tether.store import Store


@pytest.mark.parametrize("url", ["/tmp/tether.db", "sqlite:/tmp/tether.db"])
@pytest.mark.parametrize(
    "command",
    [("traces", "list"), ("traces", "show", "abcdef"), ("approvals", "list"), ("audit", "verify")],
)
def test_a_database_url_that_does_not_parse_is_a_user_error(
    url: str, command: tuple[str, ...]
) -> None:
    """A bare path or ``sqlite:/path`` was an "unexpected error ... please report it" from
    the commands that find the store's trace journal before opening it."""
    result = run_cli("--database-url", url, *command)
    assert result.returncode == 1
    assert f"error: invalid database URL '{url}'" in result.stderr
    assert "sqlite:///" in result.stderr and "unexpected error" not in result.stderr
    as_json = run_cli("--database-url", url, *command, "--json")
    assert json.loads(as_json.stdout)["error"] == f"invalid database URL '{url}'"


@pytest.mark.parametrize(
    ("section", "missing"),
    [
        ("guards:\n  policy: ../policies/shop.yaml\n", "policies/shop.yaml"),
        ("authorization:\n  policies: [policies/tools.cedar]\n", "agents/policies/tools.cedar"),
        ("output:\n  json_schema: answer.schema.json\n", "agents/answer.schema.json"),
    ],
)
def test_a_missing_file_a_spec_names_is_shown_where_it_was_looked_for(
    tmp_path: Path, section: str, missing: str
) -> None:
    """The hint said "relative paths start from <the current folder>", but a path in a spec
    is taken from the spec's folder: run from elsewhere, it sent the user to the wrong one."""
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "script.yaml").write_text("steps: [{text: hi}]\n")
    (agents / "agent.yaml").write_text(
        "name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n" + section
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ("validate", "run"):
        extra = ["-i", "hi"] if command == "run" else []
        result = run_cli(command, str(agents / "agent.yaml"), *extra, cwd=elsewhere)
        assert result.returncode == 1, result.stderr
        assert "not found" in result.stderr
        assert f"hint: no file at {tmp_path / missing}" in result.stderr
        assert str(elsewhere) not in result.stderr


def test_every_guard_decision_in_a_trace_says_why(tmp_path: Path, sqlite_url: str) -> None:
    """The PII guard's allow at before_tool, for arguments it had judged with the model's
    reply, was recorded with no reason: ``guard.pii allow at before_tool: `` and nothing."""
    (tmp_path / "tools.py").write_text("def lookup(q: str) -> str:\n    return 'found ' + q\n")
    (tmp_path / "script.yaml").write_text(
        "steps:\n  - tool_calls: [{name: lookup, arguments: {q: shipping}}]\n  - text: done\n"
    )
    (tmp_path / "agent.yaml").write_text(
        "name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        "tools: [{name: lookup, function: tools.py:lookup, side_effects: read}]\n"
        "guards: {rules: [{guard: pii, action: mask}]}\n"
    )
    ran = run_cli("--database-url", sqlite_url, "run", str(tmp_path / "agent.yaml"), "-i", "hi")
    assert ran.returncode == 0, ran.stderr
    listed = run_cli("--database-url", sqlite_url, "traces", "list", "--json")
    run_id = json.loads(listed.stdout)["runs"][0]["run_id"]
    shown = run_cli("--database-url", sqlite_url, "traces", "show", run_id, "--json")
    decisions = [
        e["attributes"]
        for e in json.loads(shown.stdout)["events"]
        if e["name"] == "tether.control.decision"
    ]
    hooks = {d["tether.control.hook"] for d in decisions}
    assert "before_tool" in hooks, decisions
    assert all(d.get("tether.decision.reason") for d in decisions), decisions
    wide = {**os.environ, "COLUMNS": "200"}
    text = run_cli("--database-url", sqlite_url, "traces", "show", run_id, env=wide).stdout
    assert "allow at before_tool: arguments judged with the model's reply" in text


def test_traces_list_on_an_80_column_terminal_keeps_cost_and_latency(sqlite_url: str) -> None:
    """Rich cropped the table at the terminal's right edge: at 80 columns the cost and latency
    columns were cut off, the input and tokens shown instead. Now the least needed columns
    give way first, and every line fits."""
    seeded = add_run(Store(sqlite_url), agent="resilient-support", cost_usd=0.000935)
    narrow = {**os.environ, "COLUMNS": "80"}
    listed = run_cli("--database-url", sqlite_url, "traces", "list", env=narrow)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), listed.stdout
    header, _rule, row = lines[:3]
    for column in ("run", "agent", "outcome", "cost", "latency"):
        assert column in header, header
    assert seeded.run_id in row and "$0.000935" in row and "1.20 s" in row, row


def test_the_demo_summary_on_an_80_column_terminal_shows_whole_costs(tmp_path: Path) -> None:
    """At 80 columns the summary's cost column was cut to ``$0.0`` (free, at a glance) and
    its latency and run columns were gone."""
    narrow = {**os.environ, "COLUMNS": "80", "TETHER_HOME": str(tmp_path / "home")}
    done = run_cli("demo", env=narrow)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("Summary", 1)[1].split("Traces are stored", 1)[0]
    assert all(len(line) <= 80 for line in summary.splitlines()), summary
    loop = next(line for line in summary.splitlines() if "loop broken" in line)
    assert "loop_detected" in loop and re.search(r"\$0\.\d{6} ", loop), loop
    assert re.search(r"\d ms", loop), loop
