"""Cedar tool authorization: loading policies (errors at file:line), the generated schema, and
the decisions the control takes at ``before_tool`` (HookContext built directly here; the end
to end runs are in test_authz_agent.py)."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from pydantic import BaseModel

from tether import tool
from tether.controls import Authorizer, AuthzRequest, CedarAuthorization, Hook, HookContext
from tether.controls.authz import Budget, Risk, _asker, schema_text
from tether.controls.pipeline import Verdict
from tether.core import AgentRef, Caller, Outcome, SpecError
from tether.providers import ToolCall
from tether.runtime import RunState
from tether.spec import Limits
from tether.tools import Tool


@tool(side_effects="external", scopes=["payments"])
def issue_refund(order_id: int, amount: float, note: str | None = None) -> str:
    """Refund an order."""
    return "refunded"


@tool(side_effects="read")
def lookup(query: str, limit: int = 5) -> str:
    """Search."""
    return query


class Address(BaseModel):
    city: str
    zip: int | None = None


@tool(side_effects="write")
def ship(
    to: Address,
    items: list[str],
    weights: list[float],
    express: bool = False,
    extra: dict[str, int] | None = None,
) -> str:
    """Ship items."""
    return "shipped"


TOOLS: dict[str, Tool] = {t.name: t for t in (issue_refund, lookup, ship)}
AGENT = AgentRef(name="support", version="v1")
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

POLICIES = """\
// Reads are fine for everyone.
@id("reads")
permit(principal, action in Tether::Action::"call", resource)
when { resource.side_effects == "read" };

@id("small-refunds")
permit(principal in Tether::Role::"support", action == Tether::Action::"issue_refund", resource)
when { context.args.amount.lessThanOrEqual(decimal("100.0")) };

@id("big-refunds")
@escalate("refunds over 100 need a manager")
permit(principal in Tether::Role::"support", action == Tether::Action::"issue_refund", resource)
when { context.args.amount.greaterThan(decimal("100.0")) };

@id("risky-runs")
forbid(principal, action, resource)
when { context.risk.score.greaterThan(decimal("0.8")) };

