"""Cedar authorization end to end: real agents from YAML specs (ScriptedModel, Python tools),
traces in a real SQLite file, and the ``tether`` command in a child process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fakes.cli import run_cli
from fakes.traces import control_decisions
from tether import Agent, Control, Decision, HookContext, ToolCall, ToolResult
from tether.core import SpecError
from tether.spec import load_spec
from tether.trace import semconv

TOOLS_PY = """\
from pathlib import Path

LOG = Path(__file__).with_name("calls.log")


def lookup_order(order_id: int) -> str:
    \"\"\"Look an order up.\"\"\"
    with LOG.open("a") as f:
        f.write(f"lookup_order {order_id}\\n")
    return f"order {order_id}: shipped"


def issue_refund(order_id: int, amount: int) -> str:
    \"\"\"Refund an order.\"\"\"
    with LOG.open("a") as f:
        f.write(f"issue_refund {order_id} {amount}\\n")
    return f"refunded {amount} on order {order_id}"


def delete_account(user: str) -> str:
    \"\"\"Delete a user's account.\"\"\"
    with LOG.open("a") as f:
        f.write(f"delete_account {user}\\n")
    return "deleted"
"""

SCRIPT = """\
rules:
  - when: 'refund (?P<amount>\\d+) on (?P<order>\\d+)'
    steps:
      - tool_calls: [{name: issue_refund, arguments: {order_id: "{order}", amount: "{amount}"}}]
      - text: "Refund: {result:issue_refund}"
  - when: 'delete (?P<user>\\w+)'
    steps:
      - tool_calls: [{name: delete_account, arguments: {user: "{user}"}}]
      - text: "Delete: {result:delete_account}"
steps:
  - tool_calls: [{name: lookup_order, arguments: {order_id: 7}}]
  - text: "Lookup: {result:lookup_order}"
"""

POLICIES = """\
@id("support-lookups")
permit(principal == Tether::Agent::"support", action == Tether::Action::"lookup_order", resource);

@id("small-refunds")
permit(principal == Tether::Agent::"support", action == Tether::Action::"issue_refund", resource)
when { context.args.amount <= 100 };

@id("refund-approval")
@escalate("refunds over 100 need a manager's approval")
permit(principal, action == Tether::Action::"issue_refund", resource)
when { context.args.amount > 100 };

@id("refund-limit")
forbid(principal, action == Tether::Action::"issue_refund", resource)
when { context.args.amount > 1000 };
"""

SPEC = """\
name: support
model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}
tools:
  - {name: lookup_order, function: tools.py:lookup_order, side_effects: read}
  - {name: issue_refund, function: tools.py:issue_refund, side_effects: external}
  - {name: delete_account, function: tools.py:delete_account, side_effects: write}
