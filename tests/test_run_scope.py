"""The run scope: one run lifecycle for any entry point, typed steps, the caller in the hook
context, and controls answering in place of a call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import (
    Agent,
    Caller,
    Control,
    Decision,
    EntryPoint,
    Harness,
    HookContext,
    Limits,
    ModelRequest,
    ModelResponse,
    Outcome,
    RunKind,
    ScriptedModel,
    TetherError,
    ToolCall,
    ToolResult,
    tool,
)
from tether.store import RunQuery, Store
from tether.trace import semconv


class Cache(Control):
    """Answers every model call from a 'cache'; records what it saw after the fact."""

    name = "cache"

    def __init__(self) -> None:
        self.after: list[str] = []

    async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
        return Decision.respond(ModelResponse(content="cached answer"), "cache hit")

    async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
        self.after.append(response.content)
        return Decision.allow()


class EmptyModel(ScriptedModel):
    """A model that must not be called."""

    def __init__(self) -> None:
        super().__init__([{"text": "unused"}], name="gpt-4.1-mini")
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return await super().complete(request)


async def test_a_control_answers_in_place_of_the_model(sqlite_url: str) -> None:
    model, cache = EmptyModel(), Cache()
    agent = Agent(make_spec(), model=model, controls=[cache], trace=sqlite_url)
    result = await agent.run("hi")
    assert result.ok and result.output == "cached answer"
    assert model.calls == 0  # the model was never called
    assert cache.after == ["cached answer"]  # after_model still checks the answer
    assert result.usage.total_tokens == 0 and result.cost_usd == 0.0
    _, spans, events = trace_of(sqlite_url, result.run_id)
    [chat] = [s for s in spans if s.kind == "model"]
    assert chat.attributes[semconv.TETHER_RESPONDED_BY] == "cache"
    assert chat.attributes[semconv.TETHER_COST_USD] == 0.0
    [decision] = [e for e in events if e.name == semconv.EVENT_CONTROL_DECISION]
    assert decision.attributes[semconv.TETHER_DECISION] == "respond"
    assert decision.span_id == result.run_id  # taken at before_model, on the run's span


async def test_a_control_answers_in_place_of_a_tool(sqlite_url: str) -> None:
    ran: list[str] = []

    @tool
    def lookup(key: str) -> str:
        """Look up a key."""
        ran.append(key)
        return "live"

    class Canned(Control):
        name = "canned"

        async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
            return Decision.respond(ToolResult("canned value"), "known answer")

    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "lookup", "arguments": {"key": "a"}}]},
            {"text": "{result:lookup}"},
        ]
    )
    agent = Agent(make_spec(), model=model, tools=[lookup], controls=[Canned()], trace=sqlite_url)
    result = await agent.run("go")
    assert result.ok and result.output == "canned value"
    assert ran == []  # the tool did not run
    assert result.state.tool_calls == 1
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    [span] = [s for s in spans if s.kind == "tool"]
    assert span.attributes[semconv.TETHER_RESPONDED_BY] == "canned"
    assert span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "canned value"


@pytest.mark.parametrize(
    ("hook", "value"),
    [("on_input", "text"), ("before_model", ToolResult("wrong type")), ("after_model", None)],
)
async def test_respond_where_it_cannot_apply_fails_closed(hook: str, value: Any) -> None:
    class Misplaced(Control):
        name = "misplaced"

    async def decide(self: Control, ctx: HookContext, payload: Any) -> Decision:
        return Decision.respond(value, "misplaced")

    setattr(Misplaced, hook, decide)
    agent = Agent(
        make_spec(), model=ScriptedModel([{"text": "hi"}]), controls=[Misplaced()], trace=False
    )
    result = await agent.run("x")
    assert result.outcome == Outcome.CONTROL_ERROR
    assert "Respond" in (result.stop_reason or "")


async def test_controls_see_the_caller_the_entry_point_the_agent_and_the_usage() -> None:
    seen: list[tuple[Any, ...]] = []

    class Watch(Control):
        name = "watch"

        async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
            seen.append((ctx.caller, ctx.entry_point, ctx.agent, ctx.usage.total_tokens))
            return Decision.allow()

    caller = Caller(project="shop", key_id="k1", end_user="u-9", roles=frozenset({"agent"}))
    model = ScriptedModel([{"tool_calls": [{"name": "nope"}]}, {"text": "done"}])
    spec = make_spec()
    agent = Agent(spec, model=model, controls=[Watch()], trace=False)
    result = await agent.run("hi", caller=caller)
    assert result.ok
    assert [s[:2] for s in seen] == [(caller, EntryPoint.RUNTIME)] * 2
    assert seen[0][2] is not None and seen[0][2].name == spec.name
    assert seen[0][2].version == agent.version
    assert seen[0][3] == 0 and seen[1][3] > 0  # usage so far grows
    assert result.state.caller == caller  # and it is in the checkpointable state


async def test_a_gateway_shaped_request_without_an_agent(sqlite_url: str) -> None:
    """One model request: input, one model call, output. No agent, no tools."""
    harness = Harness(
        models=[ScriptedModel([{"text": "pong"}], name="gpt-4.1-mini")], trace=sqlite_url
    )
    caller = Caller(project="p1", key_id="key-1", end_user="alice")
    scope = harness.open_run(
        "ping", caller=caller, entry_point=EntryPoint.MODEL_GATEWAY, kind=RunKind.MODEL_REQUEST
    )
    async with scope as run:
        assert not (await run.input()).stopped
        reply = await run.model_call(tools=False)
        assert reply.value is not None
        done = await run.output(reply.value.content)
    assert done.value == "pong" and not done.stopped
    result = run.result()
    assert result.ok and result.output == "pong"
    record, spans, _ = trace_of(sqlite_url, result.run_id)
    assert record.status == "completed" and record.output == "pong"
    root = next(s for s in spans if s.span_id == result.run_id)
    assert root.name == "model_request"
    assert root.attributes[semconv.TETHER_ENTRY_POINT] == "model_gateway"
    assert root.attributes[semconv.TETHER_PROJECT] == "p1"
    assert root.attributes[semconv.ENDUSER_ID] == "alice"
    assert root.attributes[semconv.TETHER_CALLER_KEY_ID] == "key-1"
    assert semconv.GEN_AI_AGENT_NAME not in root.attributes


async def test_steps_after_the_end_and_a_scope_left_without_an_ending(sqlite_url: str) -> None:
    class BlockAll(Control):
        name = "block_all"

        async def on_input(self, ctx: HookContext, text: str) -> Decision:
            return Decision.block("no")

    harness = Harness(models=[ScriptedModel([{"text": "x"}])], controls=[BlockAll()], trace=False)
    async with harness.open_run("hi", agent="a") as run:
        first = await run.input()
        later = await run.model_call()  # the run has ended: no call, the same ending
    assert first.stopped and first.outcome == Outcome.BLOCKED
    assert first.decision is not None and first.decision.control == "block_all"
    assert later.stopped and later.outcome == Outcome.BLOCKED

    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=sqlite_url)
    async with harness.open_run("hi", agent="a") as run:
        await run.input()  # ... and the code forgets to give an output
    result = run.result()
    assert result.outcome == Outcome.ERROR and result.status == "failed"
    assert "without ending the run" in (result.error or "")
    record, _, _ = trace_of(sqlite_url, result.run_id)
    assert record.status == "failed" and "without ending the run" in record.error


async def test_a_step_outside_an_open_scope_is_an_error() -> None:
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=False)
    run = harness.open_run("hi")
    with pytest.raises(TetherError, match="not open"):
        await run.input()


async def test_a_crash_inside_the_scope_is_recorded_and_raised(sqlite_url: str) -> None:
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=sqlite_url)
    with pytest.raises(ZeroDivisionError):
        async with harness.open_run("hi", agent="a") as run:
            await run.input()
            1 / 0  # noqa: B018 - the application's own bug
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.status == "failed" and "ZeroDivisionError" in record.error
    [checkpoint] = Store(sqlite_url).get_checkpoints(run.run_id)
    assert checkpoint.reason == "crash"


async def test_the_run_timeout_applies_to_a_hand_written_loop() -> None:
    @tool
    async def slow() -> str:
        """Takes its time."""
        await asyncio.sleep(30)
        return "late"

    harness = Harness(
        models=[ScriptedModel([{"tool_calls": [{"name": "slow"}]}])],
        tools=[slow],
        limits=Limits(timeout_s=0.2),
        trace=False,
    )
    async with harness.open_run("go", agent="a") as run:
        await run.input()
        reply = await run.model_call()
        assert reply.value is not None
        step = await run.tool_calls(reply.value.tool_calls)
    assert step.stopped and step.outcome == Outcome.LIMIT_EXCEEDED
    assert "timeout_s" in (run.result().stop_reason or "")
    assert run.state.pending_tool_calls  # the unanswered call is kept for a resume


def test_the_scope_module_is_where_a_run_lives() -> None:
    """Agent holds no run lifecycle of its own: it opens a scope and orders its steps."""
    source = Path(__file__).parents[1] / "src/tether/runtime/agent.py"
    text = source.read_text()
    for lifecycle in ("run_started", "run_ended", "checkpoint(", "start_span"):
        assert lifecycle not in text


async def test_the_run_record_carries_project_kind_entry_point_and_caller(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_PROJECT", "shop")
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "hi"}]), trace=sqlite_url)
    default = await agent.run("x")
    caller = Caller(project="other", end_user="u1", roles=frozenset({"agent"}))
    explicit = await agent.run("y", caller=caller)
    harness = Harness(models=[ScriptedModel([{"text": "pong"}])], trace=sqlite_url)
    async with harness.open_run("ping", kind=RunKind.MODEL_REQUEST) as run:
        await run.input()
        await run.output("pong")
    record, _, _ = trace_of(sqlite_url, default.run_id)
    assert (record.project, record.kind, record.entry_point) == ("shop", "agent_run", "runtime")
    record, _, _ = trace_of(sqlite_url, explicit.run_id)
    assert record.project == "other"
    assert record.caller == {"project": "other", "end_user": "u1", "roles": ["agent"]}
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.agent_name is None and record.agent_version is None
    assert (record.kind, record.entry_point) == ("model_request", "sdk")
    page = Store(sqlite_url).find_runs(RunQuery(project="shop"))
    assert {r.run_id for r in page.runs} == {default.run_id, run.run_id}  # not "other"


async def test_a_run_without_a_caller_takes_tether_project_as_it_is_when_the_run_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=False)
    seen = []
    for project in ("shop", "books", "shop"):
        monkeypatch.setenv("TETHER_PROJECT", project)
        seen.append(harness.open_run("hi").caller.project)
    monkeypatch.delenv("TETHER_PROJECT")
    seen.append(harness.open_run("hi").caller.project)
    assert seen == ["shop", "books", "shop", "default"]


def test_a_bad_project_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_PROJECT", "bad\x1bname")
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=False)
    with pytest.raises(TetherError, match="TETHER_PROJECT"):
        harness.open_run("hi")


@pytest.mark.parametrize("name", ["Acme", "my project", "-x", "x" * 65, "a/b"])
def test_a_project_name_no_project_may_have_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Runs were written under any printable TETHER_PROJECT (``Acme``), a project that
    ``tether projects create`` refuses: no key could be made for it and no admin could open
    it, so ``tether serve`` never showed them."""
    from tether.server.roles import check_project_name

    with pytest.raises(TetherError):
        check_project_name(name)
    monkeypatch.setenv("TETHER_PROJECT", name)
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=False)
    with pytest.raises(TetherError, match="TETHER_PROJECT must name a project"):
        harness.open_run("hi")
    monkeypatch.setenv("TETHER_PROJECT", "acme-2.eu_1")
    assert harness.open_run("hi").caller.project == check_project_name("acme-2.eu_1")
