"""The spec's ``budgets`` section and budgets policy files: what they accept, what they refuse
(with file, line and field, never a traceback), what ``tether validate`` reports, and that adding
the section changed no existing agent's version."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes.specs import spec_error, write_spec
from tether import Agent
from tether.cli import cli
from tether.controls.budgets import BudgetRule, rules_of
from tether.core import SpecError
from tether.runtime import check_spec
from tether.spec import BudgetLimit, RateLimit, load_spec

BASE = """\
name: demo                  # 1
model:                      # 2
  provider: scripted        # 3
  name: gpt-4.1-mini        # 4
  script: demo.script.yaml  # 5
"""


SCRIPT = "steps: [{text: hi}]\n"
write = partial(write_spec, script=SCRIPT)
load_error = partial(spec_error, script=SCRIPT)


def test_the_section_loads_with_its_defaults(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            BASE + "budgets:\n"
            "  limits:\n"
            "    - {scope: project, window: month, usd: 500}\n"
            "    - {scope: end_user, window: day, usd: 2, tokens: 200_000}\n"
            "    - {scope: run, tokens: 1e5}\n"
            "  rate_limits:\n"
            "    - {scope: project, rpm: 600, tpm: 2000000}\n",
        )
    )
    budgets = spec.budgets
    assert budgets is not None
    assert (budgets.backend, budgets.fail_open, budgets.redis_url) == ("sql", False, None)
    assert (budgets.max_output_tokens, budgets.hold_s, budgets.wait_s) == (4096, None, 0.0)
    assert budgets.limits[2] == BudgetLimit(scope="run", window="run", tokens=100_000)
    assert budgets.rate_limits == [RateLimit(scope="project", rpm=600, tpm=2_000_000)]
    assert rules_of(budgets) == [
        BudgetRule("project", "month", "usd", 500_000_000),
        BudgetRule("end_user", "day", "tokens", 200_000),
        BudgetRule("end_user", "day", "usd", 2_000_000),
        BudgetRule("run", "run", "tokens", 100_000),
        BudgetRule("project", "minute", "requests", 600),
        BudgetRule("project", "minute", "tokens", 2_000_000),
    ]


def test_existing_versions_are_unchanged(tmp_path: Path) -> None:
    without = load_spec(write(tmp_path, BASE)).version
    assert load_spec(write(tmp_path, BASE + "budgets: null\n")).version == without
    with_budget = BASE + "budgets: {limits: [{scope: run, usd: 1}]}\n"
    assert load_spec(write(tmp_path, with_budget)).version != without


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        ("{scope: project, window: day, usd: -5}", "budgets.limits[0].usd", "greater than 0"),
        ("{scope: project, window: day, usd: 0}", "budgets.limits[0].usd", "greater than 0"),
        ("{scope: project, window: day, tokens: 0}", "budgets.limits[0].tokens", "greater"),
        ("{scope: project, window: day, tokens: -1}", "budgets.limits[0].tokens", "greater"),
        ("{scope: project, window: day, usd: 1e12}", "budgets.limits[0].usd", "10000000"),
        ("{scope: project, window: day, usd: .inf}", "budgets.limits[0].usd", "finite"),
        ("{scope: project, window: day, usd: .nan}", "budgets.limits[0].usd", "finite"),
        ("{scope: project, window: day, usd: 0.0000001}", "budgets.limits[0].usd", "millionths"),
        ("{scope: project, window: day, tokens: 1e20}", "budgets.limits[0].tokens", "less"),
        ("{scope: project, window: day, tokens: 1e99}", "budgets.limits[0].tokens", "less"),
        ("{scope: project, window: day, tokens: 1.5}", "budgets.limits[0].tokens", "integer"),
        ("{scope: project, window: day, tokens: true}", "budgets.limits[0].tokens", "true/false"),
        ("{scope: project, window: day, usd: true}", "budgets.limits[0].usd", "true/false"),
        ("{scope: project, window: day, usd: '$5'}", "budgets.limits[0].usd", "number"),
        ("{scope: team, window: day, usd: 5}", "budgets.limits[0].scope", "'end_user'"),
        ("{scope: project, window: week, usd: 5}", "budgets.limits[0].window", "'month'"),
        ("{scope: project, usd: 5}", "budgets.limits[0]", "needs a window: day or month"),
        ("{scope: project, window: run, usd: 5}", "budgets.limits[0]", "goes with scope 'run'"),
        ("{scope: run, window: day, usd: 5}", "budgets.limits[0]", "its window is 'run'"),
        ("{scope: project, window: day}", "budgets.limits[0]", "tokens, usd or both"),
        ("{scope: project, window: day, dollars: 5}", "budgets.limits[0].dollars", "Extra"),
    ],
)
def test_bad_budgets_name_file_line_and_field(
    tmp_path: Path, entry: str, field: str, says: str
) -> None:
    message = load_error(tmp_path, BASE + "budgets:\n  limits:\n    - " + entry + "\n")
    assert f"agent.yaml:8: {field}" in message
    assert says in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("section", "line", "field", "says"),
    [
        ("  rate_limits: [{scope: project, rpm: 0}]", 7, "budgets.rate_limits[0].rpm", "greater"),
        ("  rate_limits: [{scope: project, tpm: -3}]", 7, "budgets.rate_limits[0].tpm", "greater"),
        ("  rate_limits: [{scope: project, rpm: 1e9}]", 7, "budgets.rate_limits[0].rpm", "less"),
        ("  rate_limits: [{scope: project}]", 7, "budgets.rate_limits[0]", "rpm, tpm or both"),
        ("  rate_limits: [{scope: tenant, rpm: 5}]", 7, "budgets.rate_limits[0].scope", "agent"),
        ("  backend: memcached", 7, "budgets.backend", "'sql' or 'redis'"),
        ("  backend: sql\n  redis_url: redis://h:6379/0", 6, "budgets", "set backend: redis"),
        ("  backend: redis\n  redis_url: http://h:6379", 8, "budgets.redis_url", "redis://"),
        (
            "  backend: redis\n  redis_url: 'redis://:s3cret@h:6379/0'",
            8,
            "budgets.redis_url",
            "keep secrets out of specs",
        ),
        (  # redis-py reads a password from the query string too
            "  backend: redis\n  redis_url: 'redis://h:6379/0?password=s3cret'",
            8,
            "budgets.redis_url",
            "keep secrets out of specs",
        ),
        (
            "  backend: redis\n  redis_url: 'unix:///run/redis.sock?db=0&password=s3cret'",
            8,
            "budgets.redis_url",
            "keep secrets out of specs",
        ),
        (  # redis-py reads it as a list of characters: TypeError at the first timeout
            "  backend: redis\n  redis_url: 'redis://h:6379/0?retry_on_error=ConnectionError'",
            8,
            "budgets.redis_url",
            "sets retry_on_error, which Tether cannot use",
        ),
        ("  fail_open: maybe", 7, "budgets.fail_open", "boolean"),
        ("  hold_s: true", 7, "budgets.hold_s", "true/false"),
        ("  wait_s: true", 7, "budgets.wait_s", "true/false"),
        ("  max_output_tokens: true", 7, "budgets.max_output_tokens", "true/false"),
        ("  hold_s: 0", 7, "budgets.hold_s", "greater"),
        ("  hold_s: 1e9", 7, "budgets.hold_s", "86400"),
        ("  max_output_tokens: -1", 7, "budgets.max_output_tokens", "greater"),
        ("  wait_s: 3600", 7, "budgets.wait_s", "60"),
        ("  limit: []", 7, "budgets.limit", "Extra"),
        ("  policy: ''", 7, "budgets.policy", "at least 1"),
    ],
)
def test_bad_settings_name_file_line_and_field(
    tmp_path: Path, section: str, line: int, field: str, says: str
) -> None:
    message = load_error(tmp_path, BASE + "budgets:                   # 6\n" + section + "\n")
    assert f"agent.yaml:{line}: {field}" in message
    assert says in message


def test_a_budget_given_twice_is_refused(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        BASE + "budgets:\n"
        "  limits:\n"
        "    - {scope: project, window: day, usd: 5}\n"
        "    - {scope: project, window: day, tokens: 1000}\n"  # another counter: fine
        "    - {scope: project, window: day, usd: 7}\n",
    )
    assert "agent.yaml:7: budgets.limits: limits[2]: usd per day of scope project" in message
    assert "already given by limits[0]" in message
    message = load_error(
        tmp_path,
        BASE + "budgets:\n  rate_limits: [{scope: agent, rpm: 5}, {scope: agent, tpm: 9}]\n",
    )
    assert "rate_limits[1]: scope agent is already limited by rate_limits[0]" in message


def test_a_redis_backend_without_a_url_is_refused_naming_the_line(tmp_path: Path) -> None:
    spec = write(tmp_path, BASE + "budgets:\n  backend: redis\n  limits: [{scope: run, usd: 1}]\n")
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(spec, trace=False)
    assert "agent.yaml:7: budgets.backend is 'redis' but no Redis is named" in str(info.value)
    assert "TETHER_REDIS_URL" in str(info.value)
    check = check_spec(spec)  # validate: what the environment lacks, not an error
    assert check.missing_env == ["TETHER_REDIS_URL"]


def test_a_dollar_budget_on_an_unpriced_model_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("gpt-4.1-mini", "my-finetune") + "budgets:\n  limits:\n"
    spec = write(tmp_path, text + "    - {scope: project, window: day, usd: 5}\n")
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(spec, trace=False)
    message = str(info.value)
    assert "agent.yaml:6: budgets: a US-dollar budget is set" in message
    assert "no price for my-finetune" in message
    with pytest.raises(SpecError, match="no price for my-finetune"):
        check_spec(spec)
    tokens = write(tmp_path, text + "    - {scope: project, window: day, tokens: 5000}\n")
    assert Agent.from_yaml(tokens, trace=False).harness.budget is not None


def test_a_policy_file_shares_budgets_and_its_errors_name_it(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "budgets.yaml").write_text(
        "budgets:\n"
        "  backend: sql\n"
        "  fail_open: true\n"
        "  limits:\n"
        "    - {scope: project, window: month, usd: 100}\n"
        "  rate_limits:\n"
        "    - {scope: project, rpm: 60}\n"
    )
    spec = write(
        tmp_path,
        BASE + "budgets:\n"
        "  policy: policies/budgets.yaml\n"
        "  fail_open: false\n"
        "  limits:\n"
        "    - {scope: project, window: month, usd: 50}\n"  # the same budget, smaller: it holds
        "    - {scope: run, tokens: 9000}\n",
    )
    agent = Agent.from_yaml(spec, trace=False)
    control = agent.harness.budget
    assert control is not None and control.fail_open is False  # the spec's own setting wins
    assert control.rules == [
        BudgetRule("project", "month", "usd", 100_000_000),
        BudgetRule("project", "month", "usd", 50_000_000),
        BudgetRule("run", "run", "tokens", 9000),
        BudgetRule("project", "minute", "requests", 60),
    ]
    assert check_spec(spec).missing_env == []

    (policies / "budgets.yaml").write_text(
        "budgets:\n  limits:\n    - {scope: project, window: fortnight, usd: 100}\n"
    )
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(spec, trace=False)
    assert "budgets.yaml:3: budgets.limits[0].window" in str(info.value)
    (policies / "budgets.yaml").write_text("budgets:\n  policy: other.yaml\n")
    with pytest.raises(SpecError, match=r"budgets\.yaml:2: budgets\.policy: Extra"):
        Agent.from_yaml(spec, trace=False)
    (policies / "budgets.yaml").unlink()
    with pytest.raises(SpecError, match=r"budgets\.yaml: file not found"):
        check_spec(spec)


def test_validate_reports_a_bad_budget_without_a_traceback(tmp_path: Path) -> None:
    spec = write(tmp_path, BASE + "budgets:\n  limits: [{scope: project, window: day, usd: -1}]\n")
    result = CliRunner().invoke(cli, ["validate", str(spec), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert problems[0]["line"] == 7
    assert problems[0]["field"] == "budgets.limits[0].usd"
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "budgets.limits[0].usd" in result.output
