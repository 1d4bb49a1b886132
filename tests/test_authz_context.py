"""The context of a Cedar request as ``Authorizer.decide`` builds it, planned once per tool:
the same records, refusals, decimals and time as the general conversion gives."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tether import tool
from tether.controls import Authorizer, AuthzRequest
from tether.controls.authz import Risk
from tether.controls.cedar_schema import (
    BOOL,
    DECIMAL,
    DECIMAL_LIMIT,
    LONG,
    STRING,
    Attr,
    CedarType,
    Rec,
    Refused,
    SetOf,
    decimal_value,
    exact_decimal,
    record,
    record_builder,
)
from tether.core import AgentRef, Caller


class Whole(int):
    pass


class Text(str):
    pass


class Real(float):
    pass


KINDS: list[CedarType] = [
    STRING,
    LONG,
    BOOL,
    DECIMAL,
    SetOf(LONG),
    SetOf(DECIMAL),
    Rec({"x": Attr(LONG, True), "y": Attr(STRING, False)}),
]
VALUES: list[Any] = [
    "x",
    "",
    " 7 ",
    "1.25",
    "yes",
    "1e3",
    Text("t"),
    0,
    7,
    -7,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    922_337_203_685_477,
    922_337_203_685_478,
    -922_337_203_685_478,
    Whole(3),
    True,
    False,
    1.5,
    49.95,
    -0.0,
    0.12345,
    1e-5,
    1e16,
    float("nan"),
    float("inf"),
    -float("inf"),
    Real(2.5),
    Decimal("1.5"),
    Decimal("1.23456"),
    [1, 2],
    [1.5, "2"],
    ["a", True],
    {"x": 1},
    {"x": "2", "y": "z", "extra": 1},
    {"y": "no x"},
    None,
]


def outcome(build: Any, *args: Any, **kw: Any) -> tuple[str, str]:
    """What ``build(*args, **kw)`` gives, as text (``repr`` shows the order of keys)."""
    try:
        return "built", repr(build(*args, **kw))
    except Refused as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: type(k).__name__ + str(KINDS.index(k)))
def test_the_planned_record_builds_and_refuses_as_record_does(kind: CedarType) -> None:
    compared = 0
    for required, default in [(True, None), (False, None), (True, "fallback")]:
        attrs = {
            "first": Attr(kind, required, default),
            "second": Attr(LONG, False),
            "third": Attr(STRING, True, "3"),
        }
        shape = Rec(attrs)
        for keep in (None, {"first", "second"}, {"second", "third"}, set()):
            planned = record_builder(shape, keep=keep)
            for value, other in itertools.product(VALUES, (None, 5, "5", 2**70)):
                values = {"first": value, "second": other}
                expected = outcome(record, values, shape, "", keep=keep)
                assert outcome(planned, values) == expected, (kind, value, other, keep)
                compared += 1
            assert outcome(planned, {}) == outcome(record, {}, shape, "", keep=keep)
    assert compared == 3 * 4 * len(VALUES) * 4


@pytest.mark.parametrize(
    "number",
    [
        0,
        1,
        -1,
        5,
        10**14,
        922_337_203_685_477,
        -922_337_203_685_477,
        922_337_203_685_478,
        -922_337_203_685_478,
        10**20,
    ],
)
def test_whole_numbers_are_decimals_as_the_decimal_module_writes_them(number: int) -> None:
    if abs(Decimal(number)) > DECIMAL_LIMIT:
        with pytest.raises(Refused, match="beyond the range"):
            exact_decimal(number, "x")
    else:
        assert exact_decimal(number, "x") == decimal_value(Decimal(number))


@tool(side_effects="read")
def lookup(query: str) -> str:
    """Look something up."""
    return query


TIMED = """\
permit(principal, action == Tether::Action::"lookup", resource)
when { context.time.now < datetime("9999-12-31") && context.time.hour >= 0
       && context.time.weekday >= 1 };
"""

MOMENTS = [
    datetime(2026, 11, 23, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("UTC")),
    datetime(2026, 11, 24, 3, 15, 30, 500_000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 3, 8, 2, 30, tzinfo=ZoneInfo("America/New_York")),  # in the DST gap
    datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),  # twice
    datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),  # before the epoch
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 11, 23, 8, 30, 1, 250_000),  # naive: local time
]


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.isoformat())
def test_the_time_context_is_now_in_utc_to_the_second(tmp_path: Path, moment: datetime) -> None:
    path = tmp_path / "timed.cedar"
    path.write_text(TIMED)
    authorizer = Authorizer.load([path], {"lookup": lookup}, AgentRef("support", "v1"))
    utc = moment.astimezone(UTC).replace(microsecond=0)
    expected = {
        "now": {"__extn": {"fn": "datetime", "arg": utc.strftime("%Y-%m-%dT%H:%M:%SZ")}},
        "hour": utc.hour,
        "weekday": utc.isoweekday(),
    }
    asked = AuthzRequest("lookup", {"query": "x"}, now=moment)
    assert authorizer.context(asked) == {"time": expected}
    clocked = Authorizer.load(
        [path], {"lookup": lookup}, AgentRef("support", "v1"), clock=lambda: moment
    )
    assert clocked.context(AuthzRequest("lookup", {"query": "x"})) == {"time": expected}


ROLES = """\
@id("support-only")
permit(principal in Tether::Role::"support", action == Tether::Action::"lookup", resource);
"""


def test_each_call_is_decided_for_its_own_caller(tmp_path: Path) -> None:
    """The principal's entities are kept per agent and caller (and the last one by identity):
    callers taking turns, or equal but distinct, are each decided on their own roles."""
    path = tmp_path / "roles.cedar"
    path.write_text(ROLES)
    agent = AgentRef("support", "v1")
    authorizer = Authorizer.load([path], {"lookup": lookup}, agent)
    staff = Caller(project="acme", roles=frozenset({"support"}))
    guest = Caller(project="acme")
    other_agent = AgentRef("support", "v2")
    turns = [
        (staff, agent, "allow"),
        (guest, agent, "deny"),
        (staff, agent, "allow"),
        (staff, agent, "allow"),
        (Caller(project="acme", roles=frozenset({"support"})), AgentRef("support", "v1"), "allow"),
        (guest, other_agent, "deny"),
        (staff, other_agent, "allow"),
        (Caller(project="acme", roles=frozenset({"billing"})), agent, "deny"),
        (guest, agent, "deny"),
    ]
    for caller, asked_agent, effect in turns:
        request = AuthzRequest("lookup", {"query": "x"}, caller=caller, agent=asked_agent)
        assert authorizer.decide(request).effect == effect, (caller, asked_agent)


@tool(side_effects="external")
def refund(amount: float, count: int = 1) -> str:
    """Refund an amount."""
    return "ok"


ANSWERS = """\
@id("small")
permit(principal, action == Tether::Action::"refund", resource)
when { context.args.amount.lessThanOrEqual(decimal("100.0")) };

