"""Huge payloads in a run: limits see the next call's input before it is made, and traces store
clipped text while the caller gets all of it. Real ScriptedModel, real SQLite file."""

from __future__ import annotations

from typing import Any

import pytest

from fakes.specs import make_spec
from tether import Agent, Limits, ScriptedModel, ToolResult
from tether.store import Store
from tether.trace import semconv, writer_for
from tether.trace.messages import messages_json

FIVE_MB = 5 * 1024 * 1024


class HugeResultTool:
    """A tool (the ``Tool`` protocol, no framework help) whose result is five megabytes."""

    name = "dump"
    description = "Returns everything it has."
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    side_effects = "read"
    scopes: tuple[str, ...] = ()
    timeout_s = 30.0

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult("z" * FIVE_MB)


def stored(url: str, trace_id: str) -> tuple[Any, list[Any], list[Any]]:
    writer_for(url).flush()
    store = Store(url)
    try:
        run = store.get_run(trace_id)
        return run, store.get_spans(run.run_id), store.get_events(run.run_id)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("limits", "limit_name"),
    [({"max_total_tokens": 100_000}, "max_total_tokens"), ({"max_cost_usd": 0.05}, "max_cost_usd")],
)
async def test_a_limit_stops_a_huge_next_call_before_it_is_made(
    sqlite_url: str, limits: dict[str, Any], limit_name: str
) -> None:
    model = ScriptedModel(
        [{"tool_calls": [{"name": "dump"}]}, {"text": "summary"}], name="gpt-4.1-mini"
    )
    agent = Agent(
        make_spec(limits=Limits(**limits)),
        model=model,
        tools=[HugeResultTool()],
        trace=sqlite_url,
    )
    result = await agent.run("dump it all")

    assert result.outcome == "limit_exceeded" and limit_name in result.output
    assert result.state.turns == 1  # the call with five megabytes of input was never made
    assert result.usage.total_tokens < 1_000
    assert "estimate" in (result.stop_reason or "")
    _, spans, events = stored(sqlite_url, result.trace_id)
    assert [s.kind for s in spans].count("model") == 1
    trip = next(e for e in events if e.attributes.get(semconv.TETHER_CONTROL_NAME) == "limits")
    reason = trip.attributes[semconv.TETHER_DECISION_REASON]
    assert reason.startswith(f"{limit_name} limit reached") and "an estimate" in reason


async def test_limits_that_fit_the_next_call_let_it_run(sqlite_url: str) -> None:
    model = ScriptedModel([{"tool_calls": [{"name": "dump"}]}, {"text": "summary"}])
    agent = Agent(
        make_spec(limits=Limits(max_total_tokens=2_000_000)),
        model=model,
        tools=[HugeResultTool()],
        trace=sqlite_url,
    )
    result = await agent.run("dump it all")
    assert result.ok and result.state.turns == 2


async def test_the_caller_gets_all_of_a_huge_answer_and_the_trace_a_clipped_copy(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = "y" * FIVE_MB
    agent = Agent(make_spec(), model=ScriptedModel([{"text": answer}]), trace=sqlite_url)
    result = await agent.run("q" * 70_000)
    assert result.output == answer

    run, spans, _ = stored(sqlite_url, result.trace_id)
    marker = f"… [clipped: {FIVE_MB:,} characters in all]"
    assert run.output == "y" * 65_536 + marker
    assert run.input == "q" * 65_536 + "… [clipped: 70,000 characters in all]"
    chat = next(s for s in spans if s.kind == "model")
    output_messages = messages_json(chat.attributes[semconv.GEN_AI_OUTPUT_MESSAGES])
    assert len(output_messages) < 10_000
    assert marker in output_messages

    monkeypatch.setenv("TETHER_MAX_PAYLOAD_CHARS", "2000")
    result = await agent.run("short")
    run, _, _ = stored(sqlite_url, result.trace_id)
    assert result.output == answer and run.output == "y" * 2000 + marker
