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

from tether.core import Outcome
from tether.providers import ModelResponse
from tether.runtime.chain import StreamHandler
from tether.runtime.scope import PLANNER_NOTE, RunScope
from tether.trace import semconv

EMPTY_ANSWER_MESSAGE = (
    "I'm sorry, I couldn't come up with an answer this time. Please try again, or rephrase "
    "your request."
)


async def react(run: RunScope, stream: StreamHandler | None = None) -> None:
    """Model, tools, model, ... until the model answers without calling a tool."""
    while True:
        reply = (await run.model_call(stream=stream)).value
        if reply is None:
            return
        if not reply.tool_calls:
            await _answer(run, reply, "the model")
            return
        if (await run.tool_calls(reply.tool_calls)).stopped:
            return


async def plan_execute(run: RunScope, stream: StreamHandler | None = None) -> None:
    """One planner call, the planned tool calls, one solver call."""
    plan = (await run.model_call(note=PLANNER_NOTE, stream=stream)).value
    if plan is None:
        return
    run.state.plan = list(plan.tool_calls)
    if not plan.tool_calls:
        await _answer(run, plan, "the planner")
        return
    attributes = {
        semconv.TETHER_PLAN_STEPS: len(plan.tool_calls),
        semconv.TETHER_PLAN_TOOLS: [c.name for c in plan.tool_calls],
    }
    with run.span("plan", "plan", attributes) as span:
        step = await run.tool_calls(plan.tool_calls, parent_id=span.span_id)
    if step.stopped:
        return
    answer = (await run.model_call(tools=False, stream=stream)).value
    if answer is not None:
        await _answer(run, answer, "the solver")


async def _answer(run: RunScope, response: ModelResponse, who: str) -> None:
    """Give the reply's text as the answer; a reply without text (only whitespace, or only
    tool calls where an answer was due) ends the run as an empty answer."""
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