forbid(principal, action == Tether::Action::"issue_refund", resource)
when { principal has end_user && principal.end_user == "mallory" && context.args.order_id > 0 };
"""


def write(tmp_path: Path, text: str, name: str = "tools.cedar") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = POLICIES, **kw: Any) -> Authorizer:
    return Authorizer.load([write(tmp_path, text)], TOOLS, AGENT, clock=lambda: NOON, **kw)


def load_error(tmp_path: Path, text: str, tools: dict[str, Tool] | None = None) -> SpecError:
    with pytest.raises(SpecError) as info:
        Authorizer.load([write(tmp_path, text)], tools or TOOLS, AGENT)
    return info.value


SUPPORT = Caller(project="acme", roles=frozenset({"support"}), end_user="alice")


# --- decisions ---------------------------------------------------------------------------------


def test_default_deny_when_no_policy_permits(tmp_path: Path) -> None:
    verdict = load(tmp_path).decide(AuthzRequest("issue_refund", {"order_id": 1, "amount": 5}))
    assert verdict.effect == "deny"
    assert "no Cedar policy permits it (default deny)" in verdict.reason


def test_a_permit_allows_and_names_itself(tmp_path: Path) -> None:
    verdict = load(tmp_path).decide(AuthzRequest("lookup", {"query": "x"}))
    assert (verdict.effect, verdict.policies) == ("allow", ("reads",))


def test_roles_come_from_the_caller(tmp_path: Path) -> None:
    a = load(tmp_path)
    args = {"order_id": 1, "amount": 99.5}
    assert a.decide(AuthzRequest("issue_refund", args, caller=SUPPORT)).effect == "allow"
    other = Caller(project="acme", roles=frozenset({"viewer"}))
    assert a.decide(AuthzRequest("issue_refund", args, caller=other)).effect == "deny"


def test_an_escalate_permit_asks_for_approval(tmp_path: Path) -> None:
    verdict = load(tmp_path).decide(
        AuthzRequest("issue_refund", {"order_id": 1, "amount": 250}, caller=SUPPORT)
    )
    assert verdict.effect == "escalate"
    assert verdict.policies == ("big-refunds",)
    assert verdict.note == "refunds over 100 need a manager"


def test_a_forbid_wins_and_its_id_is_the_reason(tmp_path: Path) -> None:
    verdict = load(tmp_path).decide(
        AuthzRequest("lookup", {"query": "x"}, risk=Risk(0.9, frozenset({"prompt_injection"})))
    )
    assert verdict.effect == "deny"
    assert verdict.reason == "tool 'lookup' denied by Cedar policy risky-runs"


def test_a_policy_id_holding_a_comma_reads_as_one_id(tmp_path: Path) -> None:
    """``@id("refunds, big")`` read as two policies in a reason ("policies refunds, big,
    risky"): an id a list separator could split is quoted."""
    text = """
        @id("no lookups, ever")
        forbid(principal, action == Tether::Action::"lookup", resource);
        @id("late")
        forbid(principal, action == Tether::Action::"lookup", resource);
    """
    verdict = load(tmp_path, text).decide(AuthzRequest("lookup", {"query": "x"}))
    assert verdict.effect == "deny"
    assert sorted(verdict.policies) == ["late", "no lookups, ever"]
    assert verdict.reason.startswith("tool 'lookup' denied by Cedar policies ")
    assert '"no lookups, ever"' in verdict.reason and "late" in verdict.reason


def test_a_policy_without_id_is_named_by_cedar_id_file_and_line(tmp_path: Path) -> None:
    mallory = Caller(project="acme", roles=frozenset({"support"}), end_user="mallory")
    verdict = load(tmp_path).decide(
        AuthzRequest("issue_refund", {"order_id": 1, "amount": 5}, caller=mallory)
    )
    assert verdict.effect == "deny"
    assert verdict.policies == (f"policy4 ({tmp_path / 'tools.cedar'}:19)",)


def test_principal_attributes_project_version_scopes(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(
          principal in Tether::Project::"acme", action == Tether::Action::"issue_refund", resource
        ) when { principal.version == "v1" && principal.scopes.containsAll(resource.scopes)
               && principal has key_id && principal.key_id == "k1" };
        """,
    )
    args = {"order_id": 1, "amount": 1}
    paying = Caller(project="acme", key_id="k1", scopes=frozenset({"payments", "orders"}))
    assert a.decide(AuthzRequest("issue_refund", args, caller=paying)).effect == "allow"
    no_scope = Caller(project="acme", key_id="k1", scopes=frozenset({"orders"}))
    assert a.decide(AuthzRequest("issue_refund", args, caller=no_scope)).effect == "deny"
    elsewhere = dataclasses.replace(paying, project="globex")
    assert a.decide(AuthzRequest("issue_refund", args, caller=elsewhere)).effect == "deny"
    newer = AgentRef(name="support", version="v2")
    assert a.decide(AuthzRequest("issue_refund", args, caller=paying, agent=newer)).effect == "deny"


SCORES = [0.0, 0.0001, 0.5, 0.7999, 0.8, 0.8001, 0.805, 0.81, 0.9999, 1.0, 1.5, -0.2]
MONEY = [None, 0.0, 0.0001, 0.0123, 0.4999, 0.49999, 0.49999999, 0.5, 0.50000001, 0.5001, 12.0]


def test_the_integer_forms_decide_as_the_decimals_do(tmp_path: Path) -> None:
    """``risk.score_pct`` (rounded up) and ``budget.usd_left_micros`` (rounded down) are the
    cheaper forms of ``risk.score`` and ``budget.usd_left``: at thresholds policies can write
    with both, they decide every value alike."""
    (tmp_path / "longs").mkdir()
    decimals = load(
        tmp_path,
        """        permit(principal, action == Tether::Action::"lookup", resource);
        forbid(principal, action, resource) when { context.risk.score.greaterThan(decimal("0.8")) };
        forbid(principal, action, resource)
        when { context.budget has usd_left && context.budget.usd_left.lessThan(decimal("0.5")) };
        """,
    )
    longs = load(
        tmp_path / "longs",
        """        permit(principal, action == Tether::Action::"lookup", resource);
        forbid(principal, action, resource) when { context.risk.score_pct > 80 };
        forbid(principal, action, resource)
        when { context.budget has usd_left_micros && context.budget.usd_left_micros < 500000 };
        """,
    )
    effects = []
    for score in SCORES:
        for left in MONEY:
            request = AuthzRequest(
                "lookup", {"query": "x"}, risk=Risk(score), budget=Budget(usd_left=left)
            )
            effect = decimals.decide(request).effect
            assert longs.decide(request).effect == effect, (score, left)
            effects.append(effect)
    assert {"allow", "deny"} <= set(effects)
    context = longs.context(
        AuthzRequest(
            "lookup",
            {"query": "x"},
            risk=Risk(0.8001),
            budget=Budget(cost_usd=0.0000001, usd_left=0.0377),
        ),
        whole=True,
    )
    assert context["risk"]["score_pct"] == 81  # up
    assert context["budget"]["usd_left_micros"] == 37_700  # down, exactly
    assert context["budget"]["cost_usd_micros"] == 1  # spent: up
    assert "usd_left_micros" not in longs.context(AuthzRequest("lookup", {"query": "x"}))["budget"]
    # Only what the policies name is sent: the integer forms, not the decimals.
    sent = longs.context(AuthzRequest("lookup", {"query": "x"}, budget=Budget(usd_left=1.0)))
    assert set(sent["risk"]) == {"score_pct"} and set(sent["budget"]) == {"usd_left_micros"}


def test_budget_time_classification_and_entry_point_reach_the_context(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource)
        when { context.budget has usd_left && context.budget.usd_left.greaterThan(decimal("0.5"))
               && context.budget.tool_calls_left > 0
               && context.time.hour >= 9 && context.time.hour < 17 && context.time.weekday <= 5
               && context.time.now < datetime("2027-01-01")
               && !context.classification.contains("secret")
               && context.entry_point == "runtime" };
        """,
    )
    rich = Budget(usd_left=1.0, tool_calls_left=3)
    ok = AuthzRequest("lookup", {"query": "x"}, budget=rich)
    assert a.decide(ok).effect == "allow"
    night = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert a.decide(AuthzRequest("lookup", {"query": "x"}, budget=rich, now=night)).effect == "deny"
    poor = Budget(usd_left=0.49999, tool_calls_left=3)  # rounded down, never up past 0.5
    assert a.decide(AuthzRequest("lookup", {"query": "x"}, budget=poor)).effect == "deny"
    unlimited = Budget(usd_left=None, tool_calls_left=3)
    assert a.decide(AuthzRequest("lookup", {"query": "x"}, budget=unlimited)).effect == "deny"
    secret = AuthzRequest(
        "lookup", {"query": "x"}, budget=rich, classification=frozenset({"secret"})
    )
    assert a.decide(secret).effect == "deny"


def test_arguments_are_typed_records_sets_and_defaults(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"ship", resource)
        when { context.args.to.city == "Paris" && context.args.items.contains("book")
               && context.args.weights.contains(decimal("1.25")) && !context.args.express };
        permit(principal, action == Tether::Action::"lookup", resource)
        when { context.args.limit <= 10 };
        """,
    )
    ship_args = {"to": {"city": "Paris"}, "items": ["book", "pen"], "weights": [1.25, 2]}
    assert a.decide(AuthzRequest("ship", ship_args)).effect == "allow"
    assert a.decide(AuthzRequest("ship", {**ship_args, "express": True})).effect == "deny"
    # The default the tool will use (limit=5) is what the policy sees when none is given.
    assert a.decide(AuthzRequest("lookup", {"query": "x"})).effect == "allow"
    assert a.decide(AuthzRequest("lookup", {"query": "x", "limit": 50})).effect == "deny"


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"order_id": 1, "amount": 0.1 + 0.2}, "amount = 0.30000000000000004 has more than 4"),
        ({"order_id": 1, "amount": float("nan")}, "amount is nan, which no Cedar decimal holds"),
        ({"order_id": 1, "amount": 1e20}, "amount = 1e+20 is beyond the range of a Cedar decimal"),
        ({"order_id": 2**63, "amount": 1}, "order_id = 9223372036854775808 is beyond the range"),
        ({"order_id": "7.5", "amount": 1}, "order_id is '7.5', not a whole number"),
        ({"order_id": "0x7", "amount": 1}, "order_id is '0x7', not a whole number"),
        ({"order_id": 1, "amount": "1e3"}, "amount is '1e3', not a number"),
        ({"order_id": True, "amount": 1}, "order_id is True, not a whole number"),
        ({"amount": 1}, "order_id is missing"),
        ({"order_id": 1, "amount": {"deep": [1, [2]]}}, "amount is {'deep': [1, [2]]}, not a"),
    ],
)
def test_arguments_cedar_cannot_hold_exactly_are_refused_clearly(
    tmp_path: Path, args: dict[str, Any], why: str
) -> None:
    verdict = load(tmp_path).decide(AuthzRequest("issue_refund", args, caller=SUPPORT))
    assert verdict.effect == "deny"
    assert f"tool 'issue_refund': argument {why}" in verdict.reason


def test_numbers_sent_as_text_are_read_as_the_tool_reads_them(tmp_path: Path) -> None:
    # A model (or a scripted template) may send "7" for an integer: the tool's validation
    # takes it as 7, and so does the policy.
    a = load(tmp_path)
    args = {"order_id": " 7 ", "amount": "99.5"}
    assert a.decide(AuthzRequest("issue_refund", args, caller=SUPPORT)).effect == "allow"
    big = {"order_id": "7", "amount": "100.0001"}
    assert a.decide(AuthzRequest("issue_refund", big, caller=SUPPORT)).effect == "escalate"


def test_what_no_policy_names_is_not_sent_to_cedar(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"issue_refund", resource)
        when { context.args.order_id == 7 };
        """,
    )
    # The policies never name `amount`: a value Cedar could not hold there is no reason to
    # refuse (the tool's own validation still sees it), and the context leaves it out.
    args = {"order_id": 7, "amount": 0.1 + 0.2}
    assert a.decide(AuthzRequest("issue_refund", args)).effect == "allow"
    assert a.context(AuthzRequest("issue_refund", args)) == {"args": {"order_id": 7}}


