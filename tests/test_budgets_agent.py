"""Budgets and rate limits in real runs: the real OpenAI client against a real HTTP server on
127.0.0.1 reporting the usage each test needs, counters in a real SQLite file (next to the
trace), the real PostgreSQL or the real Redis. A budget running out mid-run ends it with
``budget_exceeded`` and a message naming the budget; every call made is charged what it used
(a failed call nothing but its request, a stream cut midway what arrived, a timed-out one
nothing); day and month windows roll over; a Redis that is down fails closed unless
``fail_open``; 64 concurrent runs stay within one call's worst case of their budget."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fakes.models import FailingModel
from fakes.openai_server import (
    FakeOpenAIServer,
    Reply,
    completion_body,
    stream_chunk,
    tool_call_json,
)
from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import Agent, Caller, Limits, Outcome, ScriptedModel, tool
from tether.controls.budget_ledger import BudgetLedger, RedisBudgetLedger
from tether.controls.budget_sql import SqlBudgetLedger
from tether.controls.budgets import BudgetControl, window_id
from tether.core import now_ns
from tether.providers import OpenAIChatModel
from tether.spec import BudgetsConfig
from tether.store import Store
from tether.store.audit import iter_audit
from tether.trace import semconv

DECISION = semconv.EVENT_CONTROL_DECISION
SETTLED = "tether.budget.settled"


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value-of-{key}"


def call_reply(i: int, *, prompt: int = 100, completion: int = 900) -> Reply:
    calls = [tool_call_json(f"c{i}", "lookup", f'{{"key": "k{i}"}}')]
    return Reply.completion(
        tool_calls=calls, content=None, prompt_tokens=prompt, completion_tokens=completion
    )


def answer(text: str = "done", *, prompt: int = 100, completion: int = 50) -> Reply:
    return Reply.completion(content=text, prompt_tokens=prompt, completion_tokens=completion)


def at(*when: int) -> int:
    """A UTC time in nanoseconds."""
    return int(datetime(*when, tzinfo=UTC).timestamp()) * 1_000_000_000  # type: ignore[misc]


def budget_agent(
    server: FakeOpenAIServer, url: str | bool, budgets: dict[str, Any], **kw: Any
) -> Agent:
    model = OpenAIChatModel(
        "gpt-4.1-mini", base_url=server.base_url, api_key="sk-test", max_retries=0, timeout_s=5
    )
    spec = make_spec(budgets=BudgetsConfig(max_output_tokens=1000, **budgets), **kw)
    return Agent(spec, model=model, tools=[lookup], trace=url)


def ledger_of(agent: Agent) -> BudgetLedger:
    assert agent.harness.budget is not None
    return agent.harness.budget.ledger


def day_key(counter: str, when: int | None = None, who: str = "default") -> str:
    return f"project:{who}:{counter}:day:{window_id('day', when or now_ns())}"


async def test_a_budget_running_out_mid_run_ends_it_naming_the_budget(sqlite_url: str) -> None:
    with FakeOpenAIServer() as server:
        server.enqueue(call_reply(1), call_reply(2), call_reply(3), answer())
        agent = budget_agent(
            server, sqlite_url, {"limits": [{"scope": "project", "window": "day", "tokens": 2500}]}
        )
        result = await agent.run("look three things up")
        await agent.aclose()
        assert len(server.requests) == 2  # the third call was never made
    assert result.outcome is Outcome.BUDGET_EXCEEDED and result.status == "completed"
    assert result.state.tool_calls == 2 and result.usage.total_tokens == 2000  # kept
    reason = result.stop_reason or ""
    assert reason.startswith(
        "budgets: the budget on tokens per day of project 'default' has no room for this call: "
        "limit 2,500 tokens, used 2,000 tokens, this call needs up to 1,"
    )
    assert "max output tokens" in reason
    assert "a usage budget has been reached (tokens per day of this project: 2,500" in (
        result.output
    )
    assert "It renews on " in result.output and "at 00:00 UTC." in result.output
    assert ledger_of(agent).spent(day_key("tokens")) == (2000, 0)

    run, _, events = trace_of(sqlite_url, result.run_id)
    assert run.outcome == "budget_exceeded"
    decisions = [e for e in events if e.name == DECISION and e.span_id == result.run_id]
    budget = [e.attributes for e in decisions if e.attributes["tether.control.name"] == "budgets"]
    assert [d["tether.decision"] for d in budget] == ["allow", "allow", "block"]
    assert budget[0]["tether.decision.reason"].startswith("reserved up to 1,")
    assert budget[0]["tether.budget.keys"] == [day_key("tokens")]
    assert budget[2]["tether.budget.used"] == 2000 and budget[2]["tether.budget.limit"] == 2500
    assert budget[2]["tether.budget.scope"] == "project"
    assert budget[2][semconv.TETHER_RUN_OUTCOME] == "budget_exceeded"
    settled = [e.attributes for e in events if e.name == SETTLED]
    assert [s["tether.budget.charged_tokens"] for s in settled] == [1000, 1000]
    assert all(s["tether.budget.reserved_tokens"] > 1000 for s in settled)

    store = Store(sqlite_url)  # the refusal is an entry of the audit log, like other blocks
    with store.engine.connect() as conn:
        entries = [e for e, _a, _d in iter_audit(conn)]
    store.close()
    [entry] = entries
    assert entry.kind == "decision" and entry.run_id == result.run_id
    assert entry.details["control"] == "budgets" and entry.details["outcome"] == "budget_exceeded"
    assert entry.actor["project"] == "default" and entry.actor["agent"] == "tester"


async def test_a_dollar_budget_charges_the_priced_cost(sqlite_url: str) -> None:
    with FakeOpenAIServer() as server:
        server.enqueue(call_reply(1, prompt=1000, completion=500), answer(prompt=10_000))
        agent = budget_agent(
            server, sqlite_url, {"limits": [{"scope": "run", "usd": 0.01}]}, limits=Limits()
        )
        result = await agent.run("hi")
        await agent.aclose()
    # 1000 in x $0.40/M + 500 out x $1.60/M = $0.0012; then 10,000 in + 50 out = $0.00408.
    assert result.outcome is Outcome.FINAL_ANSWER
    assert result.cost_usd == pytest.approx(0.0012 + 0.00408)
    key = f"run:{result.run_id}:usd:run:run"
    assert ledger_of(agent).spent(key) == (1200 + 4080, 0)
    _, _, events = trace_of(sqlite_url, result.run_id)
    settled = [e.attributes for e in events if e.name == SETTLED]
    assert [s["tether.budget.charged_usd"] for s in settled] == [0.0012, 0.00408]


async def test_a_failed_call_gives_back_its_reservation_and_counts_as_a_request(
    sqlite_url: str,
) -> None:
    spec = make_spec(
        budgets=BudgetsConfig(
            limits=[{"scope": "project", "window": "day", "tokens": 10_000}],
            rate_limits=[{"scope": "project", "rpm": 100}],
        )
    )
    agent = Agent(spec, model=FailingModel("gpt-4.1-mini"), trace=sqlite_url)
    result = await agent.run("hi")
    assert result.outcome is Outcome.ERROR
    ledger = ledger_of(agent)
    assert ledger.spent(day_key("tokens")) == (0, 0)
    minute = window_id("minute", now_ns())
    used, held = ledger.spent(f"project:default:requests:minute:{minute}")
    assert held == 0 and used in (1, 0)  # 0 only if the minute turned meanwhile
    _, _, events = trace_of(sqlite_url, result.run_id)
    [settled] = [e.attributes for e in events if e.name == SETTLED]
    assert settled["tether.budget.charged_tokens"] == 0


async def test_a_stream_cut_midway_is_charged_what_arrived(sqlite_url: str) -> None:
    chunks = [
        stream_chunk({"role": "assistant", "content": "Hello"}),
        stream_chunk(None, usage={"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}),
        stream_chunk({"content": " world"}),
        stream_chunk({"content": " never sent"}),
    ]
    with FakeOpenAIServer() as server:
        server.enqueue(Reply(sse=chunks, sse_cut_after=3))
        agent = budget_agent(
            server, sqlite_url, {"limits": [{"scope": "project", "window": "day", "tokens": 9000}]}
        )
        result = await agent.run("hi", stream=lambda event: None)
        await agent.aclose()
    assert result.outcome is Outcome.ERROR
    assert ledger_of(agent).spent(day_key("tokens")) == (13, 0)


async def test_a_call_cut_by_the_run_timeout_gives_back_its_reservation(sqlite_url: str) -> None:
    with FakeOpenAIServer() as server:
        server.enqueue(Reply(delay_s=3, json={}))
        agent = budget_agent(
            server,
            sqlite_url,
            {"limits": [{"scope": "project", "window": "day", "tokens": 9000}]},
            limits=Limits(timeout_s=0.5),
        )
        result = await agent.run("hi")
        await agent.aclose()
    assert result.outcome is Outcome.LIMIT_EXCEEDED
    assert ledger_of(agent).spent(day_key("tokens")) == (0, 0)


BIG = "hi " * 400
"""An input of about 300 tokens: a run's use (~303 tokens) is near its worst case (~406 with
100 output tokens), so a 500-token budget holds one run and refuses the next."""


def scripted_agent(url: str, budgets: dict[str, Any], **kw: Any) -> Agent:
    spec = make_spec(budgets=BudgetsConfig(max_output_tokens=100, **budgets))
    model = ScriptedModel([{"text": "fine"}], name="gpt-4.1-mini")
    return Agent(spec, model=model, trace=url, **kw)


def control_of(agent: Agent) -> BudgetControl:
    assert agent.harness.budget is not None
    return agent.harness.budget


@pytest.mark.parametrize(
    ("window", "before", "after", "renews"),
    [
        ("day", at(2026, 11, 24, 23, 59, 30), at(2026, 11, 25, 0, 0, 1), "2026-11-25 at 00:00"),
        ("month", at(2026, 12, 31, 23, 59), at(2027, 1, 1, 0, 0, 0), "2027-01-01 at 00:00"),
    ],
)
async def test_day_and_month_windows_roll_over(
    sqlite_url: str, window: str, before: int, after: int, renews: str
) -> None:
    agent = scripted_agent(
        sqlite_url, {"limits": [{"scope": "agent", "window": window, "tokens": 500}]}
    )
    now = [before]
    control_of(agent).clock = lambda: now[0]
    first = await agent.run(BIG)
    assert first.outcome is Outcome.FINAL_ANSWER
    second = await agent.run(BIG)
    assert second.outcome is Outcome.BUDGET_EXCEEDED
    assert f"It renews on {renews} UTC." in second.output
    assert "tokens per " + window + " of agent 'tester' (project 'default')" in (
        second.stop_reason or ""
    )
    now[0] = after
    third = await agent.run(BIG)
    assert third.outcome is Outcome.FINAL_ANSWER
    ledger = ledger_of(agent)
    for when, runs in ((before, first), (after, third)):
        key = f"agent:default/tester:tokens:{window}:{window_id(window, when)}"
        assert ledger.spent(key) == (runs.usage.total_tokens, 0)


async def test_end_user_budgets_count_each_end_user_apart(sqlite_url: str) -> None:
    agent = scripted_agent(
        sqlite_url, {"limits": [{"scope": "end_user", "window": "day", "tokens": 500}]}
    )
    ann, bob = Caller(project="shop", end_user="ann"), Caller(project="shop", end_user="bob:x/y")
    assert (await agent.run(BIG, caller=ann)).outcome is Outcome.FINAL_ANSWER
    refused = await agent.run(BIG, caller=ann)
    assert refused.outcome is Outcome.BUDGET_EXCEEDED
    assert "end user 'ann' (project 'shop')" in (refused.stop_reason or "")
    assert "(tokens per day of your account: 500 tokens)" in refused.output
    assert (await agent.run(BIG, caller=bob)).outcome is Outcome.FINAL_ANSWER
    # A run with no end user is not counted against end users' budgets.
    for _ in range(3):
        assert (await agent.run(BIG, caller=Caller(project="shop"))).outcome == "final_answer"
    ledger = ledger_of(agent)
    today = window_id("day", now_ns())
    assert ledger.spent(f"end_user:shop/bob%3Ax%2Fy:tokens:day:{today}")[0] > 0


async def test_a_rate_limit_refuses_or_waits_for_the_next_minute(sqlite_url: str) -> None:
    agent = scripted_agent(sqlite_url, {"rate_limits": [{"scope": "project", "rpm": 1}]})
    now = [at(2026, 11, 24, 10, 0, 50)]
    control = control_of(agent)
    control.clock = lambda: now[0]
    assert (await agent.run("hi")).outcome is Outcome.FINAL_ANSWER
    limited = await agent.run("hi")
    assert limited.outcome is Outcome.RATE_LIMITED and limited.status == "completed"
    assert "Please try again in 10 seconds." in limited.output
    assert "the rate limit on model calls per minute of project 'default'" in (
        limited.stop_reason or ""
    )

    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the clock moves on as the call waits
        waits.append(seconds)
        now[0] += int(seconds * 1e9)

    waiting = scripted_agent(
        sqlite_url, {"rate_limits": [{"scope": "project", "rpm": 1}], "wait_s": 15}
    )
    w = control_of(waiting)
    w.clock, w.sleep = (lambda: now[0]), sleep
    assert (await waiting.run("hi")).outcome is Outcome.FINAL_ANSWER  # waited for 10:01
    assert waits == [pytest.approx(10.01)]
    now[0] = at(2026, 11, 24, 10, 1, 30)
    assert (await waiting.run("hi")).outcome is Outcome.RATE_LIMITED  # 30 s > wait_s


async def test_a_call_bigger_than_a_whole_rate_limit_is_refused_without_waiting(
    sqlite_url: str,
) -> None:
    agent = scripted_agent(sqlite_url, {"rate_limits": [{"scope": "run", "tpm": 50}], "wait_s": 60})
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    control_of(agent).sleep = sleep
    result = await agent.run("hi")
    assert result.outcome is Outcome.RATE_LIMITED and slept == []
    assert "more than the whole limit: lower max_tokens or raise the limit" in (
        result.stop_reason or ""
    )


async def test_redis_down_fails_closed_by_default_and_open_when_asked(sqlite_url: str) -> None:
    budgets = {
        "backend": "redis",
        "redis_url": "redis://127.0.0.1:1/0",
        "limits": [{"scope": "project", "window": "day", "usd": 5}],
    }
    closed = scripted_agent(sqlite_url, budgets)
    result = await closed.run("hi")
    assert result.outcome is Outcome.CONTROL_ERROR and result.status == "failed"
    assert "the usage budget could not be checked" in result.output
    reason = result.stop_reason or ""
    assert "budgets could not be checked, so the call is refused (fail closed)" in reason
    assert "budget store (Redis at redis://127.0.0.1:1/0) cannot be reached" in reason
    assert result.state.turns == 0

    opened = scripted_agent(sqlite_url, {**budgets, "fail_open": True})
    passed = await opened.run("hi")
    assert passed.outcome is Outcome.FINAL_ANSWER
    _, _, events = trace_of(sqlite_url, passed.run_id)
    [warning] = [
        e.attributes
        for e in events
        if e.name == DECISION and e.attributes["tether.control.name"] == "budgets"
    ]
    assert warning["tether.decision"] == "allow"
    assert warning["tether.decision.reason"].startswith(
        "WARNING: the call goes through uncounted (fail_open): the budget store (Redis"
    )
    assert warning["tether.budget.unavailable"] is True
    [settled] = [e.attributes for e in events if e.name == SETTLED] or [{}]
    assert settled == {}  # nothing was held, nothing to settle


async def test_a_redis_that_never_answers_ends_the_run_at_its_timeout(sqlite_url: str) -> None:
    """A black hole: Redis accepts the connection and never answers. The run's timeout
    (0.5 s) falls while the reservation is in flight; the run still ends, once the client's
    own timeout (2 s) has given the reservation up, with outcome limit_exceeded."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        port = server.getsockname()[1]
        budgets = {
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "limits": [{"scope": "project", "window": "day", "tokens": 10_000}],
        }
        spec = make_spec(budgets=BudgetsConfig(**budgets), limits=Limits(timeout_s=0.5))
        model = ScriptedModel([{"text": "fine"}], name="gpt-4.1-mini")
        agent = Agent(spec, model=model, trace=sqlite_url)
        started = time.monotonic()
        result = await agent.run("hi")
        assert time.monotonic() - started < 8
        assert result.outcome is Outcome.LIMIT_EXCEEDED and result.state.turns == 0
        await agent.aclose()
    finally:
        server.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_64_concurrent_runs_stay_within_one_calls_worst_case(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    backend: str,
) -> None:
    budgets: dict[str, Any] = {}
    ledger: BudgetLedger | None = None
    if backend == "postgres":
        ledger = SqlBudgetLedger(str(request.getfixturevalue("pg_url")))
    elif backend == "redis":
        budgets = {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
        monkeypatch.setenv("TETHER_REDIS_PREFIX", request.getfixturevalue("redis_prefix"))
    probe = scripted_agent(sqlite_url, {"limits": [{"scope": "run", "tokens": 10**6}]})
    one = await probe.run("hi")
    worst = one.state.turns and _reserved_tokens(sqlite_url, one.run_id)
    real = one.usage.total_tokens
    limit = 20 * worst + worst // 2
    agent = scripted_agent(
        sqlite_url,
        {**budgets, "limits": [{"scope": "project", "window": "month", "tokens": limit}]},
        budget_ledger=ledger,
    )
    results = await asyncio.gather(*(agent.run("hi") for _ in range(64)))
    outcomes = [r.outcome for r in results]
    admitted = outcomes.count(Outcome.FINAL_ANSWER)
    assert admitted + outcomes.count(Outcome.BUDGET_EXCEEDED) == 64
    key = f"project:default:tokens:month:{window_id('month', now_ns())}"
    used, held = ledger_of(agent).spent(key)
    assert held == 0 and used == admitted * real
    assert used <= limit + worst
    assert admitted >= 20  # each call reserved its worst case, which its real use is under
    if isinstance(ledger, SqlBudgetLedger):
        ledger.close()


def _reserved_tokens(url: str, run_id: str) -> int:
    _, _, events = trace_of(url, run_id)
    [settled] = [e.attributes for e in events if e.name == SETTLED]
    return int(settled["tether.budget.reserved_tokens"])


AGENT_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[3])
    from fakes.specs import make_spec
    from tether import Agent, ScriptedModel
    from tether.spec import BudgetsConfig
    budgets = {"limits": [{"scope": "project", "window": "day", "tokens": 100000}],
               "hold_s": 1.5}
    if sys.argv[1] == "redis":
        budgets.update(backend="redis", redis_url=sys.argv[2])
    spec = make_spec(budgets=BudgetsConfig(**budgets))
    model = ScriptedModel([{"text": "slow"}], name="gpt-4.1-mini", latency_s=600)
    agent = Agent(spec, model=model, trace=sys.argv[4])
    asyncio.run(agent.run("hi"))
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_run_killed_mid_call_holds_its_reservation_only_until_it_expires(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    backend: str,
) -> None:
    if backend == "redis":
        redis_url = str(request.getfixturevalue("redis_url"))
        prefix = str(request.getfixturevalue("redis_prefix"))
        monkeypatch.setenv("TETHER_REDIS_PREFIX", prefix)
        ledger: BudgetLedger = RedisBudgetLedger.from_url(redis_url, prefix=prefix)
    else:
        redis_url = ""
        ledger = SqlBudgetLedger(sqlite_url)
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", AGENT_PROCESS, backend, redis_url, tests, sqlite_url],
        env={**os.environ},
    )
    key = day_key("tokens")
    try:
        deadline = time.monotonic() + 30
        while ledger.spent(key)[1] == 0:
            assert proc.poll() is None, "the agent process ended"
            assert time.monotonic() < deadline, "the run never reserved"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert ledger.spent(key)[1] > 0  # held by a process that is gone...
        deadline = time.monotonic() + 15
        while ledger.spent(key)[1]:  # ...until it expires
            assert time.monotonic() < deadline, "the killed run's reservation never expired"
            time.sleep(0.1)
        assert ledger.spent(key) == (0, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if isinstance(ledger, SqlBudgetLedger):
            ledger.close()


async def test_a_huge_input_is_refused_before_any_call(sqlite_url: str) -> None:
    """10 MB of input: its worst case alone is past the whole budget, so the model is never
    called and the message says the limit cannot be met by this call at all."""
    agent = scripted_agent(
        sqlite_url, {"limits": [{"scope": "end_user", "window": "day", "usd": 1}]}
    )
    caller = Caller(end_user="\x1b[31mred\x1b[0m" + "u" * 500)  # escapes, and too long for a key
    result = await agent.run("x" * 10_000_000, caller=caller)
    assert result.outcome is Outcome.BUDGET_EXCEEDED and result.state.turns == 0
    reason = result.stop_reason or ""
    assert "more than the whole limit" in reason and "2,500,0" in reason  # tokens estimated
    assert "end user '\\x1b[31mred" in reason  # shown escaped, as repr
    _, _, events = trace_of(sqlite_url, result.run_id)
    [block] = [e.attributes for e in events if e.attributes.get("tether.decision") == "block"]
    key = block["tether.budget.key"]
    assert key.startswith("end_user:default/sha256-") and len(key) < 120
    assert "\x1b" not in key


def test_no_budget_section_means_no_budget_control(sqlite_url: str) -> None:
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "hi"}]), trace=False)
    assert agent.harness.budget is None
    assert all(c.name != "budgets" for c in agent.controls)
    with_budgets = scripted_agent(sqlite_url, {"limits": [{"scope": "run", "tokens": 10}]})
    assert with_budgets.controls[-1] is with_budgets.harness.budget  # last in the pipeline


async def test_a_call_whose_usage_went_unreported_is_charged_its_reservation(
    sqlite_url: str,
) -> None:
    """A server that leaves ``usage`` out: the call was charged 0 tokens, so a token budget
    never ran out however much such calls used. The reserved worst case is charged."""
    body = completion_body(content="done")
    del body["usage"]
    with FakeOpenAIServer() as server:
        server.enqueue(Reply(json=body))
        agent = budget_agent(
            server, sqlite_url, {"limits": [{"scope": "project", "window": "day", "tokens": 9000}]}
        )
        result = await agent.run("hi")
        await agent.aclose()
    assert result.ok and result.cost_usd is None
    _, _, events = trace_of(sqlite_url, result.run_id)
    [settled] = [e.attributes for e in events if e.name == SETTLED]
    reserved = settled["tether.budget.reserved_tokens"]
    assert reserved > 1000 and settled["tether.budget.charged_tokens"] == reserved
    assert ledger_of(agent).spent(day_key("tokens")) == (reserved, 0)