@id("big")
@escalate("a manager approves refunds over 100")
permit(principal, action == Tether::Action::"refund", resource)
when { context.args.amount.greaterThan(decimal("100.0")) };

@id("risky")
forbid(principal, action, resource) when { context.risk.score_pct > 80 };

@id("overflow")
forbid(principal, action == Tether::Action::"refund", resource)
when { context.args.count * 9223372036854775807 < 0 };
"""


def metrics_early(batch: Any) -> Any:
    """cedarpy's extension answering with its timings before the diagnostics (another shape
    of answer)."""
    import json

    def reordered(*args: Any) -> list[str]:
        out = []
        for text in batch(*args):
            answer = json.loads(text)
            early = {"decision": answer.pop("decision"), "metrics": answer.pop("metrics", {})}
            out.append(json.dumps({**early, **answer}, separators=(",", ":")))
        return out

    return reordered


@pytest.mark.parametrize("shape", ["cedarpy", "metrics early"])
def test_answers_are_read_alike_whatever_came_before(tmp_path: Path, shape: str) -> None:
    """Cedar's answers are read once per distinct text (its timings left out): calls with
    different answers, in any order and repeated, get the verdicts of answers read anew."""
    import cedarpy

    from tether.controls.authz import _asker

    path = tmp_path / "answers.cedar"
    path.write_text(ANSWERS)
    tools = {"refund": refund}
    agent = AgentRef("support", "v1")
    asked = Authorizer.load([path], tools, agent)
    if shape == "metrics early":
        asked._ask = _asker(
            asked.loaded.policy_set,
            asked._entities,
            metrics_early(cedarpy._internal.is_authorized_batch),
        )
    assert asked._ask.__name__ == "direct"
    fresh = Authorizer.load([path], tools, agent)
    fresh._ask = _asker(fresh.loaded.policy_set, fresh._entities, None)  # cedarpy's wrapper
    assert fresh._ask.__name__ == "public"
    requests = [
        AuthzRequest("refund", {"amount": 5.0}),
        AuthzRequest("refund", {"amount": 500.0}),
        AuthzRequest("refund", {"amount": 5.0}, risk=Risk(0.9)),
        AuthzRequest("refund", {"amount": 5.0, "count": 2}),
        AuthzRequest("refund", {"amount": 500.0}, risk=Risk(0.95)),
    ]
    expected = [fresh.decide(r) for r in requests]
    assert [v.effect for v in expected] == ["allow", "escalate", "deny", "deny", "deny"]
    assert "failed to evaluate" in expected[3].reason
    for turn in range(len(requests)):
        order = requests[turn:] + requests[:turn]
        for request in order + order[::-1]:
            assert asked.decide(request) == expected[requests.index(request)]


def test_text_no_utf8_can_hold_is_a_denial_of_that_call_not_a_failed_control(
    tmp_path: Path,
) -> None:
    """A lone surrogate (JSON can carry one: ``"\\ud800"``) in an argument, or in the caller's
    end user or roles: that call is denied with a reason; the next call is decided as usual."""
    path = tmp_path / "all.cedar"
    path.write_text(
        '@id("lookups")\npermit(principal, action == Tether::Action::"lookup", resource)\n'
        'when { context.args.query != "" };\n'
    )
    authorizer = Authorizer.load([path], {"lookup": lookup}, AgentRef("support", "v1"))
    bad = authorizer.decide(AuthzRequest("lookup", {"query": "ok \ud800"}))
    assert bad.effect == "deny" and "not valid Unicode" in bad.reason
    for caller in (
        Caller(project="acme", end_user="user \udfff"),
        Caller(project="acme", roles=frozenset({"role \ud800"})),
    ):
        verdict = authorizer.decide(AuthzRequest("lookup", {"query": "x"}, caller=caller))
        assert verdict.effect == "deny" and "not valid Unicode" in verdict.reason
    assert authorizer.decide(AuthzRequest("lookup", {"query": "x"})).effect == "allow"
    fine = Caller(project="acme", end_user="José ✓", roles=frozenset({"équipe"}))
    assert authorizer.decide(AuthzRequest("lookup", {"query": "é"}, caller=fine)).effect == "allow"