def test_a_null_optional_argument_is_an_argument_not_given(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"issue_refund", resource)
        unless { context.args has note };
        """,
    )
    assert (
        a.decide(AuthzRequest("issue_refund", {"order_id": 1, "amount": 1, "note": None})).effect
        == "allow"
    )
    assert (
        a.decide(AuthzRequest("issue_refund", {"order_id": 1, "amount": 1, "note": "x"})).effect
        == "deny"
    )


def test_an_unknown_tool_is_denied(tmp_path: Path) -> None:
    verdict = load(tmp_path).decide(AuthzRequest("rm_rf", {}))
    assert verdict.effect == "deny"
    assert verdict.reason == (
        "tool 'rm_rf' is not one of the agent's tools (they are: issue_refund, lookup, ship)"
    )


def test_an_evaluation_error_fails_closed(tmp_path: Path) -> None:
    # Long overflow passes validation and errors at evaluation: Cedar skips the erroring
    # forbid, which would let the permit through; the authorizer denies instead.
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource);
        forbid(principal, action == Tether::Action::"lookup", resource)
        when { context.args.limit * 9223372036854775807 > 0 };
        """,
    )
    verdict = a.decide(AuthzRequest("lookup", {"query": "x", "limit": 2}))
    assert verdict.effect == "deny"
    assert "a Cedar policy failed to evaluate" in verdict.reason


