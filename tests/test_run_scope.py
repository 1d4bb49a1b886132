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
    Message,
    ModelRequest,
    ModelResponse,
    Outcome,
    RunKind,
    ScriptedModel,
    TetherError,
    ToolCall,
    ToolResult,
    Usage,
    tool,
)
from tether.store import RunQuery, Store
from tether.trace import semconv, writer_for


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


async def test_a_scope_entered_twice_keeps_its_run_and_says_why(sqlite_url: str) -> None:
    """Entering a scope again (nested, or after it closed) wrote the run's record a second
    time, which the store refused, and restarted its clock: the run's end then matched no
    stored run, and the run stayed ``running`` in the store for ever."""
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=sqlite_url)
    scope = harness.open_run("hi", agent="a")
    with pytest.raises(TetherError, match="entered already"):
        async with scope as run:
            await run.input()
            async with scope:
                pass
    record, _, _ = trace_of(sqlite_url, scope.run_id)
    assert record.status == "failed" and "entered already" in record.error
    with pytest.raises(TetherError, match="entered already"):
        async with scope:
            pass
    [stored] = Store(sqlite_url).find_runs(RunQuery()).runs
    assert stored.run_id == scope.run_id and stored.status == "failed"


async def test_end_after_the_run_ended_keeps_the_first_ending(sqlite_url: str) -> None:
    """A hand-written loop that calls ``end()`` after a control blocked the answer turned the
    block into a final answer in the record, with the blocked text stored as the output."""

    class NoSecrets(Control):
        name = "no_secrets"

        async def on_output(self, ctx: HookContext, text: str) -> Decision:
            return Decision.block("a secret") if "s3cret" in text else Decision.allow()

    harness = Harness(
        models=[ScriptedModel([{"text": "the s3cret"}])], controls=[NoSecrets()], trace=sqlite_url
    )
    async with harness.open_run("hi", agent="a") as run:
        await run.input()
        reply = await run.model_call()
        assert reply.value is not None
        answer = await run.output(reply.value.content)
        run.end(Outcome.FINAL_ANSWER, output=reply.value.content)  # the loop's mistake
    assert answer.stopped and run.result().outcome == Outcome.BLOCKED
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.outcome == "blocked" and "s3cret" not in (record.output or "")


class _Pause(Control):
    """Sends every tool call to a person (the run pauses, escalated)."""

    name = "pause"

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        return Decision.escalate("a person decides")


async def test_a_model_call_after_the_end_leaves_the_conversation_as_it_was() -> None:
    """A request given to a model call after the run had ended (a loop that does not check
    the step before) still became the run's conversation, and so the paused run's checkpoint
    that a resume goes on from."""

    model = ScriptedModel([{"tool_calls": [{"name": "_lookup", "arguments": {"key": "a"}}]}])
    harness = Harness(models=[model], tools=[_lookup], controls=[_Pause()], trace=False)
    async with harness.open_run("go", agent="a") as run:
        await run.input()
        reply = await run.model_call()
        assert reply.value is not None
        assert (await run.tool_calls(reply.value.tool_calls)).stopped
        before = list(run.state.messages)
        late = await run.model_call(ModelRequest(messages=[Message(role="user", content="x")]))
    assert late.stopped and late.outcome == Outcome.ESCALATED
    assert run.state.messages == before


