"""The agent loop: one run, top to bottom, over an explicit ``RunState``.

ReAct: call the model; run the tool calls it asks for (in parallel); repeat until it answers.
Plan-then-execute: one planner call returns the plan as tool calls; they run (their spans sit
under a ``plan`` span); a solver call (with no tools) answers. Every step passes the pipeline
and leaves a span.

An answer must have text. A reply with neither text nor tool calls (ReAct, or a planner that
plans nothing), or a solver reply without text (a solver that asks for tools instead: they are
never run), ends the run with outcome ``empty_answer`` (status ``failed``) and an apology; it
is not re-asked, since the same conversation tends to get the same reply.

A provider failure ends the run with outcome ``error``. The user is told to try again only when
the failure is transient (``ProviderError.retryable``: timeouts, 429, 5xx, connection errors);
a rejected key, an unknown model or a reply that is not a completion needs the operator, and
``RunState.hint`` says what to check.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tether.controls import Decision, Hook, HookContext, Pipeline
from tether.controls.limits import limit_message
from tether.core import (
    Outcome,
    ProviderError,
    TetherError,
    content_hash,
    describe_exception,
    monotonic,
    scrub_surrogates,
)
from tether.providers import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolDefinition,
)
from tether.providers.types import describe_invalid_arguments
from tether.runtime.state import RunState, ToolRecord
from tether.runtime.telemetry import (
    MessageCache,
    arguments_text,
    clip,
    input_messages,
    output_messages,
)
from tether.spec import Limits, LoopBreakerConfig
from tether.store import SpanRecord
from tether.tools import Tool, ToolResult
from tether.trace import PricingTable, semconv
from tether.trace.pricing import round_cost

if TYPE_CHECKING:
    from tether.trace import RunRecorder

PLANNER_NOTE = (
    "Plan first: reply with every tool call needed to answer, all at once. You will then get "
    "their results and write the answer."
)
EMPTY_ANSWER_MESSAGE = (
    "I'm sorry, I couldn't come up with an answer this time. Please try again, or rephrase "
    "your request."
)
P = TypeVar("P")


def _scrubbed(response: ModelResponse) -> ModelResponse:
    """A provider's reply without lone surrogates (they cannot be stored or checkpointed)."""
    content = scrub_surrogates(response.content)
    calls = response.tool_calls
    if calls:
        raw = json.dumps([c.arguments for c in calls], ensure_ascii=False)
        if scrub_surrogates(raw) is not raw:
            calls = [
                c.model_copy(
                    update={
                        "arguments": json.loads(
                            scrub_surrogates(json.dumps(c.arguments, ensure_ascii=False))
                        )
                    }
                )
                for c in calls
            ]
    if content is response.content and calls is response.tool_calls:
        return response
    return response.model_copy(update={"content": content, "tool_calls": calls})


@dataclass(slots=True)
class RunContext:
    """The fixed parts of one run: what the loop works with besides the state."""

    models: list[Model]
    tools: dict[str, Tool]
    tool_defs: list[ToolDefinition]
    settings: ModelSettings
    limits: Limits
    loop_breaker: LoopBreakerConfig
    pipeline: Pipeline
    recorder: RunRecorder
    pricing: PricingTable
    agent_span_id: str
    message_cache: MessageCache = field(default_factory=dict)


class Stop(Exception):
    """Raised inside the loop when a decision ends the run; carries that decision."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class EmptyAnswer(Exception):
    """Raised inside the loop when the model's answer has no text; says what it sent."""


def _hook(
    rc: RunContext, state: RunState, hook: Hook, span_id: str | None, **kw: Any
) -> HookContext:
    return HookContext(
        hook=hook,
        state=state,
        limits=rc.limits,
        loop_breaker=rc.loop_breaker,
        span_id=span_id,
        **kw,
    )


async def _checked(rc: RunContext, ctx: HookContext, payload: P) -> P:
    """Run the pipeline at a hook; any stopping decision ends the run."""
    decision, payload = await rc.pipeline.check(ctx, payload)
    if decision.stops:
        raise Stop(decision)
    return payload


async def _checked_tool(rc: RunContext, ctx: HookContext, payload: P) -> P | Decision:
    """Like ``_checked`` for tool hooks, where a Block without an outcome refuses only this
    call: the decision is returned so the model hears why and can carry on."""
    decision, payload = await rc.pipeline.check(ctx, payload)
    if decision.stops:
        if decision.outcome:
            raise Stop(decision)
        return decision
    return payload


# -- model calls -------------------------------------------------------------------------------