@pytest.mark.parametrize(
    "name",
    [r"score\u{5f}pct", r"\u{73}core_pct", r"score\x5fpct"],
)
def test_an_attribute_named_with_escapes_in_a_string_is_sent(tmp_path: Path, name: str) -> None:
    # Only the attributes the policy text names are sent to Cedar; a name written with Cedar
    # string escapes was not recognised, so the attribute was missing and every call was
    # denied with an evaluation error although the policies validated at load.
    a = load(
        tmp_path,
        f"""\
        permit(principal, action == Tether::Action::"lookup", resource);
        forbid(principal, action, resource) when {{ context["risk"]["{name}"] > 80 }};
        """,
    )
    calm = a.decide(AuthzRequest("lookup", {"query": "x"}, risk=Risk(0.1, frozenset())))
    assert calm.effect == "allow", calm.reason
    risky = a.decide(AuthzRequest("lookup", {"query": "x"}, risk=Risk(0.9, frozenset())))
    assert risky.effect == "deny", risky.reason
    assert "failed to evaluate" not in risky.reason


def test_an_evaluation_error_names_the_policy_by_its_id_and_line(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource);
        @id("no-overflow")
        forbid(principal, action == Tether::Action::"lookup", resource)
        when { context.args.limit * 9223372036854775807 > 0 };
        forbid(principal, action == Tether::Action::"lookup", resource)
        when { context.args.limit * 9223372036854775806 > 0 };
        """,
    )
    verdict = a.decide(AuthzRequest("lookup", {"query": "x", "limit": 2}))
    assert verdict.effect == "deny"
    assert "evaluating policy no-overflow:" in verdict.reason, verdict.reason
    assert "policy1" not in verdict.reason
    assert verdict.policies[0] == "no-overflow"
    assert verdict.policies[1].startswith("policy2 (") and "tools.cedar:5)" in verdict.policies[1]


# --- the control on HookContext ----------------------------------------------------------------


@dataclass(slots=True)
class GuardedContext(HookContext):
    """A HookContext as it will be once guards add a risk finding (the control reads it)."""

    risk: Any = None


def hook_context(call: ToolCall, **kw: Any) -> HookContext:
    state = RunState(
        trace_id="0" * 32, run_id="1" * 16, agent_name="support", agent_version="v1", input="hi"
    )
    cls = GuardedContext if "risk" in kw else HookContext
    return cls(
        hook=Hook.BEFORE_TOOL,
        state=state,
        limits=Limits(),
        tool=TOOLS.get(call.name),
        call=call,
        **kw,
    )


async def test_the_control_blocks_escalates_and_allows(tmp_path: Path) -> None:
    control = CedarAuthorization(load(tmp_path))
    refund = ToolCall(id="c1", name="issue_refund", arguments={"order_id": 1, "amount": 500})
    denied = await control.before_tool(hook_context(refund), refund)
    assert denied.verdict is Verdict.BLOCK and denied.outcome is None  # refuses only this call
    assert "default deny" in denied.reason
    ctx = hook_context(refund, caller=SUPPORT, agent=AGENT)
    asked = await control.before_tool(ctx, refund)
    assert asked.verdict is Verdict.ESCALATE and asked.outcome is Outcome.ESCALATED
    assert asked.message == "This action needs a person's approval: refunds over 100 need a manager"
    small = ToolCall(id="c2", name="issue_refund", arguments={"order_id": 1, "amount": 5})
    allowed = await control.before_tool(hook_context(small, caller=SUPPORT), small)
    assert allowed.verdict is Verdict.ALLOW
    assert allowed.reason == "tool 'issue_refund' permitted by Cedar policy small-refunds"


async def test_the_control_reads_a_risk_finding_when_guards_provide_one(tmp_path: Path) -> None:
    control = CedarAuthorization(load(tmp_path))
    call = ToolCall(id="c1", name="lookup", arguments={"query": "x"})
    calm = await control.before_tool(hook_context(call, risk=None), call)
    assert calm.verdict is Verdict.ALLOW
    alarmed = await control.before_tool(
        hook_context(call, risk={"score": 0.95, "categories": ["prompt_injection"]}), call
    )
    assert alarmed.verdict is Verdict.BLOCK and "risky-runs" in alarmed.reason


async def test_the_control_refuses_arguments_that_are_not_an_object(tmp_path: Path) -> None:
    control = CedarAuthorization(load(tmp_path))
    call = ToolCall(id="c1", name="lookup", arguments={"__raw__": "[1, 2]"})
    decision = await control.before_tool(hook_context(call), call)
    assert decision.verdict is Verdict.BLOCK and "not a JSON object" in decision.reason


async def test_budget_is_read_from_the_run_and_its_limits(tmp_path: Path) -> None:
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource)
        when { context.budget.tool_calls_left >= 2 };
        """,
    )
    control = CedarAuthorization(a)
    call = ToolCall(id="c1", name="lookup", arguments={"query": "x"})
    ctx = hook_context(call)
    assert (await control.before_tool(ctx, call)).verdict is Verdict.ALLOW
    ctx.state.tool_calls = 19  # type: ignore[misc]  # of max_tool_calls 20: one left
    assert (await control.before_tool(ctx, call)).verdict is Verdict.BLOCK


