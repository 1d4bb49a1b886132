"""The agent loop end to end: real ScriptedModel, real tools, traces in a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fakes.models import FailingModel
from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import (
    Agent,
    Limits,
    RunState,
    ScriptedModel,
    TetherError,
    tool,
)
from tether.providers import ModelRequest, ModelResponse
from tether.trace import semconv, writer_for

calls: list[dict[str, Any]] = []


@tool
async def lookup(key: str) -> str:
    """Look a key up."""
    calls.append({"key": key})
    return f"value-of-{key}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"boom: {reason}")


class SlowModel(FailingModel):
    async def complete(self, request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


async def test_react_answers_with_parallel_tool_calls_and_full_trace(sqlite_url: str) -> None:
    model = ScriptedModel(
        [
            {
                "tool_calls": [
                    {"name": "lookup", "arguments": {"key": "a"}},
                    {"name": "add", "arguments": {"a": 2, "b": "3"}},
                ]
            },
            {"text": "a={result:lookup} sum={result:add}"},
        ],
        name="gpt-4.1-mini",
    )
    agent = Agent(make_spec(), model=model, tools=[lookup, add], trace=sqlite_url)
    result = await agent.run("go")

    assert result.ok and result.status == "completed"
    assert result.output == "a=value-of-a sum=5"
    assert result.state.turns == 2 and result.state.tool_calls == 2
    assert result.usage.input_tokens > 0 and result.cost_usd > 0
    roles = [m.role for m in result.state.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]

    run, spans, _ = trace_of(sqlite_url, result.run_id)
    assert run.status == "completed" and run.outcome == "final_answer"
    assert run.tool_calls == 2 and run.turns == 2
    assert run.cost_usd == pytest.approx(result.cost_usd)
    kinds = sorted(s.kind for s in spans)
    assert kinds == ["agent", "model", "model", "tool", "tool"]
    agent_span = next(s for s in spans if s.kind == "agent")
    assert all(s.parent_id == agent_span.span_id for s in spans if s is not agent_span)
    model_span = next(s for s in spans if s.kind == "model")
    a = model_span.attributes
    assert a[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert a[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4.1-mini"
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert a[semconv.TETHER_PRICING_VERSION]
    # Replaced OTel names are never emitted.
    for s in spans:
        assert "gen_ai.system" not in s.attributes
        assert "gen_ai.usage.prompt_tokens" not in s.attributes
    tool_span = next(s for s in spans if s.name == "execute_tool add")
    assert tool_span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "5"


async def test_tool_errors_go_back_to_the_model(sqlite_url: str) -> None:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "explode", "arguments": {"reason": "disk"}}]},
            {"tool_calls": [{"name": "add", "arguments": {"a": "x", "b": 1}}]},
            {"tool_calls": [{"name": "nope", "arguments": {}}]},
            {"text": "recovered"},
        ]
    )
    agent = Agent(make_spec(), model=model, tools=[explode, add], trace=sqlite_url)
    result = await agent.run("go")

    assert result.ok and result.output == "recovered"
    tool_msgs = [m.content for m in result.state.messages if m.role == "tool"]
    assert "RuntimeError: boom: disk" in tool_msgs[0]
    assert "invalid arguments for tool 'add'" in tool_msgs[1] and "a:" in tool_msgs[1]
    assert "unknown tool 'nope'" in tool_msgs[2] and "add, explode" in tool_msgs[2]
    _, spans, events = trace_of(sqlite_url, result.run_id)
    assert sum(s.status == "error" for s in spans if s.kind == "tool") == 3
    assert sum(e.name == semconv.EVENT_TOOL_ERROR for e in events) == 3


async def test_loop_breaker_stops_third_identical_call_with_apology(sqlite_url: str) -> None:
    calls.clear()
    model = ScriptedModel([{"tool_calls": [{"name": "lookup", "arguments": {"key": "same"}}]}])
    agent = Agent(make_spec(), model=model, tools=[lookup], trace=sqlite_url)
    result = await agent.run("loop")

    assert result.outcome == "loop_detected" and result.status == "completed"
    assert "sorry" in result.output.lower()
    assert len(calls) == 2  # the third identical call never ran
    _, _, events = trace_of(sqlite_url, result.run_id)
    decisions = [e for e in events if e.name == semconv.EVENT_CONTROL_DECISION]
    assert [d.attributes[semconv.TETHER_CONTROL_NAME] for d in decisions] == ["loop_breaker"]
    assert decisions[0].attributes[semconv.TETHER_DECISION] == "block"


async def test_repeated_call_with_new_information_is_not_a_loop() -> None:
    counter = {"n": 0}

    @tool
    def poll(job: str) -> str:
        """Poll a job."""
        counter["n"] += 1
        return f"progress {counter['n']}"

    steps: list[dict[str, Any]] = [{"tool_calls": [{"name": "poll", "arguments": {"job": "j"}}]}]
    model = ScriptedModel([*steps * 4, {"text": "done"}])
    agent = Agent(make_spec(), model=model, tools=[poll], trace=False)
    result = await agent.run("poll it")
    assert result.ok and counter["n"] == 4


@pytest.mark.parametrize(
    ("limits", "limit_name"),
    [
        ({"max_turns": 2}, "max_turns"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        # Enough for the first call (its input is estimated before it is made), not for ten.
        ({"max_total_tokens": 150}, "max_total_tokens"),
        ({"max_cost_usd": 0.0006}, "max_cost_usd"),
    ],
)
async def test_limits_end_the_run_and_keep_partial_results(
    sqlite_url: str, limits: dict[str, Any], limit_name: str
) -> None:
    keys = iter(range(100))
    steps = [
        {"tool_calls": [{"name": "lookup", "arguments": {"key": f"k{next(keys)}"}}]}
        for _ in range(10)
    ]
    model = ScriptedModel(steps, name="gpt-4.1")
    agent = Agent(make_spec(limits=Limits(**limits)), model=model, tools=[lookup], trace=sqlite_url)
    result = await agent.run("a long task " * 10)

    assert result.outcome == "limit_exceeded"
    assert limit_name in result.output and limit_name in (result.stop_reason or "")
    assert result.state.tool_calls >= 1  # partial results are kept
    assert any(m.role == "tool" for m in result.state.messages)
    run, _, events = trace_of(sqlite_url, result.run_id)
    assert run.outcome == "limit_exceeded"
    assert any(e.attributes.get(semconv.TETHER_CONTROL_NAME) == "limits" for e in events)


async def test_timeout_limit_cancels_a_hanging_model(sqlite_url: str) -> None:
    agent = Agent(make_spec(limits=Limits(timeout_s=0.2)), model=SlowModel(), trace=sqlite_url)
    result = await agent.run("hang")
    assert result.outcome == "limit_exceeded" and "timeout_s" in result.output
    run, spans, _ = trace_of(sqlite_url, result.run_id)
    assert run.outcome == "limit_exceeded"
    assert any(s.kind == "model" and s.status == "error" for s in spans)


async def test_tool_timeout_becomes_error_result() -> None:
    @tool(timeout_s=0.05)
    async def slow() -> str:
        """Sleeps."""
        await asyncio.sleep(10)
        return "late"

    model = ScriptedModel([{"tool_calls": [{"name": "slow"}]}, {"text": "{result:slow}"}])
    agent = Agent(make_spec(), model=model, tools=[slow], trace=False)
    result = await agent.run("x")
    assert result.ok and "timed out after 0.05s" in result.output


async def test_fallback_model_answers_when_primary_fails(sqlite_url: str) -> None:
    primary = FailingModel("primary")
    backup = ScriptedModel([{"text": "from backup"}], name="backup")
    agent = Agent(make_spec(), model=primary, fallback_models=[backup], trace=sqlite_url)
    result = await agent.run("hi")
    assert result.ok and result.output == "from backup" and primary.calls == 1
    _, spans, events = trace_of(sqlite_url, result.run_id)
    model_spans = [s for s in spans if s.kind == "model"]
    assert [s.status for s in model_spans] == ["error", "ok"]
    assert any(e.name == semconv.EVENT_MODEL_FALLBACK for e in events)


async def test_all_models_failing_is_a_clean_error_outcome(sqlite_url: str) -> None:
    agent = Agent(
        make_spec(), model=FailingModel("a"), fallback_models=[FailingModel("b")], trace=sqlite_url
    )
    result = await agent.run("hi")
    assert result.outcome == "error" and result.status == "failed"
    assert "all 2 models failed" in (result.state.error or "")
    assert "try again" in result.output
    run, _, _ = trace_of(sqlite_url, result.run_id)
    assert run.status == "failed" and "503" in (run.error or "")


async def test_plan_execute_plans_runs_then_solves_without_tools(sqlite_url: str) -> None:
    seen_tools: list[int] = []

    class Recording(ScriptedModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            seen_tools.append(len(request.tools))
            return await super().complete(request)

    model = Recording(
        [
            {
                "tool_calls": [
                    {"name": "lookup", "arguments": {"key": "x"}},
                    {"name": "lookup", "arguments": {"key": "y"}},
                ]
            },
            {"text": "solved with {result:lookup}"},
        ]
    )
    agent = Agent(make_spec(paradigm="plan_execute"), model=model, tools=[lookup], trace=sqlite_url)
    result = await agent.run("plan it")
    assert result.ok and result.output.startswith("solved with value-of-")
    assert result.state.plan is not None and len(result.state.plan) == 2
    assert seen_tools == [1, 0]  # the solver gets no tools
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    assert any(s.kind == "plan" for s in spans)


def test_run_sync_and_from_yaml(tmp_path: Any, sqlite_url: str) -> None:
    (tmp_path / "s.yaml").write_text("steps:\n  - text: hello {input}\n")
    (tmp_path / "a.yaml").write_text(
        "name: y\nmodel: {provider: scripted, name: m, script: s.yaml}\n"
    )
    result = Agent.from_yaml(tmp_path / "a.yaml", trace=sqlite_url).run_sync("bob")
    assert result.output == "hello bob"


async def test_run_sync_inside_event_loop_is_a_clear_error() -> None:
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "x"}]), trace=False)
    with pytest.raises(Exception, match="running event loop"):
        agent.run_sync("x")


async def test_parallel_tool_calls_overlap() -> None:
    barrier = asyncio.Barrier(3)

    @tool
    async def meet(n: int) -> str:
        """Waits until all three calls are in flight at once."""
        async with asyncio.timeout(5):
            await barrier.wait()
        return f"met {n}"

    calls_ = [{"name": "meet", "arguments": {"n": i}} for i in range(3)]
    model = ScriptedModel([{"tool_calls": calls_}, {"text": "ok"}])
    agent = Agent(make_spec(), model=model, tools=[meet], trace=False)
    result = await agent.run("x")
    tool_msgs = [m.content for m in result.state.messages if m.role == "tool"]
    assert result.ok and tool_msgs == ["met 0", "met 1", "met 2"]  # in call order


async def test_loop_breaker_catches_identical_parallel_calls() -> None:
    calls.clear()
    same = {"name": "lookup", "arguments": {"key": "dup"}}
    model = ScriptedModel([{"tool_calls": [same] * 8}, {"text": "never"}])
    agent = Agent(make_spec(), model=model, tools=[lookup], trace=False)
    result = await agent.run("x")
    assert result.outcome == "loop_detected"
    assert len(calls) == 2  # the first two ran; the third identical call stopped the run
    assert len(result.state.pending_tool_calls) == 6


async def test_loop_breaker_looks_at_the_most_recent_results() -> None:
    answers = iter(["queued", "stuck", "stuck", "stuck", "stuck"])

    @tool
    def status(job: str) -> str:
        """Job status."""
        return next(answers)

    step = {"tool_calls": [{"name": "status", "arguments": {"job": "j"}}]}
    model = ScriptedModel([step] * 10 + [{"text": "done"}])
    agent = Agent(make_spec(), model=model, tools=[status], trace=False)
    result = await agent.run("x")
    # queued, stuck, stuck: the fourth call would learn nothing new.
    assert result.outcome == "loop_detected" and result.state.tool_calls == 3


async def test_trace_id_must_be_a_w3c_trace_id() -> None:
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "x"}]), trace=False)
    with pytest.raises(TetherError, match="32 lowercase hex"):
        await agent.run("x", trace_id="my-run")
    result = await agent.run("x", trace_id="ab" * 16)
    assert result.trace_id == "ab" * 16


async def test_a_closed_writer_never_breaks_a_run(sqlite_url: str) -> None:
    writer = writer_for(sqlite_url)
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "x"}]), trace=writer)
    writer.close()
    result = await agent.run("x")  # traces are dropped (and counted), the run goes on
    assert result.ok and writer.dropped > 0
    assert writer_for(sqlite_url) is not writer  # a new writer replaces the closed one


async def test_overlong_names_from_the_model_do_not_lose_the_span(store_url: str) -> None:
    long_name = "t" * 400
    model = ScriptedModel([{"tool_calls": [{"name": long_name}]}, {"text": "done"}])
    agent = Agent(make_spec(), model=model, trace=store_url)
    result = await agent.run("x")
    assert result.ok
    run, spans, _ = trace_of(store_url, result.run_id)
    assert run.status == "completed"
    tool_span = next(s for s in spans if s.kind == "tool")
    assert tool_span.name.startswith("execute_tool ttt") and len(tool_span.name) == 256


async def test_run_timeout_mid_batch_settles_every_call(sqlite_url: str) -> None:
    @tool
    async def quick() -> str:
        """Returns at once."""
        return "quick result"

    @tool(timeout_s=60)
    async def stuck() -> str:
        """Never returns in time."""
        await asyncio.sleep(30)
        return "late"

    batch = [{"name": "quick"}, {"name": "stuck"}, {"name": "stuck"}]
    model = ScriptedModel([{"tool_calls": batch}, {"text": "never"}])
    spec = make_spec(limits=Limits(timeout_s=0.3))
    agent = Agent(spec, model=model, tools=[quick, stuck], trace=sqlite_url)
    result = await agent.run("x")

    assert result.outcome == "limit_exceeded" and "timeout_s" in (result.stop_reason or "")
    tool_msgs = [m for m in result.state.messages if m.role == "tool"]
    assert [m.content for m in tool_msgs] == ["quick result"]  # the finished call keeps its answer
    asked = [c.id for c in result.state.messages[-2].tool_calls]
    assert [c.id for c in result.state.pending_tool_calls] == asked[1:]
    assert all(r.result_hash or r.is_error for r in result.state.tool_history)
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    tool_spans = sorted((s.name, s.status) for s in spans if s.kind == "tool")
    assert tool_spans == [
        ("execute_tool quick", "ok"),
        ("execute_tool stuck", "error"),
        ("execute_tool stuck", "error"),
    ]


async def test_a_models_own_timeout_is_not_the_run_limit() -> None:
    class SelfTimingModel(FailingModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
            raise AssertionError("unreachable")

    agent = Agent(make_spec(), model=SelfTimingModel(), trace=False)
    with pytest.raises(TimeoutError):  # a bug in the integration, recorded as a crash
        await agent.run("x")


async def test_cost_falls_back_to_the_requested_model_price() -> None:
    class FineTuned(ScriptedModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            response = await super().complete(request)
            return response.model_copy(update={"model": "ft:gpt-4.1-mini:acme:2026"})

    spec = make_spec(limits=Limits(max_cost_usd=5e-5))  # the first call fits, the third not
    keys = ({"tool_calls": [{"name": "lookup", "arguments": {"key": f"k{i}"}}]} for i in range(9))
    agent = Agent(
        spec, model=FineTuned(list(keys), name="gpt-4.1-mini"), tools=[lookup], trace=False
    )
    result = await agent.run("x")
    assert result.cost_usd > 0 and result.outcome == "limit_exceeded"
    assert "max_cost_usd" in (result.stop_reason or "")


async def test_lone_surrogates_and_nul_bytes_do_not_lose_the_trace(store_url: str) -> None:
    @tool
    def weird() -> str:
        """Returns text with a lone surrogate."""
        return "tool says \udc00"

    model = ScriptedModel(
        [{"tool_calls": [{"name": "weird"}, {"name": "bad\x00name"}]}, {"text": "{input} ok"}]
    )
    agent = Agent(make_spec(), model=model, tools=[weird], trace=store_url)
    result = await agent.run("in \udc00 x\x00y")
    assert result.ok and "\ufffd" in result.output
    run, spans, _ = trace_of(store_url, result.run_id)
    assert run.status == "completed" and run.input == "in \ufffd x\ufffdy"
    assert len([s for s in spans if s.kind == "tool"]) == 2
    # What is read back can be printed anywhere: no lone surrogate comes back from the store.
    for span in spans:
        json.dumps(span.attributes, ensure_ascii=False).encode("utf-8")
    assert RunState.from_json(result.state.to_json()) == result.state


def test_sync_tool_raising_system_exit_fails_the_call_not_the_process() -> None:
    @tool
    def quitter() -> str:
        """Calls sys.exit."""
        raise SystemExit(3)

    model = ScriptedModel([{"tool_calls": [{"name": "quitter"}]}, {"text": "{result:quitter}"}])
    result = Agent(make_spec(), model=model, tools=[quitter], trace=False).run_sync("x")
    assert result.ok and "the tool raised SystemExit(3)" in result.output
