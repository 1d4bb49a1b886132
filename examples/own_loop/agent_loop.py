"""A hand-written agent loop, wrapped by Tether's run scope.

The loop below is the application's own: it keeps its own conversation, calls an
OpenAI-compatible chat model and runs its own Python tools. It is not a Tether ``Agent``. Opening
a ``RunScope`` around it puts each of its calls through Tether's pipeline (limits, the loop
breaker, and here a control that refuses refunds) and into Tether's trace, one run per question,
in the spirit of pydantic-ai's direct model requests.

Offline, on a scripted model (the default)::

    python examples/own_loop/agent_loop.py "Where is order A-1001?"

Against any OpenAI-compatible server (OpenAI, a LiteLLM proxy, vLLM, Ollama)::

    OPENAI_BASE_URL=http://127.0.0.1:4000/v1 OPENAI_API_KEY=... EXAMPLE_MODEL=gpt-4.1-mini \\
        python examples/own_loop/agent_loop.py "Where is order A-1001?"

Then ``tether traces show <run id>`` shows the run, its model and tool calls, and the refusal.
"""

from __future__ import annotations

import asyncio
import os
import sys

from tether import (
    Caller,
    Control,
    Decision,
    Harness,
    HookContext,
    Limits,
    Message,
    Model,
    ModelRequest,
    OpenAIChatModel,
    Outcome,
    RunResult,
    ScriptedModel,
    ToolCall,
)

SYSTEM = "You help customers with their orders. Use the tools; never guess an order's status."
MAX_TURNS = 6
ORDERS = {"A-1001": "shipped on Monday with ParcelCo, tracking PC-77", "A-1002": "being packed"}


# -- the application's own tools -----------------------------------------------------------


def order_status(order_id: str) -> str:
    """The current status of one order."""
    return ORDERS.get(order_id, f"no order {order_id}")


def refund(order_id: str) -> str:
    """Refund one order in full."""
    return f"refunded {order_id}"


# -- a control of the application's: refunds need a person --------------------------------


class NoRefunds(Control):
    """Refuses the refund tool: the model is told why and answers without it."""

    name = "no_refunds"

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        if call.name == "refund":
            who = ctx.caller.end_user or "an anonymous user"
            return Decision.block(f"refunds are made by a person, not for {who} by the bot")
        return Decision.allow()


# -- the loop ------------------------------------------------------------------------------


async def answer(question: str, harness: Harness, *, user: str) -> RunResult:
    """The application's agent loop, each call made through the run scope."""
    caller = Caller(end_user=user)
    async with harness.open_run(question, agent="order-helper", caller=caller) as run:
        step = await run.input()  # on_input controls; the text may come back redacted
        if step.value is None:
            return run.result()
        messages = [
            Message(role="system", content=SYSTEM),
            Message(role="user", content=step.value),
        ]
        for _ in range(MAX_TURNS):
            request = ModelRequest(messages=messages, tools=harness.tool_defs)
            reply = await run.model_call(request)  # priced, with fallbacks, traced
            if reply.value is None:  # a limit, a block, the provider down: the run has ended
                break
            messages.append(reply.value.as_message())
            if not reply.value.tool_calls:
                await run.output(reply.value.content)  # on_output controls; ends the run
                break
            results = await run.tool_calls(reply.value.tool_calls)  # run in parallel, traced
            if results.value is None:
                break
            messages.extend(results.value)
        else:
            run.end(Outcome.LIMIT_EXCEEDED, output="Sorry, that took too many steps.")
    return run.result()


def build_model() -> Model:
    """An OpenAI-compatible model when ``OPENAI_BASE_URL`` is set, else a scripted one."""
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        name = os.environ.get("EXAMPLE_MODEL", "gpt-4.1-mini")
        return OpenAIChatModel(name, base_url=base_url, api_key_env="OPENAI_API_KEY")
    return ScriptedModel(
        [
            {"tool_calls": [{"name": "order_status", "arguments": {"order_id": "A-1001"}}]},
            {"tool_calls": [{"name": "refund", "arguments": {"order_id": "A-1001"}}]},
            {"text": "Order A-1001 shipped on Monday with ParcelCo (tracking PC-77)."},
        ],
        name="gpt-4.1-mini",
    )


def make_harness(model: Model, *, trace: str | bool | None = None) -> Harness:
    return Harness(
        models=[model],
        tools=[order_status, refund],
        controls=[NoRefunds()],
        limits=Limits(max_turns=MAX_TURNS, timeout_s=60),
        trace=trace,
    )


async def main(question: str) -> int:
    harness = make_harness(build_model())
    try:
        result = await answer(question, harness, user="customer-42")
    finally:
        await harness.aclose()
    print(result.output)
    print(f"outcome: {result.outcome}  run: {result.run_id}  (tether traces show {result.run_id})")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(" ".join(sys.argv[1:]) or "Where is order A-1001?")))