async def test_limits_past_a_cedar_long_are_clamped_not_a_crash(tmp_path: Path) -> None:
    """Budget figures past a Cedar Long (64-bit signed) are clamped to it and the call is
    decided. A Python int past 64 bits (TypeError from Cedar) or a dollar amount whose
    millionths overflow a float (OverflowError) made the control fail, ending the run with
    control_error instead of a decision. (Run limits that large are refused by the spec now,
    ``test_spec``; the largest it takes are decided here.)"""
    a = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource)
        when { context.budget has tokens_left && context.budget.tokens_left > 1000
               && context.budget has usd_left_micros && context.budget.usd_left_micros > 1000
               && context.budget has usd_left && context.budget.usd_left.greaterThan(decimal("1.0"))
               && context.budget.tokens < 1000 && context.budget.cost_usd_micros < 1000 };
        """,
    )
    control = CedarAuthorization(a)
    call = ToolCall(id="c1", name="lookup", arguments={"query": "x"})
    for limits in (Limits(max_total_tokens=10**13, max_cost_usd=10_000_000.0),):
        ctx = hook_context(call)
        ctx.limits = limits  # type: ignore[misc]
        decision = await control.before_tool(ctx, call)
        assert decision.verdict is Verdict.ALLOW, decision.reason
    huge = Budget(tokens=2**64, cost_usd=1e305, usd_left=1e305, tokens_left=2**70)
    sent = a.context(AuthzRequest("lookup", {"query": "x"}, budget=huge))["budget"]
    assert sent["tokens_left"] == sent["usd_left_micros"] == sent["tokens"] == 2**63 - 1
    assert sent["cost_usd_micros"] == 2**63 - 1
    assert a.decide(AuthzRequest("lookup", {"query": "x"}, budget=huge)).effect == "deny"
    spent = Budget(usd_left=-1e305, tokens_left=-(2**70))  # overspent past any Long
    sent = a.context(AuthzRequest("lookup", {"query": "x"}, budget=spent))["budget"]
    assert sent["tokens_left"] == sent["usd_left_micros"] == -(2**63 - 1)
    verdict = a.decide(AuthzRequest("lookup", {"query": "x"}, budget=spent))
    assert verdict.effect == "deny" and "default deny" in verdict.reason


# --- loading: errors at file:line --------------------------------------------------------------


def test_a_parse_error_names_the_file_and_line(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """\
        permit(principal, action, resource)
        when { resource.side_effects == "read" };

        permit(
          principal,
          action,
          resource
        ) when {
          context.args.amount ==
        };
        """,
    )
    assert (
        error.message
        == f"{tmp_path / 'tools.cedar'}:10: Cedar policy does not parse: unexpected token `}}`"
    )


@pytest.mark.parametrize(
    ("wrong", "line", "message"),
    [
        ("permt(principal, action, resource)", 6, "invalid policy effect: permt"),
        ('permit(principal, action = = Tether::Action::"x", resource)', 6, "`=`"),
        ('permit(principal, action == Tether::Action:::"x", resource)', 6, "`:`"),
        ("whn { context.args.amount == 1 };", 7, "invalid policy condition: whn"),
    ],
)
def test_a_parse_error_on_a_policys_head_names_that_line(
    tmp_path: Path, wrong: str, line: int, message: str
) -> None:
    """The line an editor shows (1-based): an error on a policy's first line was put on the
    line after it, Cedar's parser saying only that the cut-short policy ended too soon."""
    good = 'permit(principal, action == Tether::Action::"x", resource)'
    head, condition = (wrong, "when { true };") if line == 6 else (good, wrong)
    error = load_error(
        tmp_path,
        f"""\
        // first policy
        @id("reads")
        permit(principal, action, resource);

        @id("second")
        {head}
        {condition}
        """,
    )
    where = f"{tmp_path / 'tools.cedar'}:{line}: Cedar policy does not parse: "
    assert error.message.startswith(where), error.message
    assert message in error.message


