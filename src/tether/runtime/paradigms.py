"""The agent paradigms, as orderings of a run scope's steps.

ReAct: call the model; run the tool calls it asks for (in parallel); repeat until it answers.
Plan-then-execute: one planner call returns the plan as tool calls; they run (their spans sit
under a ``plan`` span); a solver call (with no tools) answers.

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

from typing import TYPE_CHECKING

from tether.core import Outcome
from tether.providers import ModelResponse, ToolCall
from tether.runtime.chain import StreamHandler
from tether.runtime.scope import PLANNER_NOTE, RunScope
from tether.trace import semconv

if TYPE_CHECKING:
    from tether.runtime.structured import OutputSchema

EVENT_OUTPUT_VALIDATION = "tether.output.validation"
"""An answer checked against the output schema: ``attempt``, ``valid``, ``problems``."""

INVALID_ANSWER_MESSAGE = (
    "I'm sorry, I couldn't produce an answer in the required format this time. Please try again."
)
EMPTY_ANSWER_MESSAGE = (
    "I'm sorry, I couldn't come up with an answer this time. Please try again, or rephrase "
    "your request."
)


async def react(
    run: RunScope, stream: StreamHandler | None = None, output: OutputSchema | None = None
) -> None:
    """Model, tools, model, ... until the model answers without calling a tool."""
    while True:
        reply = (await run.model_call(stream=stream)).value
        if reply is None:
            return
        if not reply.tool_calls:
            await _answer(run, reply, "the model", stream, output)
            return
        if (await run.tool_calls(reply.tool_calls)).stopped:
            return


async def plan_execute(
    run: RunScope, stream: StreamHandler | None = None, output: OutputSchema | None = None
) -> None:
    """One planner call, the planned tool calls, one solver call."""
    plan = (await run.model_call(note=PLANNER_NOTE, stream=stream)).value
    if plan is None:
        return
    run.state.plan = list(plan.tool_calls)
    if not plan.tool_calls:
        await _answer(run, plan, "the planner", stream, output)
        return
    await _execute_plan(run, plan.tool_calls, stream, output)


async def _execute_plan(
    run: RunScope,
    calls: list[ToolCall],
    stream: StreamHandler | None,
    output: OutputSchema | None,
) -> None:
    """The planned tool calls (under a ``plan`` span), then the solver's answer."""
    attributes = {
        semconv.TETHER_PLAN_STEPS: len(calls),
        semconv.TETHER_PLAN_TOOLS: [c.name for c in calls],
    }
    with run.span("plan", "plan", attributes) as span:
        step = await run.tool_calls(calls, parent_id=span.span_id)
    if step.stopped:
        return
    answer = (await run.model_call(tools=False, stream=stream)).value
    if answer is not None:
        await _answer(run, answer, "the solver", stream, output)


async def resume(
    run: RunScope, stream: StreamHandler | None = None, output: OutputSchema | None = None
) -> None:
    """Go on from a paused run (``Harness.resume_run``): first the tool calls it stopped at,
    then as its paradigm goes on after tool calls."""
    pending = list(run.state.pending_tool_calls)
    if run.state.paradigm == "plan_execute" and run.state.plan:
        await _execute_plan(run, pending, stream, output)
        return
    if (await run.tool_calls(pending)).stopped:
        return
    await react(run, stream, output)


async def _answer(
    run: RunScope,
    response: ModelResponse,
    who: str,
    stream: StreamHandler | None = None,
    output: OutputSchema | None = None,
) -> None:
    """Give the reply's text as the answer; a reply without text (only whitespace, or only
    tool calls where an answer was due) ends the run as an empty answer.

    With an ``output`` schema the answer is checked first: one that does not match is
    re-asked (the model is told what was wrong, with no tools) at most ``max_reasks`` times,
    each check an event on the run's span; then the run fails (outcome ``error``)."""
    attempt = 0
    while output is not None and response.content.strip():
        answer, problems = output.check(response.content)
        run.recorder.event(
            run.run_id,
            EVENT_OUTPUT_VALIDATION,
            {"attempt": attempt, "valid": not problems, "problems": problems},
        )
        if not problems:
            await run.output(answer)
            return
        if attempt >= output.max_reasks:
            run.end(
                Outcome.ERROR,
                output=INVALID_ANSWER_MESSAGE,
                error=f"{who}'s answer did not match the output schema after {attempt} "
                f"re-ask{'' if attempt == 1 else 's'}: {'; '.join(problems)}",
                hint="check the schema and the instructions, or raise output.max_reasks",
            )
            return
        attempt += 1
        step = await run.model_call(note=output.reask_note(problems), tools=False, stream=stream)
        if step.value is None:
            return
        response = step.value
    if response.content.strip():
        await run.output(response.content)
        return
    what = "tool calls instead of an answer" if response.tool_calls else "no text"
    run.end(
        Outcome.EMPTY_ANSWER,
        output=EMPTY_ANSWER_MESSAGE,
        error=f"{who} replied with {what} (finish_reason: {response.finish_reason})",
    )


PARADIGMS = {"react": react, "plan_execute": plan_execute}
