"""Cedar's ``context.budget`` reads the budgets of the budget control: real agents (the real
OpenAI client against a real HTTP server on 127.0.0.1 reporting the usage each test needs),
budgets counted in a real SQLite file, the real PostgreSQL or the real Redis. A policy that
keeps fifty cents in reserve lets a tool call through while the day's budget has room and
refuses it once earlier runs have spent it; the run's own limit counts when it is tighter; a
budget store that cannot be read refuses the call (fail closed) unless the budgets fail open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAIServer, Reply, tool_call_json
from fakes.specs import make_spec
from fakes.tcp_proxy import TcpProxy
from fakes.traces import control_decisions
from tether import Agent, Caller, Control, Decision, Limits, Outcome, tool
from tether.controls.budget_ledger import BudgetLedger
from tether.controls.budget_sql import SqlBudgetLedger
from tether.controls.budgets import window_id
from tether.controls.pipeline import HookContext
from tether.core import now_ns
from tether.providers import ModelResponse, OpenAIChatModel
from tether.spec import BudgetsConfig
from tether.spec.model import AuthorizationConfig

POLICIES = """\
@id("any-lookup")
permit(principal, action == Tether::Action::"lookup", resource);

@id("keep-fifty-cents")
forbid(principal, action == Tether::Action::"lookup", resource)
when { context.budget has usd_left && context.budget.usd_left.lessThan(decimal("0.50")) };
"""

MICROS = POLICIES.replace(
    'context.budget has usd_left && context.budget.usd_left.lessThan(decimal("0.50"))',
    "context.budget has usd_left_micros && context.budget.usd_left_micros < 500000",
)
"""The same policies, the money in millionths of a dollar (a Long: cheaper for Cedar)."""
assert MICROS != POLICIES

looked_up: list[str] = []


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    looked_up.append(key)
    return f"value-of-{key}"


def lookup_reply(key: str) -> Reply:
    calls = [tool_call_json(f"call-{key}", "lookup", f'{{"key": "{key}"}}')]
    return Reply.completion(tool_calls=calls, content=None, prompt_tokens=100, completion_tokens=20)


def answer(*, completion: int = 20) -> Reply:
    """An answer; ``completion`` tokens at gpt-4.1-mini's $1.60 per million."""
    return Reply.completion(content="done", prompt_tokens=100, completion_tokens=completion)


def cedar_agent(
    tmp_path: Path,
    server: FakeOpenAIServer,
    trace: str,
    budgets: dict[str, Any],
    *,
    ledger: BudgetLedger | None = None,
    limits: Limits | None = None,
    controls: tuple[Control, ...] = (),
    policies: str = POLICIES,
) -> Agent:
    (tmp_path / "tools.cedar").write_text(policies)
    spec = make_spec(
        budgets=BudgetsConfig(max_output_tokens=1000, **budgets),
        authorization=AuthorizationConfig(policies=["tools.cedar"]),
        limits=limits or Limits(),
    )
    model = OpenAIChatModel(
        "gpt-4.1-mini", base_url=server.base_url, api_key="sk-test", max_retries=0, timeout_s=5
    )
    return Agent(
        spec,
        model=model,
        tools=[lookup],
        trace=trace,
        base_dir=tmp_path,
        budget_ledger=ledger,
        controls=controls,
    )


def cedar_decisions(url: str, run_id: str) -> list[tuple[str, str]]:
    found = control_decisions(url, run_id, "cedar_authorization")
    return [(d["tether.decision"], d["tether.decision.reason"]) for d in found]