def test_a_missing_semicolon_names_the_last_line_of_its_policy(tmp_path: Path) -> None:
    error = load_error(tmp_path, "permit(principal, action, resource)\nwhen { true }\n\n// end\n")
    assert error.message.startswith(f"{tmp_path / 'tools.cedar'}:2: Cedar policy does not parse")


def test_a_misspelt_attribute_fails_at_load_on_its_line(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """\
        @id("refunds")
        permit(principal, action == Tether::Action::"issue_refund", resource)
        when {
          context.args.amout.lessThan(decimal("10.0"))
        };
        """,
    )
    assert f"{tmp_path / 'tools.cedar'}:4: attribute `args.amout` in context" in error.message
    assert "not found" in error.message


def test_a_misspelt_attribute_of_a_tool_or_the_agent_is_hinted_at(tmp_path: Path) -> None:
    """The hint was about context.args, whatever the error: for `resource.side_efects` it
    now names the attribute meant and those the entity has."""
    error = load_error(
        tmp_path, 'permit(principal, action, resource) when { resource.side_efects == "read" };\n'
    )
    assert "attribute `side_efects` on entity type `Tether::Tool` not found" in error.message
    assert error.hint is not None
    assert error.hint.startswith(
        "did you mean `side_effects`? Tether::Tool has the attributes scopes, side_effects;"
    )
    error = load_error(
        tmp_path, 'permit(principal, action, resource) when { principal.end_usr == "u-1" };\n'
    )
    assert error.hint is not None and "did you mean `end_user`?" in error.hint


def test_errors_in_a_second_file_name_that_file(tmp_path: Path) -> None:
    first = write(tmp_path, 'permit(principal, action == Tether::Action::"lookup", resource);\n')
    second = write(
        tmp_path,
        '// refunds\npermit(principal, action == Tether::Action::"refund", resource);\n',
        "more.cedar",
    )
    with pytest.raises(SpecError) as info:
        Authorizer.load([first, second], TOOLS, AGENT)
    assert f'{second}:2: unrecognized action `Tether::Action::"refund"`' in info.value.message


def test_reading_what_budgets_leave_without_has_fails_at_load_saying_when_it_is_absent(
    tmp_path: Path,
) -> None:
    """``usd_left``/``tokens_left`` (and their micros) are absent when no limit or budget of
    their kind is set: Cedar refuses a policy reading one without ``has``, and the hint says
    why and how (it spoke of tool arguments only)."""
    error = load_error(
        tmp_path,
        """        forbid(principal, action == Tether::Action::"lookup", resource)
        when { context.budget.usd_left_micros < 500000 };
        """,
    )
    assert "optional attribute `budget.usd_left_micros`" in error.message
    assert error.hint is not None
    assert error.hint.startswith(
        "an optional attribute is absent when it has no value (context.budget's usd_left, "
        "usd_left_micros and tokens_left without a limit or budget of that kind, "
        "principal.end_user without an end user): test it first, as in "
        "`context.budget has usd_left_micros && context.budget.usd_left_micros < 500000`"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('permit(principal, action, resource) when { context.args.query == "x" };', "args.query"),
        (
            'permit(principal, action, resource) when { principal.end_user == "bob" };',
            "optional attribute `end_user`",
        ),
        (
            "permit(principal is Tether::User, action, resource);",
            "unrecognized entity type `Tether::User`",
        ),
        (
            "permit(principal, action, resource) when { resource.side_effects == 1 };",
            "not compatible",
        ),
    ],
)
def test_policies_that_do_not_fit_the_schema_fail_at_load(
    tmp_path: Path, text: str, expected: str
) -> None:
    error = load_error(tmp_path, text)
    assert error.message.startswith("Cedar policies do not validate")
    assert f"{tmp_path / 'tools.cedar'}:1: " in error.message and expected in error.message