async def call_model(rc: RunContext, state: RunState, request: ModelRequest) -> ModelResponse:
    """One model turn: pipeline checks, the primary model, fallbacks on failure, accounting."""
    price = rc.pricing.price_for(rc.models[0].name)
    ctx = _hook(
        rc,
        state,
        Hook.BEFORE_MODEL,
        rc.agent_span_id,
        input_usd_per_mtok=None if price is None else price.input,
    )
    request = await _checked(rc, ctx, request)
    state.turns += 1
    sent_messages, omitted = input_messages(request.messages, rc.message_cache)
    errors: list[ProviderError] = []
    for attempt, model in enumerate(rc.models):
        if attempt:
            rc.recorder.event(
                rc.agent_span_id,
                semconv.EVENT_MODEL_FALLBACK,
                {
                    "from": rc.models[attempt - 1].name,
                    "to": model.name,
                    "reason": clip(str(errors[-1])),
                },
            )
        span = rc.recorder.start_span(
            f"{semconv.OP_CHAT} {model.name}",
            "model",
            rc.agent_span_id,
            {
                semconv.GEN_AI_OPERATION_NAME: semconv.OP_CHAT,
                semconv.GEN_AI_PROVIDER_NAME: model.provider,
                semconv.GEN_AI_REQUEST_MODEL: model.name,
                semconv.TETHER_TURN: state.turns,
                semconv.TETHER_MODEL_ATTEMPT: attempt,
            },
        )
        # A model served over the network says where (``OpenAIChatModel.server``): a fallback
        # to the same model name on another server is then told apart.
        server: tuple[str, int] | None = getattr(model, "server", None)
        if server is not None:
            span.attributes[semconv.SERVER_ADDRESS], span.attributes[semconv.SERVER_PORT] = server
        span.attributes[semconv.GEN_AI_INPUT_MESSAGES] = sent_messages
        if omitted:
            span.attributes[semconv.TETHER_INPUT_MESSAGES_OMITTED] = omitted
        s = request.settings
        for key, value in (
            (semconv.GEN_AI_REQUEST_TEMPERATURE, s.temperature),
            (semconv.GEN_AI_REQUEST_SEED, s.seed),
            (semconv.GEN_AI_REQUEST_MAX_TOKENS, s.max_tokens),
        ):
            if value is not None:
                span.attributes[key] = value
        try:
            response = await model.complete(request)
        except ProviderError as exc:
            errors.append(exc)
            span.attributes[semconv.ERROR_TYPE] = type(exc).__name__
            rc.recorder.event(span.span_id, semconv.EVENT_MODEL_ERROR, _error_attributes(exc))
            rc.recorder.end_span(span, error=clip(exc.message))
            continue
        except BaseException as exc:
            rc.recorder.end_span(span, error=describe_exception(exc))
            raise
        response = _scrubbed(response)
        usage = response.usage
        state.usage = state.usage + usage
        # Price what the provider says it ran; an unpriced name (a fine-tune, an alias) falls
        # back to the requested model, which a cost limit has already checked is priced.
        tokens = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
        cost = rc.pricing.cost(response.model or model.name, *tokens)
        if cost is None:
            cost = rc.pricing.cost(model.name, *tokens)
        a = span.attributes
        a[semconv.GEN_AI_RESPONSE_MODEL] = response.model or model.name
        a[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [response.finish_reason]
        a[semconv.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cached_input_tokens:
            a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_input_tokens
        if response.response_id:
            a[semconv.GEN_AI_RESPONSE_ID] = response.response_id
        if cost is not None:
            state.cost_usd = round_cost(state.cost_usd + cost)
            a[semconv.TETHER_COST_USD] = cost
            a[semconv.TETHER_PRICING_VERSION] = rc.pricing.version
        else:  # unknown, not free
            state.unpriced_calls += 1
            a[semconv.TETHER_COST_UNPRICED] = True
        a[semconv.GEN_AI_OUTPUT_MESSAGES] = output_messages(response)
        ctx = _hook(rc, state, Hook.AFTER_MODEL, span.span_id)
        try:
            response = await _checked(rc, ctx, response)
        finally:
            rc.recorder.end_span(span)
        return response
    last_error = errors[-1]
    if len(rc.models) > 1:
        raise ProviderError(
            f"all {len(rc.models)} models failed; last error: {last_error.message}",
            hint=last_error.hint,
            status_code=last_error.status_code,
            # Worth trying again later if any of the models failed only for now.
            retryable=any(e.retryable for e in errors),
        ) from last_error
    raise last_error


def _error_attributes(exc: ProviderError) -> dict[str, Any]:
    attributes: dict[str, Any] = {"message": clip(exc.message), "retryable": exc.retryable}
    if exc.hint:
        attributes["hint"] = exc.hint
    if exc.status_code is not None:
        attributes["status_code"] = exc.status_code
    return attributes


# -- tool calls --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Approved:
    """A tool call that passed ``before_tool``: its slot is reserved, its span open."""

    call: ToolCall
    tool: Tool | None
    span: SpanRecord
    record: ToolRecord
    started: bool = False
    message: Message | None = None
    """The tool message, once the call is settled (also when ``after_tool`` stopped the run)."""


def _tool_message(call: ToolCall, result: ToolResult) -> Message:
    return Message(role="tool", content=result.content, tool_call_id=call.id, name=call.name)


def _tool_span(rc: RunContext, call: ToolCall, parent_id: str) -> SpanRecord:
    return rc.recorder.start_span(
        f"{semconv.OP_EXECUTE_TOOL} {call.name}",
        "tool",
        parent_id,
        {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: call.name,
            semconv.GEN_AI_TOOL_CALL_ID: call.id,
            semconv.GEN_AI_TOOL_TYPE: "function",
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS: arguments_text(call),
        },
    )


async def approve_tool(
    rc: RunContext, state: RunState, call: ToolCall, parent_id: str | None = None
) -> _Approved | Message:
    """``before_tool`` for one call. An approved call reserves its slot at once (so limits and
    the loop breaker see it even while it runs in parallel with others); a refused one becomes
    the message the model gets. A stopping decision raises ``Stop``. The call's span is a child
    of ``parent_id`` (default: the agent span)."""
    span = _tool_span(rc, call, parent_id or rc.agent_span_id)
    try:
        ctx = _hook(
            rc, state, Hook.BEFORE_TOOL, span.span_id, tool=rc.tools.get(call.name), call=call
        )
        allowed = await _checked_tool(rc, ctx, call)
    except BaseException:
        rc.recorder.end_span(span)
        raise
    if isinstance(allowed, Decision):
        result = ToolResult(f"Tool call refused by policy: {allowed.reason}", is_error=True)
        span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] = clip(result.content)
        rc.recorder.end_span(span, error=clip(result.content))
        return _tool_message(call, result)
    if allowed != call:  # a control rewrote the call: the span shows what actually runs
        span.name = f"{semconv.OP_EXECUTE_TOOL} {allowed.name}"
        span.attributes[semconv.GEN_AI_TOOL_NAME] = allowed.name
        span.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments_text(allowed)
    tool = rc.tools.get(allowed.name)
    if tool is not None:
        span.attributes[semconv.TETHER_TOOL_SIDE_EFFECTS] = tool.side_effects
    state.tool_calls += 1
    record = ToolRecord(
        call_id=allowed.id, name=allowed.name, args_hash=content_hash(allowed.arguments)
    )
    state.tool_history.append(record)
    return _Approved(allowed, tool, span, record)


async def complete_tool(rc: RunContext, state: RunState, approved: _Approved) -> Message:
    """Run an approved call and ``after_tool``. Failures become error results for the model."""
    call, span = approved.call, approved.span
    approved.started = True
    error: str | None = None
    try:
        raw = await _execute(rc, approved.tool, call)
        approved.record.result_hash = content_hash(raw.content)
        approved.record.is_error = raw.is_error
        ctx = _hook(rc, state, Hook.AFTER_TOOL, span.span_id, tool=approved.tool, call=call)
        try:
            checked = await _checked_tool(rc, ctx, raw)
        except Stop as stop:  # the call ran; the model's conversation still needs its answer
            withheld = f"Tool result withheld by policy: {stop.decision.reason}"
            approved.message = _tool_message(call, ToolResult(withheld, is_error=True))
            error = withheld
            raise
        if isinstance(checked, Decision):
            result = ToolResult(f"Tool result withheld by policy: {checked.reason}", True)
        else:
            result = checked
        if result.is_error:
            error = result.content
            span.attributes[semconv.ERROR_TYPE] = "tool_error"
            rc.recorder.event(span.span_id, semconv.EVENT_TOOL_ERROR, {"message": clip(error)})
        span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] = clip(result.content)
    except asyncio.CancelledError:  # the run timed out or was cancelled mid-call
        error = "cancelled: the run stopped while the tool was running"
        approved.record.is_error = True
        raise
    finally:  # the error may be a tool's whole (huge) output: the span keeps its start
        rc.recorder.end_span(span, error=None if error is None else clip(error))
    approved.message = _tool_message(call, result)
    return approved.message