@pytest.fixture(autouse=True)
def _no_lookups() -> None:
    looked_up.clear()


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_a_policy_reads_what_the_day_budget_leaves_across_runs(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sqlite_url: str,
    backend: str,
) -> None:
    budgets: dict[str, Any] = {"limits": [{"scope": "project", "window": "day", "usd": 1.0}]}
    ledger: BudgetLedger | None = None
    if backend == "postgres":
        ledger = SqlBudgetLedger(str(request.getfixturevalue("pg_url")))
    elif backend == "redis":
        budgets |= {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
        monkeypatch.setenv("TETHER_REDIS_PREFIX", request.getfixturevalue("redis_prefix"))
    with FakeOpenAIServer() as server:
        agent = cedar_agent(tmp_path, server, sqlite_url, budgets, ledger=ledger)
        # Run 1: the lookup goes through ($1.00 left), then an answer of 400,000 output
        # tokens costs $0.64: about $0.36 is left of the day's dollar.
        server.enqueue(lookup_reply("a"), answer(completion=400_000))
        first = await agent.run("look a up")
        # Run 2, another run of the same project the same day: its lookup is refused.
        server.enqueue(lookup_reply("b"), answer())
        second = await agent.run("look b up")
        await agent.aclose()
    assert first.outcome is Outcome.FINAL_ANSWER and second.outcome is Outcome.FINAL_ANSWER
    assert looked_up == ["a"]
    [(effect, reason)] = cedar_decisions(sqlite_url, first.run_id)
    assert effect == "allow" and "permitted by Cedar policy any-lookup" in reason
    [(effect, reason)] = cedar_decisions(sqlite_url, second.run_id)
    assert effect == "block" and "denied by Cedar policy keep-fifty-cents" in reason
    assert "keep-fifty-cents" in str(second.state.messages[-2].content)  # the model is told
    # What the policy read is what the ledger holds: the second run did not start a budget
    # of its own (the run's limits set no cost limit).
    assert agent.harness.budget is not None
    key = f"project:default:usd:day:{window_id('day', now_ns())}"
    used, held = agent.harness.budget.ledger.spent(key)
    assert held == 0 and 640_000 < used < 1_000_000
    if isinstance(ledger, SqlBudgetLedger):
        ledger.close()


@pytest.mark.parametrize("policies", [POLICIES, MICROS], ids=["decimal", "micros"])
async def test_each_end_user_reads_their_own_budget(
    tmp_path: Path, sqlite_url: str, policies: str
) -> None:
    budgets = {"limits": [{"scope": "end_user", "window": "month", "usd": 1.0}]}
    ann, bob = Caller(project="shop", end_user="ann"), Caller(project="shop", end_user="bob")
    with FakeOpenAIServer() as server:
        agent = cedar_agent(tmp_path, server, sqlite_url, budgets, policies=policies)
        server.enqueue(answer(completion=400_000))
        spent = await agent.run("hi", caller=ann)
        server.enqueue(lookup_reply("ann"), answer(), lookup_reply("bob"), answer())
        refused = await agent.run("look up", caller=ann)
        allowed = await agent.run("look up", caller=bob)
        await agent.aclose()
    assert spent.outcome is Outcome.FINAL_ANSWER
    assert looked_up == ["bob"]
    assert cedar_decisions(sqlite_url, refused.run_id)[0][0] == "block"
    assert cedar_decisions(sqlite_url, allowed.run_id)[0][0] == "allow"


async def test_the_runs_own_cost_limit_counts_when_it_is_tighter(
    tmp_path: Path, sqlite_url: str
) -> None:
    budgets = {"limits": [{"scope": "project", "window": "day", "usd": 100.0}]}
    with FakeOpenAIServer() as server:
        agent = cedar_agent(tmp_path, server, sqlite_url, budgets, limits=Limits(max_cost_usd=1.0))
        # The first reply costs $0.64 and asks for a lookup: the run has $0.36 of its $1.00.
        costly = [tool_call_json("c1", "lookup", '{"key": "x"}')]
        server.enqueue(
            Reply.completion(
                tool_calls=costly, content=None, prompt_tokens=100, completion_tokens=400_000
            ),
            answer(),
        )
        result = await agent.run("look x up")
        await agent.aclose()
    assert looked_up == []
    [(effect, reason)] = cedar_decisions(sqlite_url, result.run_id)
    assert effect == "block" and "keep-fifty-cents" in reason


class CutRedis(Control):
    """Closes the proxy in front of Redis once the model has answered: the budget store goes
    away between the model call and the tool call Cedar decides."""

    name = "cut_redis"

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy

    async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
        if response.tool_calls:
            self.proxy.close()
        return Decision.allow()


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_budget_store_gone_at_the_tool_call_fails_closed_unless_open(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sqlite_url: str,
    redis_url: str,
    redis_prefix: str,
    fail_open: bool,
) -> None:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    proxy = TcpProxy(0, (host, int(port)))
    budgets = {
        "backend": "redis",
        "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
        "fail_open": fail_open,
        "limits": [{"scope": "project", "window": "day", "usd": 5.0}],
    }
    monkeypatch.setenv("TETHER_REDIS_PREFIX", redis_prefix)
    try:
        with FakeOpenAIServer() as server:
            agent = cedar_agent(tmp_path, server, sqlite_url, budgets, controls=(CutRedis(proxy),))
            server.enqueue(lookup_reply("k"), answer())
            result = await agent.run("look k up")
            await agent.aclose()
    finally:
        proxy.close()
    [(effect, reason)] = cedar_decisions(sqlite_url, result.run_id)
    if fail_open:
        # The budgets are not read: the policy sees no usd_left, and the lookup goes through.
        assert effect == "allow" and looked_up == ["k"]
        assert result.outcome is Outcome.FINAL_ANSWER
    else:
        assert effect == "block" and looked_up == []
        assert reason.startswith(
            "tool 'lookup' refused (fail closed): the policies read context.budget, and the "
            "budgets could not be read: the budget store (Redis at redis://127.0.0.1:"
        )
        # The next model call cannot reserve either: the run ends there, failed.
        assert result.outcome is Outcome.CONTROL_ERROR