"""
AUTHORIZATION = "authorization:\n  policies: [policies/tools.cedar]\n"


def make_agent_dir(tmp_path: Path, *, policies: str = POLICIES, authorized: bool = True) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "script.yaml").write_text(SCRIPT)
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "tools.cedar").write_text(policies)
    spec = tmp_path / "agent.yaml"
    spec.write_text(SPEC + (AUTHORIZATION if authorized else ""))
    return spec


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def decisions(url: str, run_id: str) -> list[dict[str, Any]]:
    return control_decisions(url, run_id, "cedar_authorization")


async def test_a_denied_call_is_refused_and_recorded_as_a_block(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(make_agent_dir(tmp_path), trace=sqlite_url)
    result = await agent.run("please refund 5000 on 7")
    assert result.outcome == "final_answer"  # a refused call is told to the model; it goes on
    assert (
        "Tool call refused by policy: tool 'issue_refund' denied by Cedar policy refund-limit"
        in (result.output or "")
    )
    assert calls(tmp_path) == []  # the tool never ran
    (block,) = decisions(sqlite_url, result.run_id)
    assert block[semconv.TETHER_DECISION] == "block"
    assert block[semconv.TETHER_CONTROL_HOOK] == "before_tool"
    assert block[semconv.TETHER_DECISION_REASON] == (
        "tool 'issue_refund' denied by Cedar policy refund-limit"
    )


async def test_a_call_no_policy_permits_is_denied_by_default(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(make_agent_dir(tmp_path), trace=sqlite_url)
    result = await agent.run("delete bob")
    assert calls(tmp_path) == []
    (block,) = decisions(sqlite_url, result.run_id)
    assert "no Cedar policy permits it (default deny)" in block[semconv.TETHER_DECISION_REASON]


async def test_a_permitted_call_runs_and_its_policy_is_recorded(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(make_agent_dir(tmp_path), trace=sqlite_url)
    result = await agent.run("please refund 50 on 7")
    assert result.output == "Refund: refunded 50 on order 7"
    assert calls(tmp_path) == ["issue_refund 7 50"]
    (allow,) = decisions(sqlite_url, result.run_id)
    assert allow[semconv.TETHER_DECISION] == "allow"
    assert allow[semconv.TETHER_DECISION_REASON].endswith("permitted by Cedar policy small-refunds")


async def test_an_escalating_policy_pauses_the_run_for_approval(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(make_agent_dir(tmp_path), trace=sqlite_url)
    result = await agent.run("please refund 500 on 7")
    assert (result.outcome, result.status) == ("escalated", "paused")
    assert calls(tmp_path) == []
    assert [c.name for c in result.state.pending_tool_calls] == ["issue_refund"]
    (asked,) = decisions(sqlite_url, result.run_id)
    assert asked[semconv.TETHER_DECISION] == "escalate"
    assert "refund-approval" in asked[semconv.TETHER_DECISION_REASON]
    assert "manager's approval" in asked[semconv.TETHER_DECISION_REASON]


async def test_without_an_authorization_section_every_declared_tool_may_run(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(make_agent_dir(tmp_path, authorized=False), trace=sqlite_url)
    result = await agent.run("please refund 5000 on 7")
    assert calls(tmp_path) == ["issue_refund 7 5000"]
    assert decisions(sqlite_url, result.run_id) == []


async def test_tools_passed_in_python_are_in_the_schema_too(tmp_path: Path) -> None:
    from tether import tool

    @tool(side_effects="read")
    def weather(city: str) -> str:
        """Weather."""
        return "sunny"

    spec = make_agent_dir(
        tmp_path,
        policies=POLICIES
        + 'permit(principal, action == Tether::Action::"weather", resource)'
        + ' when { context.args.city == "Paris" };\n',
    )
    agent = Agent.from_yaml(spec, tools=[weather], trace=False)
    assert "weather" in agent.tools


def test_a_policy_typo_fails_when_the_agent_loads_naming_file_and_line(tmp_path: Path) -> None:
    typo = POLICIES.replace("context.args.amount <= 100", "context.args.amuont <= 100")
    spec = make_agent_dir(tmp_path, policies=typo)
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(spec, trace=False)
    policy_file = tmp_path / "policies" / "tools.cedar"
    assert str(spec) in info.value.message
    assert f"{policy_file}:6: attribute `args.amuont`" in info.value.message


def test_validate_checks_the_policies_as_run_does(tmp_path: Path) -> None:
    """`tether validate` makes the checks `tether run` makes: a policy typo is refused there
    too, naming the policy file and line (with --no-import the tools, whose argument types
    type the policies, are not built: it parses them and says they were not checked against the
    tools)."""
    typo = POLICIES.replace("context.args.amount <= 100", "context.args.amuont <= 100")
    spec = make_agent_dir(tmp_path, policies=typo)
    done = run_cli("validate", str(spec), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert f"{tmp_path / 'policies' / 'tools.cedar'}:6: attribute `args.amuont`" in done.stderr
    no_import = run_cli("validate", str(spec), "--no-import", cwd=tmp_path)
    assert no_import.returncode == 0
    assert "Cedar policies were parsed, not checked against the tools" in no_import.stdout
    assert calls(tmp_path) == []


def test_validate_says_an_agent_without_tools_has_nothing_to_authorize(tmp_path: Path) -> None:
    """An authorization section on an agent that declares no tools: Cedar's own words
    ("unable to find an applicable action") left the user guessing; the error says why."""
    spec = make_agent_dir(tmp_path)
    spec.write_text(spec.read_text().split("tools:\n")[0] + AUTHORIZATION)
    done = run_cli("validate", str(spec), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "the agent declares no tools" in done.stderr
    assert f"{tmp_path / 'policies' / 'tools.cedar'}:" in done.stderr  # where, still
    assert "declare the agent's tools (tools:)" in done.stderr


def test_the_command_line_shows_a_broken_policy_without_a_traceback(tmp_path: Path) -> None:
    broken = POLICIES.replace(
        "when { context.args.amount > 1000 };", "when { context.args.amount > };"
    )
    spec = make_agent_dir(tmp_path, policies=broken)
    done = run_cli("run", str(spec), "--input", "refund 5 on 7", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{tmp_path / 'policies' / 'tools.cedar'}:15: Cedar policy does not parse" in done.stderr
    assert calls(tmp_path) == []
    as_json = run_cli("run", str(spec), "--input", "x", "--json", cwd=tmp_path)
    assert "does not parse" in json.loads(as_json.stdout)["error"]


@pytest.mark.parametrize("no_import", [False, True])
def test_validate_refuses_a_broken_or_missing_policy_file(tmp_path: Path, no_import: bool) -> None:
    """``tether validate`` said a spec was fine when its policy file did not parse, or was
    missing, while ``tether run`` refused it."""
    broken = POLICIES.replace(
        "when { context.args.amount > 1000 };", "when { context.args.amount > };"
    )
    spec = make_agent_dir(tmp_path, policies=broken)
    flags = ["--no-import"] if no_import else []
    done = run_cli("validate", str(spec), *flags, cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert f"{tmp_path / 'policies' / 'tools.cedar'}:15: Cedar policy does not parse" in done.stderr
    (tmp_path / "policies" / "tools.cedar").unlink()
    done = run_cli("validate", str(spec), *flags, cwd=tmp_path)
    assert done.returncode == 1 and "tools.cedar: policy file not found" in done.stderr
    if not no_import:  # a typo only the schema (from the imported tools) finds
        typo = POLICIES.replace("context.args.amount <= 100", "context.args.amuont <= 100")
        spec = make_agent_dir(tmp_path, policies=typo)
        done = run_cli("validate", str(spec), cwd=tmp_path)
        assert done.returncode == 1 and "tools.cedar:6: attribute `args.amuont`" in done.stderr
    spec = make_agent_dir(tmp_path)
    assert run_cli("validate", str(spec), *flags, cwd=tmp_path).returncode == 0


def test_the_command_line_runs_a_denied_call_to_a_stop(tmp_path: Path) -> None:
    spec = make_agent_dir(tmp_path)
    env = {**os.environ, "TETHER_HOME": str(tmp_path / "home")}
    done = run_cli("run", str(spec), "--input", "refund 5000 on 7", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    shown = run_cli("traces", "show", json.loads(done.stdout)["run_id"], cwd=tmp_path, env=env)
    assert "refund-limit" in shown.stdout


# --- the spec section --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "authorization:\n  policies: []\n",
            "agent.yaml:8: authorization.policies: List should have at least 1 item",
        ),
        (
            "authorization:\n  policies: [a.cedar]\n  schema: manual\n",
            "agent.yaml:9: authorization.schema: Input should be 'auto'",
        ),
        (
            "authorization:\n  policies: [a.cedar]\n  polices: [b.cedar]\n",
            "agent.yaml:9: authorization.polices: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_authorization_section_names_its_line(
    tmp_path: Path, section: str, expected: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(SPEC + section)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert expected in str(info.value)


def test_one_policy_file_may_be_given_as_a_string(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(SPEC + "authorization: {policies: tools.cedar, schema: auto}\n")
    spec = load_spec(path)
    assert spec.authorization is not None and spec.authorization.policies == ["tools.cedar"]


async def test_a_policy_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """A .cedar file saved with a UTF-8 byte order mark failed at 1:1 with "invalid token"."""
    spec = make_agent_dir(tmp_path)
    policy_file = tmp_path / "policies" / "tools.cedar"
    policy_file.write_bytes(b"\xef\xbb\xbf" + policy_file.read_bytes())
    agent = Agent.from_yaml(spec, trace=False)
    result = await agent.run("refund 5 on 7")
    await agent.aclose()
    assert result.output == "Refund: refunded 5 on order 7"


def test_a_missing_policy_file_names_it(tmp_path: Path) -> None:
    spec = make_agent_dir(tmp_path)
    (tmp_path / "policies" / "tools.cedar").unlink()
    with pytest.raises(SpecError, match=r"tools.cedar: policy file not found"):
        Agent.from_yaml(spec, trace=False)


def test_the_section_changes_the_version_and_its_absence_does_not(tmp_path: Path) -> None:
    without = load_spec(make_agent_dir(tmp_path, authorized=False)).version
    with_it = load_spec(make_agent_dir(tmp_path)).version
    assert without != with_it


# --- tether policy -----------------------------------------------------------------------------

FIXTURES = """\
agent: agent.yaml
cases:
  - name: lookups are fine
    action: lookup_order
    context: {args: {order_id: 7}}
    expect: allow
    policies: [support-lookups]
  - name: a big refund needs a manager
    principal: {roles: [support], end_user: alice}
    action: issue_refund
    resource: issue_refund
    context: {args: {order_id: 7, amount: 500}}
    expect: escalate
  - name: a huge refund is refused
    action: issue_refund
    context: {args: {order_id: 7, amount: 5000}, time: "2026-11-23T10:00:00Z"}
    expect: deny
    policies: [refund-limit]
  - name: another agent may not look orders up
    principal: {agent: sales}
    action: lookup_order
    context: {args: {order_id: 7}}
    expect: deny
