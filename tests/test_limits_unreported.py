"""Run limits (``max_total_tokens``, ``max_cost_usd``) against model calls whose provider
reported no usage: each such call counts at its worst case (its input estimate plus its
``max_tokens``, priced), as budgets charge it, never as 0 tokens and $0."""

from __future__ import annotations

from fakes.openai_server import FakeOpenAIServer, Reply, completion_body, tool_call_json
from fakes.specs import make_spec
from tether import Agent, Limits, Outcome, RunResult, tool
from tether.providers import OpenAIChatModel
from tether.spec import ModelConfig


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def unreported_call(i: int) -> Reply:
    """A tool call from a server that leaves ``usage`` out of its reply."""
    calls = [tool_call_json(f"c{i}", "lookup", f'{{"key": "k{i}"}}')]
    body = completion_body(content=None, tool_calls=calls)
    del body["usage"]
    return Reply(json=body)


async def run_against_unreported_usage(limits: Limits, max_tokens: int | None = None) -> RunResult:
    """A run of an agent whose server answers with tool calls and never reports usage."""
    with FakeOpenAIServer() as server:
        server.enqueue(*(unreported_call(i) for i in range(10)))
        model = OpenAIChatModel(
            "gpt-4.1-mini", base_url=server.base_url, api_key="sk-test", max_retries=0, timeout_s=5
        )
        config = ModelConfig(provider="openai", name="gpt-4.1-mini", max_tokens=max_tokens)
        agent = Agent(
            make_spec(limits=limits, model=config), model=model, tools=[lookup], trace=False
        )
        try:
            return await agent.run("look things up")
        finally:
            await agent.aclose()


async def test_unreported_calls_count_their_worst_case_against_max_total_tokens() -> None:
    """Before: each call counted 0 tokens, so the run went on to ``max_turns`` however much
    its calls used. Now each counts its input estimate + ``max_tokens`` (1,000 here)."""
    result = await run_against_unreported_usage(Limits(max_total_tokens=3_500), max_tokens=1_000)
    assert result.outcome is Outcome.LIMIT_EXCEEDED
    reason = result.stop_reason or ""
    assert "max_total_tokens limit reached" in reason, reason
    assert "reported no usage" in reason, reason
    # 3 x (input + 1,000) < 3,500 lets a 4th call go (a run may end one call past its
    # limit, as with reported usage); 4 x that does not let a 5th
    assert result.state.turns == 4
    assert result.state.usage.total_tokens == 0  # the record still says what was reported
    assert result.state.unreported_tokens > 3_000


async def test_unreported_calls_count_their_priced_worst_case_against_max_cost_usd() -> None:
    """Priced at the model's price: 1,000 output tokens of gpt-4.1-mini are $0.0016."""
    result = await run_against_unreported_usage(Limits(max_cost_usd=0.004), max_tokens=1_000)
    assert result.outcome is Outcome.LIMIT_EXCEEDED
    reason = result.stop_reason or ""
    assert "max_cost_usd limit reached" in reason and "reported no usage" in reason, reason
    assert result.state.turns == 3
    assert result.cost_usd is None  # the cost itself stays unknown, not the worst case


async def test_without_max_tokens_the_worst_case_output_is_4096_tokens() -> None:
    """A request without ``max_tokens``: the output's worst case is 4,096 tokens, the default
    of a budgets section's ``max_output_tokens``."""
    result = await run_against_unreported_usage(Limits(max_total_tokens=9_000))
    assert result.outcome is Outcome.LIMIT_EXCEEDED and result.state.turns == 3
    assert "max_total_tokens" in (result.stop_reason or "")