async def test_a_step_the_caller_cancels_and_goes_on_from_leaves_no_cancellation(
    sqlite_url: str,
) -> None:
    """A loop's own ``asyncio.wait_for`` around a step cancels it; the loop catches the
    timeout, calls again and answers. The run was recorded completed with the answer and
    with the error "the run was cancelled before it finished" (stop reason "cancelled")."""

    class SlowOnce(ScriptedModel):
        calls = 0

        async def complete(self, request: ModelRequest) -> ModelResponse:
            SlowOnce.calls += 1
            if SlowOnce.calls == 1:
                await asyncio.sleep(30)
            return ModelResponse(content="answer")

    harness = Harness(models=[SlowOnce([{"text": "x"}])], trace=sqlite_url)
    async with harness.open_run("hi", agent="a") as run:
        await run.input()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run.model_call(), 0.05)
        reply = await run.model_call()
        assert reply.value is not None
        await run.output(reply.value.content)
    result = run.result()
    assert result.ok and result.error is None and result.stop_reason is None
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.status == "completed" and record.error is None
    # A cancellation that leaves the scope is still the run's ending, in its words.
    harness = Harness(models=[SlowOnce([{"text": "x"}])], trace=sqlite_url)
    SlowOnce.calls = 0
    task = asyncio.ensure_future(_answer_once(harness))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    writer_for(sqlite_url).flush()
    [cancelled] = [r for r in Store(sqlite_url).find_runs(RunQuery()).runs if r.status == "failed"]
    assert cancelled.error == "the run was cancelled before it finished"
    assert cancelled.attributes["stop_reason"] == "cancelled"


async def _answer_once(harness: Harness) -> None:
    async with harness.open_run("hi", agent="a") as run:
        await run.input()
        await run.model_call()


async def test_a_control_trimming_a_given_request_s_tools_leaves_the_harness_s_alone() -> None:
    """A loop passes ``tools=harness.tool_defs`` (as the README and the example do): a
    control removing a tool from that request in place removed it from the harness, for every
    later call and run."""

    class NoRefundTool(Control):
        name = "no_refund_tool"

        async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
            request.tools[:] = [t for t in request.tools if t.name != "refund"]
            return Decision.allow()

    def refund(order: str) -> str:
        """Refund an order."""
        return "refunded"

    harness = Harness(
        models=[ScriptedModel([{"text": "x"}])],
        tools=[_lookup, refund],
        controls=[NoRefundTool()],
        trace=False,
    )
    async with harness.open_run("hi") as run:
        await run.input()
        request = ModelRequest(messages=list(run.state.messages), tools=harness.tool_defs)
        assert (await run.model_call(request)).value is not None
    assert [t.name for t in harness.tool_defs] == ["_lookup", "refund"]


@pytest.mark.parametrize("trace_id", ["0" * 32, 5, "A" * 32, "a" * 31])
def test_a_trace_id_that_is_no_w3c_trace_id_is_refused(trace_id: Any) -> None:
    """An all-zero id is invalid in W3C and OpenTelemetry (an exporter drops its spans); one
    that is not text failed inside the regex (a TypeError)."""
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=False)
    with pytest.raises(TetherError, match="trace_id must"):
        harness.open_run("hi", trace_id=trace_id)


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


async def test_a_crash_after_the_run_ended_keeps_its_answer(sqlite_url: str) -> None:
    """The answer passed the output step and went back to the code; the code then failed (a
    bug in its own post-processing). The run had answered: it stays a final answer, with its
    output, and the crash is an error event on it, not a run turned into an error that lost
    the answer's outcome."""
    harness = Harness(models=[ScriptedModel([{"text": "x"}])], trace=sqlite_url)
    with pytest.raises(KeyError):
        async with harness.open_run("hi", agent="a") as run:
            await run.input()
            assert (await run.output("the answer")).value == "the answer"
            {}["missing"]  # the application's own bug, after the answer
    record, _, events = trace_of(sqlite_url, run.run_id)
    assert record.status == "completed" and record.outcome == "final_answer"
    assert record.output == "the answer" and record.error is None
    (crash,) = [e for e in events if e.name == semconv.EVENT_RUN_ERROR]
    assert "KeyError" in crash.attributes["message"]
    assert "after the run ended" in crash.attributes["message"]
    assert Store(sqlite_url).get_checkpoints(run.run_id) == []  # nothing to resume