def test_an_argument_with_no_cedar_type_is_named_in_the_hint(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        'permit(principal, action == Tether::Action::"ship", resource)\n'
        "when { context.args.extra == 1 };",
    )
    assert "ship.extra (a mapping with free keys)" in (error.hint or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("permit(principal == ?principal, action, resource);", "templates"),
        (
            '@id("a")\npermit(principal, action, resource);\n'
            '@id("a")\nforbid(principal, action, resource);',
            ':3: @id("a") is also the id of the policy at',
        ),
        (
            '@escalate("x")\nforbid(principal, action, resource);',
            ":1: @escalate applies to permit policies",
        ),
        # A misspelt @escalate made the permit a plain allow: a call meant to wait for a
        # person went through, and `tether policy check` said the policies were valid.
        (
            '@id("big")\n@Escalate("x")\npermit(principal, action, resource);',
            ':1: @Escalate is not an annotation Tether knows: did you mean @escalate("why")?',
        ),
        (
            '@escalation("x")\npermit(principal, action, resource);',
            ":1: @escalation is not an annotation Tether knows: did you mean",
        ),
        ('@escalte("x")\npermit(principal, action, resource);', "did you mean @escalate"),
        ('@ID("x")\npermit(principal, action, resource);', 'did you mean @id("name")?'),
    ],
)
def test_what_policies_may_not_do_is_refused_at_load(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in load_error(tmp_path, text).message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Each of these made Cedar's parser overflow its stack: a segmentation fault that
        # killed the process, not an error. Refused before Cedar sees them.
        ("(" * 5000 + "true" + ")" * 5000, "brackets nested 5001 deep (at most 32)"),
        ("[" * 2000 + "]" * 2000 + " == []", "brackets nested 2001 deep"),
        (" && ".join(['context.args.query == "a"'] * 2000), "8000 operators in one policy"),
        ("if true then " * 5000 + "true" + " else true" * 5000, "5001 operators"),
        # Under the bounds but past cedarpy's own limit of 100 levels: an error too.
        (" && ".join(["true"] * 300), "expression nesting exceeds the supported limit"),
    ],
)
def test_policies_too_deep_for_cedar_are_refused_at_their_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    text = (
        "permit(principal, action, resource);\n\n"
        f'permit(principal, action == Tether::Action::"lookup", resource)\nwhen {{ {body} }};\n'
    )
    error = load_error(tmp_path, text)
    assert error.message.startswith(f"{tmp_path / 'tools.cedar'}:3: Cedar policy too complex")
    assert expected in error.message


def test_a_huge_policy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.cedar"
    path.write_text("// " + "x" * 1_000_000 + "\npermit(principal, action, resource);\n")
    with pytest.raises(SpecError, match="policy files are limited to 1000000 bytes"):
        Authorizer.load([path], TOOLS, AGENT)


def test_argument_names_cedar_json_reserves_are_not_visible(tmp_path: Path) -> None:
    from tether.controls.cedar_schema import tool_args

    typed = tool_args(
        {
            "properties": {
                "__entity": {"type": "string"},
                "box": {"type": "object", "properties": {"__extn": {"type": "string"}}},
                "ok": {"type": "string"},
            }
        }
    )
    assert list(typed.record.attributes) == ["ok"]
    assert set(typed.untyped) == {"__entity", "box"}


def test_unreadable_policy_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="policy file not found"):
        Authorizer.load([tmp_path / "missing.cedar"], TOOLS, AGENT)
    (tmp_path / "bad.cedar").write_bytes(b"permit(principal, action, resource) when { \xff };")
    with pytest.raises(SpecError, match="not UTF-8"):
        Authorizer.load([tmp_path / "bad.cedar"], TOOLS, AGENT)


def test_a_tool_named_like_the_action_group_is_refused(tmp_path: Path) -> None:
    @tool(name="call")
    def call_tool() -> str:
        """Phone someone."""
        return ""

    error = load_error(tmp_path, "forbid(principal, action, resource);", {"call": call_tool})
    assert "clashes with the Cedar action group" in error.message


