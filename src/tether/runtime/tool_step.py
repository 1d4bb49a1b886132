"""The tool step of a run: one turn's tool calls, each through ``before_tool``, the tool (or a
control's answer in its place), ``after_tool``; each call one span.

Every call passes ``before_tool`` in order first, then the approved ones run in parallel, and
their results are appended to the conversation in call order. A ``Block`` without an outcome
refuses only its call (the model hears why and can carry on); a decision with an outcome ends
the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from tether.controls import Decision, Hook, Verdict
from tether.controls.pipeline import ALLOW
from tether.core import TetherError, content_hash, describe_exception, scrub_surrogates
from tether.providers import Message, ToolCall
from tether.providers.types import describe_invalid_arguments
from tether.runtime.deadline import Deadline
from tether.runtime.state import PendingApproval, ToolRecord
from tether.runtime.steps import Stop
from tether.runtime.telemetry import arguments_text, clip
from tether.store import SpanRecord
from tether.tools import Tool, ToolResult
from tether.trace import semconv

if TYPE_CHECKING:
    from tether.runtime.scope import RunScope

T = TypeVar("T")
# Enum members read once (see ``tether.controls.pipeline``: slow on Python 3.11).
_BEFORE_TOOL, _AFTER_TOOL = Hook.BEFORE_TOOL, Hook.AFTER_TOOL
_ESCALATE, _RESPOND = Verdict.ESCALATE, Verdict.RESPOND


@dataclass(slots=True)
class _Approved:
    """A tool call that passed ``before_tool``: its slot is reserved, its span open."""

    call: ToolCall
    tool: Tool | None
    span: SpanRecord
    record: ToolRecord
    answer: ToolResult | None = None
    """A control's answer in place of the call (``Decision.respond``): the tool is not run."""
    started: bool = False
    message: Message | None = None
    """The tool message, once the call is settled (also when ``after_tool`` stopped the run)."""


def _tool_message(call: ToolCall, result: ToolResult) -> Message:
    return Message(role="tool", content=result.content, tool_call_id=call.id, name=call.name)


def _stored_arguments(scope: RunScope, call: ToolCall) -> str:
    """A call's arguments as its span stores them: masked as the guards of ``tool_args``
    mask them, also before (or without) ``before_tool`` having judged them."""
    redact = scope.harness.redact_arguments
    if redact is None:
        return arguments_text(call)
    try:
        masked = redact(call.arguments)
    except Exception as exc:  # not the raw values: they are what the guard exists to keep out
        return f"[arguments not stored: masking them failed: {describe_exception(exc)}]"
    if masked is call.arguments:
        return arguments_text(call)
    return arguments_text(call.model_copy(update={"arguments": dict(masked)}))


async def _checked(
    scope: RunScope, hook: Hook, span_id: str, tool: Tool | None, call: ToolCall, payload: object
) -> tuple[Decision, object]:
    """The pipeline at a tool hook: a decision with an outcome ends the run (``Stop``); a plain
    Block, a Respond or an Allow/Modify come back to the caller."""
    if not scope.pipeline.asks(hook):
        return ALLOW, payload
    ctx = scope.hook_context(hook, span_id, tool=tool, call=call)
    decision, payload = await scope.pipeline.check(ctx, payload)
    if decision.stops and decision.outcome:
        raise Stop(decision)
    return decision, payload