async def test_a_crash_after_the_run_paused_keeps_it_paused(sqlite_url: str) -> None:
    """A run paused for a person's approval, then the loop's own code failed: the run was
    turned into a crash (failed, a crash checkpoint), and the approval had nothing to resume."""

    model = ScriptedModel([{"tool_calls": [{"name": "_lookup", "arguments": {"key": "a"}}]}])
    harness = Harness(models=[model], tools=[_lookup], controls=[_Pause()], trace=sqlite_url)
    with pytest.raises(RuntimeError):
        async with harness.open_run("go", agent="a") as run:
            await run.input()
            reply = await run.model_call()
            assert reply.value is not None
            assert (await run.tool_calls(reply.value.tool_calls)).stopped
            raise RuntimeError("the loop's own bug")
    record, _, events = trace_of(sqlite_url, run.run_id)
    assert record.status == "paused" and record.outcome == "escalated"
    assert [e.name for e in events].count(semconv.EVENT_RUN_ERROR) == 1
    [checkpoint] = Store(sqlite_url).get_checkpoints(run.run_id)
    assert checkpoint.reason == "escalated" and "pending_tool_calls" in checkpoint.state_json


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


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"project": None}, "Caller.project"),  # crashed the run's start (AttributeError)
        ({"project": "bad\x1bname"}, "Caller.project"),  # TETHER_PROJECT is refused so
        ({"project": "p" * 101}, "Caller.project"),
        ({"project": "Acme"}, r"Caller.project must be a project name \(1 to 64"),  # as serve's
        ({"project": "my project"}, "lower-case letters"),  # projects: else never opened there
        ({"key_id": 5}, "Caller.key_id"),
        ({"roles": "admin"}, "Caller.roles"),  # five one-letter roles to the policies
        ({"scopes": None}, "Caller.scopes"),
        ({"scopes": [1]}, "Caller.scopes"),
    ],
)
def test_a_caller_that_is_no_caller_is_refused_when_made(given: dict[str, Any], said: str) -> None:
    with pytest.raises(TetherError, match=said):
        Caller(**given)


def test_a_caller_takes_any_iterable_of_names() -> None:
    caller = Caller(roles=["admin", "admin"], scopes=("orders:read",))  # type: ignore[arg-type]
    assert caller.roles == frozenset({"admin"}) and caller.scopes == frozenset({"orders:read"})
    assert hash(caller) == hash(
        Caller(roles=frozenset({"admin"}), scopes=frozenset({"orders:read"}))
    )


def _lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


@pytest.mark.parametrize(
    ("hook", "value", "said"),
    [
        ("before_model", ModelResponse(content=None), "content is a NoneType"),  # type: ignore[arg-type]
        ("before_model", ModelResponse(content="a", usage=None), "usage is a NoneType"),  # type: ignore[arg-type]
        ("before_model", ModelResponse(content="a", usage=Usage(input_tokens=-5)), "input_tokens"),
        ("before_model", ModelResponse(content="a", usage=Usage(output_tokens=10**20)), "output"),
        ("before_model", ModelResponse(tool_calls=["lookup"]), "tool_calls"),  # type: ignore[list-item]
        ("before_tool", ToolResult(None), "content is a NoneType"),  # type: ignore[arg-type]
        ("after_model", ModelResponse(content=5), "content is a int"),  # type: ignore[arg-type]
        ("after_tool", ToolResult("x", is_error="yes"), "is_error"),  # type: ignore[arg-type]
    ],
)
async def test_a_malformed_answer_from_a_control_fails_the_control(
    sqlite_url: str, hook: str, value: Any, said: str
) -> None:
    """``ModelResponse`` and ``ToolResult`` check nothing when made: a control's Respond (or
    Modify) with content that is not text crashed the run with an AttributeError out of the
    step, and a token count past the store's 64-bit columns had the run's end refused by the
    store (the run stayed ``running`` for ever). The control fails closed instead."""

    class Odd(Control):
        name = "odd"

    async def decide(self: Control, ctx: HookContext, payload: Any) -> Decision:
        if hook.startswith("before"):
            return Decision.respond(value, "odd")
        return Decision.modify(value, "odd")

    setattr(Odd, hook, decide)
    model = ScriptedModel(
        [{"tool_calls": [{"name": "_lookup", "arguments": {"key": "a"}}]}, {"text": "done"}]
    )
    harness = Harness(models=[model], tools=[_lookup], controls=[Odd()], trace=sqlite_url)
    async with harness.open_run("go", agent="a") as run:
        await run.input()
        reply = await run.model_call()
        if reply.value is not None:
            await run.tool_calls(reply.value.tool_calls)
    result = run.result()
    assert result.outcome == Outcome.CONTROL_ERROR, result.stop_reason
    assert said in (result.stop_reason or "")
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.status == "failed" and record.outcome == "control_error"