async def _execute(rc: RunContext, tool: Tool | None, call: ToolCall) -> ToolResult:
    if tool is None:
        return ToolResult(
            f"Error: unknown tool '{call.name}'. Available tools: "
            f"{', '.join(sorted(rc.tools)) or 'none'}.",
            is_error=True,
        )
    raw_arguments = call.raw_arguments
    if raw_arguments is not None:  # not a JSON object: no tool can take it
        problem = describe_invalid_arguments(raw_arguments)
        return ToolResult(
            f"Error: invalid arguments for tool '{call.name}': {problem}", is_error=True
        )
    try:
        async with asyncio.timeout(tool.timeout_s):
            result = await tool.call(call.arguments)
        content = scrub_surrogates(result.content)
        return (
            result
            if content is result.content
            else ToolResult(content, result.is_error, result.data)
        )
    except TimeoutError:
        return ToolResult(
            f"Error: tool '{call.name}' timed out after {tool.timeout_s:g}s", is_error=True
        )
    except TetherError as exc:
        return ToolResult(f"Error: {exc.message}", is_error=True)
    except Exception as exc:
        return ToolResult(f"Error: {describe_exception(exc)}", is_error=True)


async def run_tools(
    rc: RunContext, state: RunState, calls: list[ToolCall], parent_id: str | None = None
) -> None:
    """One turn's tool calls: every call passes ``before_tool`` in order first, then the approved
    ones run in parallel; results are appended in call order. Their spans are children of
    ``parent_id`` (default: the agent span).

    However the turn ends — normally, stopped by a decision at call *i*, timed out, crashed —
    it is settled the same way: every call that produced an answer keeps it, calls approved
    but never started give back their slot, and every call the model asked for without an
    answer is left in ``state.pending_tool_calls`` (what a resumed run settles first).
    """
    checked: list[_Approved | Message] = []
    stop: Stop | None = None
    failures: list[BaseException] = []
    try:
        for call in calls:
            try:
                checked.append(await approve_tool(rc, state, call, parent_id))
            except Stop as exc:
                stop = exc
                break
        runnable = [c for c in checked if isinstance(c, _Approved)]
        if len(runnable) == 1:
            try:
                await complete_tool(rc, state, runnable[0])
            except Exception as exc:
                failures.append(exc)
        elif runnable:
            outcomes = await asyncio.gather(
                *(complete_tool(rc, state, a) for a in runnable), return_exceptions=True
            )
            failures.extend(o for o in outcomes if isinstance(o, BaseException))
    finally:
        _settle_turn(rc, state, calls, checked)
    if failures:
        raise failures[0]
    if stop is not None:
        raise stop


