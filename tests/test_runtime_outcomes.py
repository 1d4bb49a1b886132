"""How runs end and what their traces say: empty answers, provider failures, cancellation,
unpriced models, the plan span and the OTel GenAI message attributes.

Real parts throughout: ``ScriptedModel``, real tools, traces in a real SQLite file, the CLI
in-process through click.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fakes.models import FailingModel
from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import Agent, ScriptedModel, tool
from tether.cli import cli
from tether.runtime.telemetry import MAX_ATTRIBUTE_CHARS, MAX_INPUT_MESSAGES_CHARS
from tether.store import Store
from tether.trace import semconv, writer_for
from tether.trace.messages import messages_json, stored_messages

looked_up: list[str] = []


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    looked_up.append(key)
    return f"value-of-{key}"


# -- empty answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "  \n"])
async def test_react_empty_reply_is_not_a_final_answer(sqlite_url: str, text: str) -> None:
    agent = Agent(make_spec(), model=ScriptedModel([{"text": text}]), trace=sqlite_url)
    result = await agent.run("hi")
    assert result.outcome == "empty_answer" and result.status == "failed" and not result.ok
    assert "sorry" in result.output.lower()
    assert result.error and "no text" in result.error
    assert result.state.turns == 1  # not re-asked
    run, _, events = trace_of(sqlite_url, result.run_id)
    assert run.status == "failed" and run.outcome == "empty_answer"
    assert any(e.name == semconv.EVENT_RUN_ERROR for e in events)


async def test_plan_execute_solver_asking_for_tools_is_not_a_final_answer() -> None:
    looked_up.clear()
    call = {"name": "lookup", "arguments": {"key": "a"}}
    model = ScriptedModel([{"tool_calls": [call]}, {"tool_calls": [call]}])
    agent = Agent(make_spec(paradigm="plan_execute"), model=model, tools=[lookup], trace=False)
    result = await agent.run("plan it")
    assert result.outcome == "empty_answer" and result.status == "failed"
    assert result.error and "solver replied with tool calls" in result.error
    assert looked_up == ["a"]  # the planned call ran; the solver's call did not
    assert result.output and "sorry" in result.output.lower()


async def test_plan_execute_planner_with_neither_plan_nor_text_is_an_empty_answer() -> None:
    agent = Agent(
        make_spec(paradigm="plan_execute"), model=ScriptedModel([{"text": ""}]), trace=False
    )
    result = await agent.run("plan it")
    assert result.outcome == "empty_answer" and "planner" in (result.error or "")


def test_tether_run_exits_non_zero_on_an_empty_answer(tmp_path: Path) -> None:
    (tmp_path / "script.yaml").write_text('steps: [{text: ""}]\n')
    spec = tmp_path / "agent.yaml"
    spec.write_text("name: e\nmodel: {provider: scripted, name: m, script: script.yaml}\n")
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = CliRunner().invoke(cli, ["--database-url", db, "run", str(spec), "-i", "hi"])
    assert result.exit_code == 1 and "empty_answer" in result.output


# -- provider failures -------------------------------------------------------------------------


async def test_a_permanent_provider_error_is_not_called_temporary() -> None:
    agent = Agent(
        make_spec(),
        model=FailingModel("m", retryable=False, status=401, hint="check the API key"),
        trace=False,
    )
    result = await agent.run("hi")
    assert result.outcome == "error" and result.status == "failed"
    assert "try again" not in result.output.lower() and "not set up correctly" in result.output
    assert result.hint == "check the API key" and result.error == "m: upstream returned 401"


async def test_a_bad_request_is_not_called_a_configuration_problem() -> None:
    agent = Agent(
        make_spec(),
        model=FailingModel("m", retryable=False, status=400, hint="check the API key"),
        trace=False,
    )
    result = await agent.run("hi")
    assert "could not handle this request" in result.output


async def test_fallbacks_failing_is_transient_if_any_failure_was() -> None:
    agent = Agent(
        make_spec(),
        model=FailingModel("a", retryable=False, status=401, hint="check the API key"),
        fallback_models=[FailingModel("b", retryable=True, status=503, hint="check the API key")],
        trace=False,
    )
    result = await agent.run("hi")
    assert "try again shortly" in result.output and "all 2 models failed" in (result.error or "")


# -- cancellation ------------------------------------------------------------------------------


async def test_a_cancelled_run_records_that_it_was_cancelled(sqlite_url: str) -> None:
    started = asyncio.Event()

    @tool
    async def hang() -> str:
        """Never returns."""
        started.set()
        await asyncio.sleep(60)
        return "never"

    model = ScriptedModel([{"tool_calls": [{"name": "hang"}]}, {"text": "done"}])
    agent = Agent(make_spec(), model=model, tools=[hang], trace=sqlite_url)
    task = asyncio.create_task(agent.run("go"))
    await asyncio.wait_for(started.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store = Store(sqlite_url)
    writer_for(sqlite_url).flush()
    [run] = store.list_runs()
    assert run.status == "failed" and run.error and "cancelled" in run.error
    events = store.get_events(run.run_id)
    run_error = next(e for e in events if e.name == semconv.EVENT_RUN_ERROR)
    assert "the run was cancelled before it finished" in run_error.attributes["message"]


# -- cost --------------------------------------------------------------------------------------


async def test_an_unpriced_model_has_an_unknown_cost(sqlite_url: str) -> None:
    model = ScriptedModel([{"text": "hi"}], name="my-own-model")
    agent = Agent(make_spec(), model=model, trace=sqlite_url)
    result = await agent.run("hi")
    assert result.ok and result.cost_usd is None
    assert result.state.unpriced_calls == 1 and result.state.cost_usd == 0.0
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    chat = next(s for s in spans if s.kind == "model")
    assert chat.attributes[semconv.TETHER_COST_UNPRICED] is True
    assert semconv.TETHER_COST_USD not in chat.attributes


async def test_costs_carry_no_float_noise() -> None:
    model = ScriptedModel([{"text": "a fairly long answer " * 7}] * 3, name="gpt-4.1-mini")
    agent = Agent(make_spec(), model=model, trace=False)
    result = await agent.run("a question " * 13)
    assert result.cost_usd is not None and result.cost_usd > 0
    assert result.cost_usd == round(result.cost_usd, 10)


# -- plan span ---------------------------------------------------------------------------------


async def test_plan_span_holds_the_planned_tool_calls(sqlite_url: str) -> None:
    calls = [{"name": "lookup", "arguments": {"key": k}} for k in ("x", "y")]
    model = ScriptedModel([{"tool_calls": calls}, {"text": "solved"}])
    agent = Agent(make_spec(paradigm="plan_execute"), model=model, tools=[lookup], trace=sqlite_url)
    result = await agent.run("plan it")
    assert result.ok
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    agent_span = next(s for s in spans if s.kind == "agent")
    plan = next(s for s in spans if s.kind == "plan")
    assert plan.parent_id == agent_span.span_id
    assert plan.attributes[semconv.TETHER_PLAN_STEPS] == 2
    assert plan.attributes[semconv.TETHER_PLAN_TOOLS] == ["lookup", "lookup"]
    tool_spans = [s for s in spans if s.kind == "tool"]
    assert len(tool_spans) == 2 and all(s.parent_id == plan.span_id for s in tool_spans)
    assert all(s.parent_id == agent_span.span_id for s in spans if s.kind == "model")


# -- OTel GenAI messages -----------------------------------------------------------------------


async def test_chat_spans_record_input_and_output_messages_in_otel_shape(sqlite_url: str) -> None:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "lookup", "arguments": {"key": "a"}}]},
            {"text": "a is {result:lookup}"},
        ]
    )
    agent = Agent(make_spec(), model=model, tools=[lookup], trace=sqlite_url)
    result = await agent.run("what is a?")
    assert result.ok
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    first, second = (s for s in spans if s.kind == "model")

    # Stored structured (a list in the attributes' JSON), not as JSON text inside it.
    assert isinstance(first.attributes[semconv.GEN_AI_INPUT_MESSAGES], list)
    assert isinstance(first.attributes[semconv.GEN_AI_OUTPUT_MESSAGES], list)
    inputs = stored_messages(first.attributes[semconv.GEN_AI_INPUT_MESSAGES])
    assert inputs is not None
    assert [m["role"] for m in inputs] == ["system", "user"]
    assert inputs[1]["parts"] == [{"type": "text", "content": "what is a?"}]
    [out] = first.attributes[semconv.GEN_AI_OUTPUT_MESSAGES]
    assert out["role"] == "assistant" and out["finish_reason"] == "tool_calls"
    [call] = out["parts"]
    assert call["type"] == "tool_call" and call["name"] == "lookup"
    assert call["arguments"] == {"key": "a"} and call["id"]

    inputs = second.attributes[semconv.GEN_AI_INPUT_MESSAGES]
    assert [m["role"] for m in inputs] == ["system", "user", "assistant", "tool"]
    assert inputs[3]["parts"] == [
        {"type": "tool_call_response", "id": call["id"], "response": "value-of-a"}
    ]
    [out] = second.attributes[semconv.GEN_AI_OUTPUT_MESSAGES]
    assert out == {
        "role": "assistant",
        "parts": [{"type": "text", "content": "a is value-of-a"}],
        "finish_reason": "stop",
    }


async def test_input_messages_stay_bounded_and_valid_json(sqlite_url: str) -> None:
    @tool
    def big(n: int) -> str:
        """A large result."""
        return str(n) * (MAX_ATTRIBUTE_CHARS + 500)

    steps: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "big", "arguments": {"n": n}}]} for n in range(1, 7)
    ]
    model = ScriptedModel([*steps, {"text": "done"}])
    agent = Agent(make_spec(), model=model, tools=[big], trace=sqlite_url)
    result = await agent.run("go")
    assert result.ok
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    last = [s for s in spans if s.kind == "model"][-1]
    messages = last.attributes[semconv.GEN_AI_INPUT_MESSAGES]
    assert len(messages_json(messages)) <= MAX_INPUT_MESSAGES_CHARS
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "tool"
    response = messages[-1]["parts"][0]["response"]
    # clipped like tool results, with the full size
    assert response == "6" * MAX_ATTRIBUTE_CHARS + "… [clipped: 8,500 characters in all]"
    omitted = last.attributes[semconv.TETHER_INPUT_MESSAGES_OMITTED]
    assert omitted > 0 and len(messages) + omitted == len(result.state.messages) - 1
