"""Run limits and the loop breaker, as controls on the pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tether.controls.pipeline import ALLOW, Control, Decision, HookContext
from tether.core import Outcome, content_hash
from tether.providers import ModelRequest, ToolCall
from tether.spec.budgets import DEFAULT_MAX_OUTPUT_TOKENS

# Built once: json.dumps with options builds a new encoder on every call.
_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

ESTIMATE_METHOD = "an estimate: characters / 4"
"""How ``estimate_input_tokens`` counts, as a tripped limit's reason says it."""


def estimate_input_tokens(request: ModelRequest) -> int:
    """A cheap estimate of a model call's input tokens: characters / 4 over the messages (text,
    tool calls) and the tool definitions, the usual rule of thumb for English text."""
    chars = 0
    for message in request.messages:
        chars += len(message.content)
        for call in message.tool_calls:
            chars += len(call.name) + len(_compact_json(call.arguments))
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(_compact_json(tool.parameters))
    return chars // 4


def _show(limit: str, value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return f"${text}" if limit == "max_cost_usd" else text
    return str(value)


def limit_message(limit: str, value: object) -> str:
    return (
        "I'm sorry, I couldn't finish this request within my limits "
        f"({limit} = {_show(limit, value)}). What I found so far is kept with this run; please "
        "try a narrower request or ask a person to follow up."
    )


def _trip(limit: str, value: object, detail: str) -> Decision:
    return Decision.block(
        f"{limit} limit reached: {detail}",
        outcome=Outcome.LIMIT_EXCEEDED,
        message=limit_message(limit, value),
    )


UNREPORTED = "the worst case of model calls whose provider reported no usage"
"""What a tripped limit's reason calls the part of its totals that is no count (see
``unreported_worst_case``)."""


def unreported_worst_case(
    request: ModelRequest, default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS
) -> tuple[int, int]:
    """What a model call whose provider reported no usage counts against the run's limits:
    its input tokens (estimated) and its output tokens at their most (the request's
    ``max_tokens``, else ``default_max_output``), as budgets reserve and then charge it.
    Unknown is not zero: counted as nothing, such calls would let a run past its limits."""
    return estimate_input_tokens(request), request.settings.max_tokens or default_max_output


def budget_check(
    ctx: HookContext, request: ModelRequest, input_usd_per_mtok: float | None
) -> Decision | None:
    """The run's token and cost limits against its totals so far and the next model call's
    input (estimated; priced at ``input_usd_per_mtok`` when known): the decision that stops
    the run, or ``None`` when the call fits. For the run's own model calls and those controls
    make on its behalf (an LLM judge). A call whose usage went unreported counts in the
    totals at its worst case (``RunState.unreported_tokens``, ``unreported_usd``)."""
    limits, state = ctx.limits, ctx.state
    if limits.max_total_tokens is None and limits.max_cost_usd is None:
        return None
    estimate = estimate_input_tokens(request)
    if limits.max_total_tokens is not None:
        used = state.usage.total_tokens + state.unreported_tokens
        note = (
            f" (of which {state.unreported_tokens:,} {UNREPORTED})"
            if state.unreported_tokens
            else ""
        )
        if used >= limits.max_total_tokens:
            return _trip("max_total_tokens", limits.max_total_tokens, f"{used} tokens used{note}")
        if used + estimate > limits.max_total_tokens:
            return _trip(
                "max_total_tokens",
                limits.max_total_tokens,
                f"{used:,} tokens used{note}, and the next model call's input is estimated at "
                f"about {estimate:,} tokens ({ESTIMATE_METHOD})",
            )
    if limits.max_cost_usd is not None:
        spent = state.cost_usd + state.unreported_usd
        note = (
            f" (of which ${state.unreported_usd:.6f} {UNREPORTED})" if state.unreported_usd else ""
        )
        if spent >= limits.max_cost_usd:
            return _trip("max_cost_usd", limits.max_cost_usd, f"${spent:.6f} spent{note}")
        if input_usd_per_mtok is not None:
            next_cost = estimate * input_usd_per_mtok / 1_000_000
            if spent + next_cost > limits.max_cost_usd:
                return _trip(
                    "max_cost_usd",
                    limits.max_cost_usd,
                    f"${spent:.6f} spent{note}, and the next model call's input is "
                    f"estimated at about ${next_cost:.6f} ({estimate:,} tokens, "
                    f"{ESTIMATE_METHOD})",
                )
    return None


class LimitsControl(Control):
    """Enforces ``Limits`` (turns, tool calls, tokens, cost) before each model and tool call.

    Wall-clock time is the runtime's job (it cancels whatever is in flight at the deadline).
    """

    name = "limits"

    async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
        """The totals so far, and the totals with the next call's input (estimated), against
        the limits: a call whose input alone would overshoot (a tool returned megabytes) is
        stopped before it is made, not paid for and noticed afterwards."""
        limits, state = ctx.limits, ctx.state
        if state.turns >= limits.max_turns:
            return _trip("max_turns", limits.max_turns, f"{state.turns} model calls made")
        if limits.max_total_tokens is None and limits.max_cost_usd is None:
            return ALLOW
        return budget_check(ctx, request, ctx.input_usd_per_mtok) or ALLOW

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        if ctx.state.tool_calls >= ctx.limits.max_tool_calls:
            return _trip(
                "max_tool_calls",
                ctx.limits.max_tool_calls,
                f"{ctx.state.tool_calls} tool calls made",
            )
        return ALLOW


class LoopBreaker(Control):
    """Stops a run that calls the same tool with the same arguments ``max_repeats`` times with
    no new information (every earlier call returned the same result), and apologizes. Tools in
    ``exempt_tools`` (polled on purpose: a job's status) are never counted.

    Both come from the spec's ``loop_breaker`` section (``HookContext.loop_breaker``); values
    given here override it."""

    name = "loop_breaker"

    def __init__(
        self, max_repeats: int | None = None, exempt_tools: Iterable[str] | None = None
    ) -> None:
        if max_repeats is not None and max_repeats < 2:
            raise ValueError("max_repeats must be at least 2")
        self.max_repeats = max_repeats
        self.exempt_tools = None if exempt_tools is None else frozenset(exempt_tools)

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        config = ctx.loop_breaker
        exempt = config.exempt_tools if self.exempt_tools is None else self.exempt_tools
        if call.name in exempt:
            return ALLOW
        max_repeats = config.max_repeats if self.max_repeats is None else self.max_repeats
        args_hash = content_hash(call.arguments)
        earlier = [
            r for r in ctx.state.tool_history if r.name == call.name and r.args_hash == args_hash
        ]
        if len(earlier) + 1 < max_repeats:
            return ALLOW
        # Only the most recent repeats count; a call still running (parallel calls in one turn)
        # has brought no new information yet.
        recent = {r.result_hash for r in earlier[-(max_repeats - 1) :] if r.result_hash}
        if len(recent) > 1:
            return ALLOW  # the last calls each learned something new
        return Decision.block(
            f"'{call.name}' called {len(earlier) + 1} times with the same arguments and no new "
            "information",
            outcome=Outcome.LOOP_DETECTED,
            message=(
                "I'm sorry — I kept repeating the same step without making progress, so I've "
                "stopped rather than keep you waiting. Please rephrase your request or ask a "
                "person to follow up."
            ),
        )