def _settle_turn(
    rc: RunContext, state: RunState, calls: list[ToolCall], checked: list[_Approved | Message]
) -> None:
    answered: set[str] = set()
    for item in checked:
        message = item if isinstance(item, Message) else item.message
        if message is not None:
            state.messages.append(message)
            answered.add(message.tool_call_id or "")
        elif isinstance(item, _Approved) and not item.started:
            # Approved, then the run stopped before it ran: it gives its slot back.
            state.tool_calls -= 1
            state.tool_history.remove(item.record)
            rc.recorder.end_span(item.span, error="not run: the run stopped first")
    state.pending_tool_calls = [c for c in calls if c.id not in answered]


# -- paradigms ---------------------------------------------------------------------------------


def _request(rc: RunContext, state: RunState, *, tools: bool = True) -> ModelRequest:
    return ModelRequest(
        messages=list(state.messages),
        tools=rc.tool_defs if tools else [],
        settings=rc.settings,
    )


async def react(rc: RunContext, state: RunState) -> str:
    """Model, tools, model, ... until the model answers without calling a tool."""
    while True:
        response = await call_model(rc, state, _request(rc, state))
        state.messages.append(response.as_message())
        if not response.tool_calls:
            return _answer_text(response, "the model")
        await run_tools(rc, state, response.tool_calls)