async def approve_tool(
    scope: RunScope, call: ToolCall, parent_id: str | None = None
) -> _Approved | Message:
    """``before_tool`` for one call. An approved call reserves its slot at once (so limits and
    the loop breaker see it even while it runs in parallel with others); a refused one becomes
    the message the model gets. The call's span is a child of ``parent_id`` (default: the
    run's root span)."""
    state, tools, tracing = scope.state, scope.harness.tools, scope.tracing
    span = scope.recorder.start_span(
        f"{semconv.OP_EXECUTE_TOOL} {call.name}" if tracing else "",
        "tool",
        parent_id or scope.run_id,
        {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: call.name,
            semconv.GEN_AI_TOOL_CALL_ID: call.id,
            semconv.GEN_AI_TOOL_TYPE: "function",
            semconv.GEN_AI_TOOL_CALL_ARGUMENTS: _stored_arguments(scope, call),
        }
        if tracing
        else {},
    )
    try:
        decision, allowed = await _checked(
            scope, _BEFORE_TOOL, span.span_id, tools.get(call.name), call, call
        )
    except BaseException as exc:
        if isinstance(exc, Stop) and exc.decision.verdict is _ESCALATE:
            # The run pauses on this call: what a person approves or denies is this call.
            state.awaiting_approval = PendingApproval(
                call_id=call.id,
                tool=call.name,
                args_hash=content_hash(call.arguments),
                control=exc.decision.control,
                reason=exc.decision.reason,
                span_id=span.span_id,
            )
        scope.recorder.end_span(span)
        raise
    if decision.stops:
        reason = scope.stored_text(decision.reason)
        result = ToolResult(f"Tool call refused by policy: {reason}", is_error=True)
        span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] = clip(result.content)
        scope.recorder.end_span(span, error=clip(result.content))
        return _tool_message(call, result)
    answer = decision.value if decision.verdict is _RESPOND else None
    if answer is not None:
        span.attributes[semconv.TETHER_RESPONDED_BY] = decision.control
    assert isinstance(allowed, ToolCall)
    if tracing and allowed != call:  # a control rewrote the call: the span shows what runs
        span.name = f"{semconv.OP_EXECUTE_TOOL} {allowed.name}"
        span.attributes[semconv.GEN_AI_TOOL_NAME] = allowed.name
        span.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] = _stored_arguments(scope, allowed)
    tool = tools.get(allowed.name)
    if tool is not None:
        span.attributes[semconv.TETHER_TOOL_SIDE_EFFECTS] = tool.side_effects
    state.tool_calls += 1
    record = ToolRecord(
        call_id=allowed.id, name=allowed.name, args_hash=content_hash(allowed.arguments)
    )
    state.tool_history.append(record)
    return _Approved(allowed, tool, span, record, answer=answer)


async def complete_tool(scope: RunScope, approved: _Approved) -> Message:
    """Run an approved call (or take the control's answer) and ``after_tool``. Failures become
    error results for the model."""
    call, span = approved.call, approved.span
    approved.started = True
    if approved.answer is None:
        await scope.tool_starting()
    error: str | None = None
    try:
        answer = approved.answer
        raw = _scrubbed(answer) if answer else await _execute(scope, approved.tool, call)
        approved.record.result_hash = content_hash(raw.content)
        approved.record.is_error = raw.is_error
        try:
            decision, checked = await _checked(
                scope, _AFTER_TOOL, span.span_id, approved.tool, call, raw
            )
        except Stop as stop:  # the call ran; the model's conversation still needs its answer
            withheld = f"Tool result withheld by policy: {scope.stored_text(stop.decision.reason)}"
            approved.message = _tool_message(call, ToolResult(withheld, is_error=True))
            error = withheld
            raise
        if decision.stops:
            reason = scope.stored_text(decision.reason)
            result = ToolResult(f"Tool result withheld by policy: {reason}", True)
        else:
            assert isinstance(checked, ToolResult)
            result = checked
        if result.is_error:
            error = result.content
            span.attributes[semconv.ERROR_TYPE] = "tool_error"
            scope.recorder.event(span.span_id, semconv.EVENT_TOOL_ERROR, {"message": clip(error)})
        if scope.tracing:
            span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] = clip(result.content)
    except asyncio.CancelledError:  # the run timed out or was cancelled mid-call
        error = "cancelled: the run stopped while the tool was running"
        approved.record.is_error = True
        raise
    finally:  # the error may be a tool's whole (huge) output: the span keeps its start
        scope.recorder.end_span(span, error=None if error is None else clip(error))
    approved.message = _tool_message(call, result)
    return approved.message