@pytest.mark.parametrize(
    "decision",
    [
        Decision.block(None),  # type: ignore[arg-type]
        Decision.block("no", message=5),  # type: ignore[arg-type]
        Decision.respond(ModelResponse(content="hi"), None),  # type: ignore[arg-type]
    ],
)
async def test_a_decision_whose_reason_is_not_text_fails_the_control(
    sqlite_url: str, decision: Decision
) -> None:
    """With a masking guard in the run, a reason that is not text crashed the run past the
    step (a TypeError out of ``model_call``) instead of failing the control closed."""

    class Odd(Control):
        name = "odd"

        async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
            return decision

    spec = make_spec(guards={"rules": [{"guard": "pii", "channels": ["output"], "action": "mask"}]})
    agent = Agent(spec, model=ScriptedModel([{"text": "x"}]), controls=[Odd()], trace=sqlite_url)
    result = await agent.run("hi")
    assert result.outcome == Outcome.CONTROL_ERROR
    assert "must be text" in (result.stop_reason or "")


async def test_a_control_answer_with_lone_surrogates_is_cleaned_as_a_tool_result_is(
    sqlite_url: str,
) -> None:
    class Canned(Control):
        name = "canned"

        async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
            return Decision.respond(ToolResult("file-\udc80.txt"), "known")

    model = ScriptedModel(
        [{"tool_calls": [{"name": "_lookup", "arguments": {"key": "a"}}]}, {"text": "done"}]
    )
    agent = Agent(make_spec(), model=model, tools=[_lookup], controls=[Canned()], trace=sqlite_url)
    result = await agent.run("go")
    assert result.ok, result.error
    [tool_message] = [m for m in result.state.messages if m.role == "tool"]
    assert tool_message.content == "file-\ufffd.txt"


class _OddModel(ScriptedModel):
    """A model integration whose ``complete`` builds a reply that cannot be used."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(content="hi", usage=Usage(input_tokens=2**70))


async def test_a_model_integration_s_unusable_reply_is_the_model_failing(sqlite_url: str) -> None:
    """A ``Model`` whose reply cannot be used is a failed model: the chain falls back to the
    next, and the run's end is stored (it was refused by the store: 2**70 tokens)."""
    fallback = ScriptedModel([{"text": "from the fallback"}], name="gpt-4.1-mini")
    harness = Harness(models=[_OddModel([{"text": "x"}]), fallback], trace=sqlite_url)
    async with harness.open_run("go", agent="a") as run:
        await run.input()
        reply = await run.model_call()
        assert reply.value is not None
        await run.output(reply.value.content)
    assert run.result().output == "from the fallback"
    harness = Harness(models=[_OddModel([{"text": "x"}])], trace=sqlite_url)
    async with harness.open_run("go", agent="a") as run:
        await run.input()
        assert (await run.model_call()).stopped
    result = run.result()
    assert result.outcome == Outcome.ERROR and "cannot use" in (result.error or "")
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.status == "failed" and "input_tokens" in record.error


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