async def plan_execute(rc: RunContext, state: RunState) -> str:
    """One planner call, the planned tool calls, one solver call."""
    planner = _request(rc, state)
    planner.messages.append(Message(role="system", content=PLANNER_NOTE))
    plan = await call_model(rc, state, planner)
    state.messages.append(plan.as_message())
    state.plan = list(plan.tool_calls)
    if not plan.tool_calls:
        return _answer_text(plan, "the planner")
    span = rc.recorder.start_span(
        "plan",
        "plan",
        rc.agent_span_id,
        {
            semconv.TETHER_PLAN_STEPS: len(plan.tool_calls),
            semconv.TETHER_PLAN_TOOLS: [c.name for c in plan.tool_calls],
        },
    )
    try:
        await run_tools(rc, state, plan.tool_calls, span.span_id)
    finally:
        rc.recorder.end_span(span)
    answer = await call_model(rc, state, _request(rc, state, tools=False))
    state.messages.append(answer.as_message())
    return _answer_text(answer, "the solver")


def _answer_text(response: ModelResponse, who: str) -> str:
    """The answer's text; ``EmptyAnswer`` when there is none (only whitespace, or only tool
    calls where an answer was due)."""
    if response.content.strip():
        return response.content
    what = "tool calls instead of an answer" if response.tool_calls else "no text"
    raise EmptyAnswer(f"{who} replied with {what} (finish_reason: {response.finish_reason})")


async def drive(rc: RunContext, state: RunState) -> None:
    """Run the paradigm to the end and settle the outcome; stops become outcomes."""
    started = monotonic()
    run_timeout = asyncio.timeout(rc.limits.timeout_s)
    try:
        try:
            ctx = _hook(rc, state, Hook.ON_INPUT, rc.agent_span_id)
            state.input = await _checked(rc, ctx, state.input)
            state.messages.append(Message(role="user", content=state.input))
            paradigm = plan_execute if state.paradigm == "plan_execute" else react
            async with run_timeout:
                answer = await paradigm(rc, state)
            ctx = _hook(rc, state, Hook.ON_OUTPUT, rc.agent_span_id)
            state.output = await _checked(rc, ctx, answer)
            state.end(Outcome.FINAL_ANSWER)
        except Stop as stop:
            d = stop.decision
            outcome = d.outcome or Outcome.BLOCKED
            state.end(outcome)
            state.stop_reason = f"{d.control}: {d.reason}"
            state.output = d.message or _default_stop_message(outcome)
        except TimeoutError:
            if not run_timeout.expired():
                raise  # some other timeout (a model integration's own): not the run's limit
            rc.recorder.event(
                rc.agent_span_id,
                semconv.EVENT_RUN_LIMIT,
                {"limit": "timeout_s", "value": rc.limits.timeout_s},
            )
            state.end(Outcome.LIMIT_EXCEEDED)
            state.stop_reason = f"limits: timeout_s limit reached after {rc.limits.timeout_s:g}s"
            state.output = limit_message("timeout_s", rc.limits.timeout_s)
        except EmptyAnswer as exc:
            state.end(Outcome.EMPTY_ANSWER)
            state.error = state.stop_reason = str(exc)
            state.output = EMPTY_ANSWER_MESSAGE
            rc.recorder.event(rc.agent_span_id, semconv.EVENT_RUN_ERROR, {"message": str(exc)})
    except ProviderError as exc:
        state.end(Outcome.ERROR)
        state.error, state.hint = exc.message, exc.hint
        state.stop_reason = f"model provider failed: {exc.message}"
        state.output = _provider_failure_message(exc)
        rc.recorder.event(rc.agent_span_id, semconv.EVENT_RUN_ERROR, _error_attributes(exc))
    except asyncio.CancelledError as exc:
        # The caller cancelled the run (a SIGTERM or Ctrl-C unwinding the event loop, a task
        # cancelled from outside). Say so: the bare exception's text is empty.
        detail = f": {exc.args[0]}" if exc.args and exc.args[0] else ""
        state.error = f"the run was cancelled before it finished{detail}"
        state.stop_reason = "cancelled"
        raise asyncio.CancelledError(state.error) from exc
    finally:
        state.elapsed_s += monotonic() - started


def _provider_failure_message(exc: ProviderError) -> str:
    """What the user is told when the model provider failed: to try again only if that helps."""
    if exc.retryable:
        return (
            "I'm sorry, I can't answer right now: the language model is unavailable. "
            "Please try again shortly."
        )
    if exc.misconfigured or exc.status_code in (None, 401, 403, 404):  # a key, a model, a URL
        return (
            "I'm sorry, I can't answer: the language model service is not set up correctly on "
            "our side, so trying again won't help until that is fixed."
        )
    return (
        "I'm sorry, I can't answer: the language model service could not handle this request, "
        "and trying again won't help."
    )


def _default_stop_message(outcome: Outcome) -> str:
    if outcome.status == "paused":
        return "Your request needs a person's review; we'll follow up once it has been reviewed."
    return "I'm sorry, I can't help with that request."