async def _execute(scope: RunScope, tool: Tool | None, call: ToolCall) -> ToolResult:
    if tool is None:
        return ToolResult(
            f"Error: unknown tool '{call.name}'. Available tools: "
            f"{', '.join(sorted(scope.harness.tools)) or 'none'}.",
            is_error=True,
        )
    raw_arguments = call.raw_arguments
    if raw_arguments is not None:  # not a JSON object: no tool can take it
        problem = describe_invalid_arguments(raw_arguments)
        return ToolResult(
            f"Error: invalid arguments for tool '{call.name}': {problem}", is_error=True
        )
    try:
        result = await _within(scope.harness.deadline(tool.timeout_s), tool.call(call.arguments))
        return _scrubbed(result)
    except TimeoutError:
        return ToolResult(
            f"Error: tool '{call.name}' timed out after {tool.timeout_s:g}s", is_error=True
        )
    except TetherError as exc:
        return ToolResult(f"Error: {exc.message}", is_error=True)
    except Exception as exc:
        return ToolResult(f"Error: {describe_exception(exc)}", is_error=True)


def _scrubbed(result: ToolResult) -> ToolResult:
    """A tool result without lone surrogates (a file name read with ``surrogateescape``):
    they cannot be hashed, stored or checkpointed."""
    content = scrub_surrogates(result.content)
    return (
        result if content is result.content else ToolResult(content, result.is_error, result.data)
    )


async def _within(deadline: Deadline, work: Awaitable[T]) -> T:
    """``work`` under ``asyncio.timeout_at(deadline.when)`` (as a ``Deadline``: cheaper)."""
    deadline.enter()
    try:
        result = await work
    except BaseException as exc:
        if deadline.exit(type(exc)):
            raise TimeoutError from exc
        raise
    deadline.exit(None)
    return result


async def tools_step(
    scope: RunScope, calls: list[ToolCall], parent_id: str | None = None
) -> list[Message]:
    """One turn's tool calls; returns their messages in call order (also appended to the
    conversation).

    However the turn ends — normally, stopped by a decision at call *i*, timed out, crashed —
    it is settled the same way: every call that produced an answer keeps it, calls approved
    but never started give back their slot, and every call the model asked for without an
    answer is left in ``state.pending_tool_calls`` (what a resumed run settles first).
    """
    checked: list[_Approved | Message] = []
    stop: Stop | None = None
    failures: list[BaseException] = []
    answered: list[Message] = []
    try:
        for call in calls:
            try:
                checked.append(await approve_tool(scope, call, parent_id))
            except Stop as exc:
                stop = exc
                break
        runnable = [c for c in checked if isinstance(c, _Approved)]
        if len(runnable) == 1:
            try:
                await complete_tool(scope, runnable[0])
            except Exception as exc:
                failures.append(exc)
        elif runnable:
            outcomes = await asyncio.gather(
                *(complete_tool(scope, a) for a in runnable), return_exceptions=True
            )
            failures.extend(o for o in outcomes if isinstance(o, BaseException))
    finally:
        answered = _settle_turn(scope, calls, checked)
    if failures:
        raise failures[0]
    if stop is not None:
        raise stop
    return answered


def _settle_turn(
    scope: RunScope, calls: list[ToolCall], checked: list[_Approved | Message]
) -> list[Message]:
    state = scope.state
    answered: list[Message] = []
    for item in checked:
        message = item if isinstance(item, Message) else item.message
        if message is not None:
            state.messages.append(message)
            answered.append(message)
        elif isinstance(item, _Approved) and not item.started:
            # Approved, then the run stopped before it ran: it gives its slot back.
            state.tool_calls -= 1
            state.tool_history.remove(item.record)
            scope.recorder.end_span(item.span, error="not run: the run stopped first")
    ids = {m.tool_call_id or "" for m in answered}
    state.pending_tool_calls = [c for c in calls if c.id not in ids]
    return answered