"""


def test_policy_fixtures_pass(tmp_path: Path) -> None:
    make_agent_dir(tmp_path)
    (tmp_path / "fixtures.yaml").write_text(FIXTURES)
    done = run_cli("policy", "test", "fixtures.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 of 4 cases passed" in done.stdout
    assert calls(tmp_path) == []  # deciding runs no tool


def test_a_policy_fixture_mismatch_exits_non_zero_naming_the_case(tmp_path: Path) -> None:
    make_agent_dir(tmp_path)
    wrong = FIXTURES.replace(
        "amount: 500}}\n    expect: escalate", "amount: 500}}\n    expect: allow"
    )
    wrong = wrong.replace("policies: [refund-limit]", "policies: [small-refunds]")
    (tmp_path / "fixtures.yaml").write_text(wrong)
    done = run_cli("policy", "test", "fixtures.yaml", cwd=tmp_path)
    assert done.returncode == 1
    out = done.stdout
    assert "✗ a big refund needs a manager (fixtures.yaml:8): expected allow, got escalate" in out
    assert (
        "✗ a huge refund is refused (fixtures.yaml:14): expected policies ['small-refunds']" in out
    )
    assert "2 of 4 cases passed" in out
    report = json.loads(run_cli("policy", "test", "fixtures.yaml", "--json", cwd=tmp_path).stdout)
    assert (report["passed"], report["failed"]) == (2, 2)
    assert [c["ok"] for c in report["cases"]] == [True, False, False, True]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "agent: agent.yaml\ncases:\n  - name: x\n    action: lookup_order\n    expect: maybe\n",
            "fixtures.yaml:5: cases[0].expect",
        ),
        (
            "agent: agent.yaml\ncases:\n  - name: x\n    action: a\n"
            "    resource: b\n    expect: deny\n",
            "fixtures.yaml:5: cases[0].resource",
        ),
        (
            "agent: nowhere.yaml\ncases:\n  - {name: x, action: a, expect: deny}\n",
            "nowhere.yaml: file not found",
        ),
        ("[1, 2]\n", "fixtures.yaml:1: expected a mapping"),
    ],
)
def test_bad_fixture_files_are_clear_errors(tmp_path: Path, text: str, expected: str) -> None:
    make_agent_dir(tmp_path)
    (tmp_path / "fixtures.yaml").write_text(text)
    done = run_cli("policy", "test", "fixtures.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert expected in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "{name: typo, action: isue_refund, expect: deny}",
            "fixtures.yaml:3: cases[0].action: 'isue_refund' is not one of the agent's tools "
            "(they are: lookup_order, issue_refund, delete_account)",
        ),
        (
            "{name: typo, action: issue_refund, expect: deny,"
            " context: {args: {order_id: 7, ammount: 5000}}}",
            "fixtures.yaml:3: cases[0].context.args: 'ammount' is not an argument of "
            "issue_refund (it has: order_id, amount)",
        ),
    ],
)
def test_a_fixture_naming_what_the_agent_lacks_is_an_error_not_a_passing_deny(
    tmp_path: Path, case: str, expected: str
) -> None:
    # At run time an unknown tool or argument is denied, so a typo'd fixture expecting a deny
    # passed without testing the policy it was written for.
    make_agent_dir(tmp_path)
    (tmp_path / "fixtures.yaml").write_text(f"agent: agent.yaml\ncases:\n  - {case}\n")
    done = run_cli("policy", "test", "fixtures.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert expected in done.stderr, done.stdout + done.stderr
    assert "passed" not in done.stdout


def test_a_fixture_sees_the_tool_calls_left_of_the_specs_limits(tmp_path: Path) -> None:
    # The fixtures' default was 20 whatever limits.max_tool_calls said: a policy on
    # tool_calls_left passed its fixtures and decided otherwise at run time.
    spec = make_agent_dir(
        tmp_path,
        policies='@id("last-calls")\n'
        "forbid(principal, action, resource) when { context.budget.tool_calls_left <= 3 };\n"
        '@id("all")\npermit(principal, action, resource);\n',
    )
    spec.write_text(spec.read_text() + "limits: {max_tool_calls: 3}\n")
    (tmp_path / "fixtures.yaml").write_text(
        "agent: agent.yaml\n"
        "cases:\n"
        "  - {name: first call, action: lookup_order, context: {args: {order_id: 7}},"
        " expect: deny, policies: [last-calls]}\n"
        "  - {name: told, action: lookup_order, expect: allow,"
        " context: {args: {order_id: 7}, budget: {tool_calls_left: 10}}}\n"
    )
    done = run_cli("policy", "test", "fixtures.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 cases passed" in done.stdout


def test_policy_check_and_schema(tmp_path: Path) -> None:
    spec = make_agent_dir(tmp_path)
    done = run_cli("policy", "check", str(spec), "--json")
    assert json.loads(done.stdout)["policies"] == [
        "refund-approval",
        "refund-limit",
        "small-refunds",
        "support-lookups",
    ]
    schema = run_cli("policy", "schema", str(spec))
    assert 'action "issue_refund" in ["call"] appliesTo' in schema.stdout
    assert "amount: Long" in schema.stdout
    (tmp_path / "other").mkdir()
    unauthorized = make_agent_dir(tmp_path / "other", authorized=False)
    done = run_cli("policy", "check", str(unauthorized))
    assert done.returncode == 1 and "has no authorization section" in done.stderr


def test_a_policy_file_without_policies_is_warned_of_and_one_listed_twice_refused(
    tmp_path: Path,
) -> None:
    """Only comments: the agent loads (default deny) but validate and policy check say that
    every tool call will be denied; the same file named twice is an error naming it."""
    spec = make_agent_dir(tmp_path, policies="// the policies come later\n")
    for command in (("validate", str(spec)), ("policy", "check", str(spec))):
        done = run_cli(*command)
        assert done.returncode == 0, done.stderr
        said = done.stdout + done.stderr
        assert "hold no Cedar policy, so every tool call is denied" in said
    (tmp_path / "twice").mkdir()
    twice = make_agent_dir(tmp_path / "twice")
    twice.write_text(
        twice.read_text().replace(
            "[policies/tools.cedar]", "[policies/tools.cedar, ./policies/tools.cedar]"
        )
    )
    done = run_cli("validate", str(twice))
    assert done.returncode == 1
    assert "tools.cedar: listed twice among the policy files" in done.stderr
    fine = run_cli("validate", str(make_agent_dir(tmp_path / "twice")))
    assert fine.returncode == 0 and "no Cedar policy" not in fine.stdout + fine.stderr


async def test_a_control_answering_a_call_in_its_place_does_not_get_past_authorization(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A control that answers a tool call (a cache) came before the authorization, which is
    last in the pipeline, and the pipeline stopped at the first answer: a caller Cedar refuses
    got the cached result of the call anyway. The answer now stands only when the controls
    after it let the call through."""

    class Cache(Control):
        name = "cache"

        async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
            return Decision.respond(ToolResult(f"cached result of {call.name}"), "cache hit")

    spec = make_agent_dir(tmp_path)
    agent = Agent.from_yaml(spec, controls=[Cache()], trace=sqlite_url)
    denied = await agent.run("please refund 5000 on 7")
    assert "cached result" not in (denied.output or "")
    assert "denied by Cedar policy refund-limit" in (denied.output or "")
    permitted = await agent.run("look it up")
    assert permitted.output == "Lookup: cached result of lookup_order"
    assert calls(tmp_path) == []  # neither tool ran
    (allow,) = [d for d in decisions(sqlite_url, permitted.run_id)]
    assert allow[semconv.TETHER_DECISION] == "allow"


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("authorization", "every declared tool may be called"),
        ("budgets", "no budget or rate limit is counted"),
    ],
)
def test_a_section_left_empty_is_warned_of(tmp_path: Path, section: str, says: str) -> None:
    """`authorization:` with its lines commented out is null in YAML, which reads as no
    section: every tool call went through, and `tether validate` said nothing."""
    spec = make_agent_dir(tmp_path, authorized=False)
    spec.write_text(spec.read_text() + f"{section}:\n  # policies: [policies/tools.cedar]\n")
    done = run_cli("validate", str(spec))
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert f"warning: {section}: is empty (null), so " in said and says in said
    filled = run_cli("validate", str(make_agent_dir(tmp_path)))
    assert "is empty" not in filled.stdout + filled.stderr