def test_the_readable_schema_is_the_schema_cedar_checks(tmp_path: Path) -> None:
    text = schema_text(TOOLS)
    assert 'action "issue_refund" in ["call"] appliesTo' in text
    assert "amount: decimal" in text and "note?: String" in text
    # The text form parses and validates the same policies as the JSON form.
    parsed = cedarpy.Schema.from_str(text)
    assert cedarpy.validate_policies(POLICIES, parsed).validation_passed
    bad = "permit(principal, action, resource) when { context.args.nope };"
    assert not cedarpy.validate_policies(bad, parsed).validation_passed


def test_strange_argument_names_are_quoted_in_the_schema() -> None:
    from tether.controls.cedar_schema import cedar_string

    assert cedar_string('a"b\\c\n') == '"a\\"b\\\\c\\u{a}"'


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        (49.95, "49.9500"),
        (-0.5, "-0.5000"),
        (1e-4, "0.0001"),
        (5, "5.0000"),
        (1e14, "100000000000000.0000"),
    ],
)
def test_exact_decimals(number: float, shown: str) -> None:
    from tether.controls.cedar_schema import exact_decimal

    assert exact_decimal(number, "x") == {"__extn": {"fn": "decimal", "arg": shown}}


@pytest.mark.parametrize("number", [1e-5, 1e16, 0.12345, float("inf")])
def test_inexact_decimals_are_refused(number: float) -> None:
    from tether.controls.cedar_schema import Refused, exact_decimal

    with pytest.raises(Refused):
        exact_decimal(number, "x")


# --- asking Cedar ------------------------------------------------------------------------------


def test_the_time_record_holds_only_what_policies_name(tmp_path: Path) -> None:
    hours = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource)
        when { context.time.hour >= 9 };
        """,
    )
    assert hours.context(AuthzRequest("lookup", {"query": "x"})) == {"time": {"hour": 12}}
    dated = load(
        tmp_path,
        """\
        permit(principal, action == Tether::Action::"lookup", resource)
        when { context.time.now < datetime("2027-01-01") && context.time.weekday <= 5 };
        """,
    )
    assert dated.context(AuthzRequest("lookup", {"query": "x"}))["time"] == {
        "now": {"__extn": {"fn": "datetime", "arg": "2026-11-23T12:00:00Z"}},
        "weekday": 1,
    }
    assert dated.decide(AuthzRequest("lookup", {"query": "x"})).effect == "allow"


ERRING = (
    POLICIES
    + """
@id("overflow")
forbid(principal, action == Tether::Action::"lookup", resource)
when { context.args.limit * 9223372036854775807 > 0 };
"""
)
ASKED = [
    AuthzRequest("issue_refund", {"order_id": 1, "amount": 5}, caller=SUPPORT),
    AuthzRequest("issue_refund", {"order_id": 1, "amount": 500}, caller=SUPPORT),
    AuthzRequest("issue_refund", {"order_id": 1, "amount": 5}),
    AuthzRequest("issue_refund", {"order_id": 1, "amount": 5}, caller=SUPPORT, risk=Risk(0.9)),
    AuthzRequest("issue_refund", {"order_id": 1, "amount": 5}, caller=Caller(end_user="mallory")),
    AuthzRequest("lookup", {"query": "x", "limit": 2}),
    AuthzRequest("lookup", {"query": "x", "limit": 0}),
]


def test_cedar_is_asked_directly_with_the_same_answers_as_through_cedarpy(
    tmp_path: Path,
) -> None:
    """Tether calls cedarpy's extension itself (cheaper than ``is_authorized``); where the
    extension does not answer a probe as ``is_authorized`` does, it asks through that.
    Both ways give the same verdict for allows, denials, escalations and evaluation errors."""
    direct = load(tmp_path, ERRING)
    assert direct._ask.__name__ == "direct"
    answers = [direct.decide(r) for r in ASKED]
    assert [v.effect for v in answers] == [
        "allow",
        "escalate",
        "deny",
        "deny",
        "deny",
        "deny",
        "allow",
    ]
    assert "a Cedar policy failed to evaluate" in answers[5].reason

    def changed(*args: Any) -> list[str]:  # an extension that answers otherwise
        return ['{"decision": "Allow", "diagnostics": {"reason": [], "errors": []}}']

    def broken(*args: Any) -> list[str]:  # one that takes other arguments
        raise TypeError("is_authorized_batch() takes 2 positional arguments")

    for batch in (changed, broken, None):
        public = load(tmp_path, ERRING)
        public._ask = _asker(public.loaded.policy_set, public._entities, batch)
        assert public._ask.__name__ == "public"
        assert [public.decide(r) for r in ASKED] == answers
