"""The model step of a run: ``before_model``, the model chain (primary, then fallbacks), pricing,
``after_model``; each attempt one chat span.

``ModelChain`` is a plain list of ``Model`` objects tried in order. Fallback is its behaviour,
not a control's: a circuit breaker wraps each model of the chain (a ``Model`` that refuses at
once while its circuit is open), and the chain moves on to the next.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from tether.controls import Decision, Hook, LimitReached, Verdict
from tether.controls.budgets import EVENT_BUDGET_SETTLED
from tether.controls.limits import budget_check, unreported_worst_case
from tether.controls.pipeline import ALLOW, GUARD_CATEGORIES
from tether.core import ProviderError, TetherError, describe_exception, scrub_surrogates
from tether.core.jsontext import compact_json_encoder
from tether.providers import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    call_events_to,
    response_events,
    stream_of,
)
from tether.providers.streaming import event_problem
from tether.providers.types import response_problem
from tether.runtime.steps import Stop
from tether.runtime.telemetry import clip, input_messages, output_messages
from tether.store import SpanRecord
from tether.trace import semconv
from tether.trace.pricing import round_cost

if TYPE_CHECKING:
    from tether.runtime.scope import RunScope
    from tether.trace import PricingTable

# Enum members read once (see ``tether.controls.pipeline``: slow on Python 3.11).
_BEFORE_MODEL, _AFTER_MODEL, _RESPOND = Hook.BEFORE_MODEL, Hook.AFTER_MODEL, Verdict.RESPOND

StreamHandler: TypeAlias = Callable[[StreamEvent], "Awaitable[None] | None"]
"""What a streamed model call hands each event to as it arrives (a function or a coroutine
function): ``TextDelta`` and ``ToolCallDelta`` pieces, ``UsageUpdate``, ``StreamEnd`` last."""


class ModelChain:
    """The models a model call tries, in order: the primary, then each fallback on failure."""

    __slots__ = ("models",)

    def __init__(self, models: Model | Sequence[Model] = ()) -> None:
        self.models: list[Model] = [models] if isinstance(models, Model) else list(models)

    @property
    def primary(self) -> Model | None:
        return self.models[0] if self.models else None

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)


# Built once (json.dumps with options builds an encoder per call); lone surrogates stay as
# they are in its text, which is what the check below looks for.
_json_text = compact_json_encoder(ensure_ascii=False)


def _scrubbed(response: ModelResponse) -> ModelResponse:
    """A provider's reply without lone surrogates (they cannot be stored, hashed or
    checkpointed): in its text, its tool calls' arguments, names and ids (a name with one
    crashed the run where the unknown tool's error was hashed), and what names the reply."""
    rid = response.response_id
    if (
        not response.tool_calls
        and response.content.isascii()
        and response.model.isascii()
        and response.finish_reason.isascii()
        and (rid is None or rid.isascii())
    ):  # the usual reply: ASCII holds no surrogate
        return response
    content = scrub_surrogates(response.content)
    calls = response.tool_calls
    if calls:
        raw = _json_text([[c.id, c.name, c.arguments] for c in calls])
        if scrub_surrogates(raw) is not raw:
            calls = [
                c.model_copy(
                    update={
                        "id": scrub_surrogates(c.id),
                        "name": scrub_surrogates(c.name),
                        "arguments": json.loads(
                            scrub_surrogates(json.dumps(c.arguments, ensure_ascii=False))
                        ),
                    }
                )
                for c in calls
            ]
    names = {
        key: scrub_surrogates(value)
        for key in ("model", "finish_reason", "response_id")
        if isinstance(value := getattr(response, key), str)
    }
    names = {key: value for key, value in names.items() if value is not getattr(response, key)}
    if content is response.content and calls is response.tool_calls and not names:
        return response
    return response.model_copy(update={"content": content, "tool_calls": calls, **names})


def error_attributes(exc: ProviderError, message: str | None = None) -> dict[str, Any]:
    """A provider failure as event attributes (``message``: its text as the trace keeps it,
    masked; by default the error's own)."""
    text = exc.message if message is None else message
    attributes: dict[str, Any] = {"message": clip(text), "retryable": exc.retryable}
    if exc.hint:
        attributes["hint"] = exc.hint
    if exc.status_code is not None:
        attributes["status_code"] = exc.status_code
    return attributes


async def model_step(
    scope: RunScope, request: ModelRequest, on_event: StreamHandler | None = None
) -> ModelResponse:
    """One model call: ``before_model``, the chain, accounting, ``after_model``. Raises ``Stop``
    for a stopping decision and ``ProviderError`` when every model failed.

    With ``on_event`` the reply is streamed to it as it comes. A model that fails before it
    has streamed any text or tool call falls back to the next; one that fails midway ends the
    call (the caller has shown part of that reply): its span keeps the partial reply and the
    usage known so far, which the run is charged for."""
    chain = scope.harness.chain
    primary = chain.primary
    if primary is None:
        raise TetherError("this run scope has no model: pass models=[...] to its Harness")
    state = scope.state
    decision = ALLOW
    if scope.pipeline.asks(_BEFORE_MODEL):
        price = scope.harness.pricing.price_for(primary.name)
        ctx = scope.hook_context(
            _BEFORE_MODEL,
            scope.run_id,
            input_usd_per_mtok=None if price is None else price.input,
        )
        decision, request = await scope.pipeline.check(ctx, request)
        if decision.stops:
            raise Stop(decision)
    budget = scope.harness.budget
    if budget is None:
        return await _chain_call(scope, request, decision, on_event)
    # What the call is charged, whatever becomes of it, settles its budget reservation.
    before = (state.usage.total_tokens, state.cost_usd, state.unpriced_calls)
    try:
        return await _chain_call(scope, request, decision, on_event)
    finally:
        unpriced = state.unpriced_calls > before[2]
        tokens = state.usage.total_tokens - before[0]
        attributes = await budget.settle(
            scope.run_id,
            # No tokens from a call whose cost is unknown: its usage went unreported (or it
            # really used none); the reserved worst case is charged, never nothing.
            tokens=None if unpriced and not tokens else tokens,
            usd=None if unpriced else max(0.0, state.cost_usd - before[1]),
        )
        if attributes:
            scope.recorder.event(scope.run_id, EVENT_BUDGET_SETTLED, attributes)


async def _chain_call(
    scope: RunScope, request: ModelRequest, decision: Decision, on_event: StreamHandler | None
) -> ModelResponse:
    """The call itself, once ``before_model`` let it through: the chain (or the answer a
    control gave in its place), accounting and ``after_model``."""
    chain, state = scope.harness.chain, scope.state
    primary = chain.primary
    assert primary is not None
    state.turns += 1
    sent = input_messages(request.messages, scope.message_cache) if scope.tracing else ("", 0)
    if decision.verdict is _RESPOND:
        span = _chat_span(scope, primary, request, sent, attempt=0)
        span.attributes[semconv.TETHER_RESPONDED_BY] = decision.control
        if on_event is not None:
            for event in response_events(decision.value, pieces=True):
                await _deliver(on_event, event)
        return await _settle(scope, span, primary, request, decision.value, priced=False)
    errors: list[ProviderError] = []
    for attempt, model in enumerate(chain):
        if attempt:
            scope.recorder.event(
                scope.run_id,
                semconv.EVENT_MODEL_FALLBACK,
                {
                    "from": chain.models[attempt - 1].name,
                    "to": model.name,
                    "reason": clip(scope.stored_error(str(errors[-1]))),
                },
            )
        span = _chat_span(scope, model, request, sent, attempt)
        streamed = StreamAccumulator(model=model.name) if on_event is not None else None
        try:
            response = await _call(scope, span, model, request, streamed, on_event)
        except ProviderError as exc:
            # A provider's error text may quote the request (a prompt, an argument): the
            # trace keeps it masked as the run's masking guards mask stored text.
            said = scope.stored_error(exc.message)
            if streamed is not None and (streamed.text or streamed.tool_calls()):
                _charge_partial(scope, span, model, request, streamed)
                scope.recorder.event(
                    span.span_id, semconv.EVENT_MODEL_ERROR, error_attributes(exc, said)
                )
                span.attributes[semconv.ERROR_TYPE] = type(exc).__name__
                scope.recorder.end_span(span, error=clip(f"stream cut off: {said}"))
                raise ProviderError(
                    f"the reply stream broke off midway: {exc.message}",
                    hint=exc.hint,
                    status_code=exc.status_code,
                    retryable=exc.retryable,
                ) from exc
            errors.append(exc)
            if streamed is not None and streamed.usage_known:
                # Nothing shown, so the chain falls back; but the provider said what the call
                # used (a usage chunk, then a cut): the run is charged it all the same.
                _account(scope, span, model, request, streamed.response())
            span.attributes[semconv.ERROR_TYPE] = type(exc).__name__
            scope.recorder.event(
                span.span_id, semconv.EVENT_MODEL_ERROR, error_attributes(exc, said)
            )
            scope.recorder.end_span(span, error=clip(said))
            continue
        except BaseException as exc:
            if streamed is not None and streamed.events:
                _charge_partial(scope, span, model, request, streamed)
            # (a model integration's bug, a cancelled task): its text may quote the request
            scope.recorder.end_span(span, error=clip(scope.stored_error(describe_exception(exc))))
            raise
        return await _settle(scope, span, model, request, response, priced=True)
    last_error = errors[-1]
    if len(chain) > 1:
        raise ProviderError(
            f"all {len(chain)} models failed; last error: {last_error.message}",
            hint=last_error.hint,
            status_code=last_error.status_code,
            # Worth trying again later if any of the models failed only for now.
            retryable=any(e.retryable for e in errors),
        ) from last_error
    raise last_error


async def control_model_call(
    scope: RunScope,
    model: Model,
    request: ModelRequest,
    *,
    parent_id: str | None,
    control: str,
    shown: Sequence[Message] | None = None,
) -> ModelResponse:
    """A model call a control makes on the run's behalf (``HookContext.call_model``: an LLM
    judge's): refused with ``LimitReached`` when the run's token or cost limit leaves no room
    for it; else one chat span under ``parent_id`` naming the control, priced, its usage and
    cost added to the run's totals. It is not a turn, and passes no hook (a judge's own call
    is not judged)."""
    price = scope.harness.pricing.price_for(model.name)
    ctx = scope.hook_context(Hook.BEFORE_MODEL, parent_id)
    stop = budget_check(ctx, request, None if price is None else price.input)
    if stop is not None:
        raise LimitReached(stop)
    span = scope.recorder.start_span(
        f"{semconv.OP_CHAT} {model.name}",
        "model",
        parent_id or scope.run_id,
        {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_CHAT,
            semconv.GEN_AI_PROVIDER_NAME: model.provider,
            semconv.GEN_AI_REQUEST_MODEL: model.name,
            semconv.TETHER_CALLED_BY: control,
        },
    )
    if scope.tracing:  # what the guards' decisions may quote, as the trace keeps it
        stored = [
            m.model_copy(update={"content": scope.stored_text(m.content)})
            for m in (request.messages if shown is None else shown)
        ]
        span.attributes[semconv.GEN_AI_INPUT_MESSAGES] = input_messages(stored)[0]
    try:
        with call_events_to(
            lambda name, attributes: scope.recorder.event(span.span_id, name, attributes),
            _spent_sink(scope, span, model, request),
        ):
            reply = await model.complete(request)
        response = _scrubbed(_usable(model, reply))
    except BaseException as exc:
        # A provider's error may quote the request (the text judged): stored masked.
        said = scope.stored_error(describe_exception(exc))
        scope.recorder.end_span(span, error=clip(said) or type(exc).__name__)
        raise
    _account(scope, span, model, request, response)
    if scope.tracing:
        span.attributes[semconv.GEN_AI_RESPONSE_MODEL] = response.model or model.name
        span.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [response.finish_reason]
        kept = response.model_copy(update={"content": scope.stored_text(response.content)})
        span.attributes[semconv.GEN_AI_OUTPUT_MESSAGES] = output_messages(kept)
    scope.recorder.end_span(span)
    return response


async def _call(
    scope: RunScope,
    span: SpanRecord,
    model: Model,
    request: ModelRequest,
    streamed: StreamAccumulator | None,
    on_event: StreamHandler | None,
) -> ModelResponse:
    """One attempt; events the model reports meanwhile (a circuit breaker's transitions) go on
    its chat span."""

    def on_span(name: str, attributes: dict[str, Any]) -> None:
        scope.recorder.event(span.span_id, name, attributes)

    with call_events_to(on_span, _spent_sink(scope, span, model, request)):
        if streamed is None or on_event is None:
            response = await model.complete(request)
        else:
            response = await _stream(model, request, streamed, on_event)
    return _usable(model, response)


def _usable(model: Model, response: ModelResponse) -> ModelResponse:
    """``response``, if a run can go on with it; else the model failed (``ProviderError``:
    the chain falls back, the run says which model and why). A model integration's own
    ``complete`` builds its reply unchecked (see ``response_problem``)."""
    problem = response_problem(response)
    if problem is not None:
        raise ProviderError(
            f"model {model.name!r} returned a reply Tether cannot use: the reply {problem}",
            hint="fix the model integration's complete() (or stream())",
        )
    return response


async def _deliver(on_event: StreamHandler, event: StreamEvent) -> None:
    result = on_event(event)
    if inspect.isawaitable(result):
        await result


async def _stream(
    model: Model, request: ModelRequest, streamed: StreamAccumulator, on_event: StreamHandler
) -> ModelResponse:
    events = stream_of(model, request)
    try:
        async for event in events:
            problem = event_problem(event)
            if problem is not None:
                raise ProviderError(
                    f"model {model.name!r}: its reply stream sent {problem}",
                    hint="fix the model integration's stream()",
                )
            streamed.add(event)
            await _deliver(on_event, event)
            if isinstance(event, StreamEnd):
                return event.response
    finally:  # a stream left early releases its connection now, not at garbage collection
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
    raise ProviderError(f"model {model.name!r}: the reply stream ended without its end event")


def _charge_partial(
    scope: RunScope,
    span: SpanRecord,
    model: Model,
    request: ModelRequest,
    streamed: StreamAccumulator,
) -> None:
    """A reply cut off midway: the run is charged the usage known so far, and the span keeps
    what arrived (``finish_reason`` ``incomplete``)."""
    partial = streamed.response()
    _account(scope, span, model, request, partial)
    if scope.tracing:  # no control has judged it: stored as the guards would store it
        span.attributes[semconv.GEN_AI_OUTPUT_MESSAGES] = output_messages(
            stored_reply(scope, partial)
        )


def _spent_sink(
    scope: RunScope, span: SpanRecord, model: Model, request: ModelRequest
) -> Callable[[ModelResponse, dict[str, Any]], None]:
    """Where a call's failed attempts report what they received (``report_spent``): the run
    is charged it, and the call's span gets a ``tether.model.attempt_failed`` event with the
    attempt's usage and cost (its own usage attributes stay the answering attempt's)."""

    def spent(partial: ModelResponse, attributes: dict[str, Any]) -> None:
        if response_problem(partial) is not None:
            return  # a model integration's malformed report: nothing to charge
        cost = _charge(scope, model, request, partial)
        usage = partial.usage
        recorded: dict[str, Any] = {
            "attempt": attributes.get("attempt"),
            "message": clip(scope.stored_error(str(attributes.get("message", "")))),
        }
        if partial.usage_known:
            recorded[semconv.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
            recorded[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        else:
            recorded[semconv.TETHER_USAGE_UNKNOWN] = True
        if cost is not None:
            recorded[semconv.TETHER_COST_USD] = cost
        scope.recorder.event(span.span_id, semconv.EVENT_MODEL_ATTEMPT_FAILED, recorded)

    return spent


def _charge(
    scope: RunScope, model: Model, request: ModelRequest, response: ModelResponse
) -> float | None:
    """Add a reply's usage and cost to the run's totals; its cost, ``None`` when unknown.
    Price what the provider says it ran; an unpriced name (a fine-tune, an alias) falls back
    to the requested model, which a cost limit has already checked is priced. A reply whose
    usage went unreported counts against the run's limits at its worst case
    (``unreported_worst_case``), as budgets charge it: its cost stays unknown in the run's
    totals."""
    state, usage = scope.state, response.usage
    state.usage = state.usage + usage
    pricing = scope.harness.pricing
    if not response.usage_known:  # zeros that are no count: the call's cost is unknown
        state.unpriced_calls += 1
        worst = unreported_worst_case(request, scope.harness.max_output_tokens)
        state.unreported_tokens += worst[0] + worst[1]
        worst_usd = _priced(pricing, response, model, worst)
        if worst_usd is not None:
            state.unreported_usd = round_cost(state.unreported_usd + worst_usd)
        return None
    tokens = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
    cost = _priced(pricing, response, model, tokens)
    if cost is not None:
        state.cost_usd = round_cost(state.cost_usd + cost)
    else:  # unknown, not free
        state.unpriced_calls += 1
    return cost


def _account(
    scope: RunScope,
    span: SpanRecord,
    model: Model,
    request: ModelRequest,
    response: ModelResponse,
) -> None:
    """Add a reply's usage and cost to the run (``_charge``) and its span."""
    cost = _charge(scope, model, request, response)
    usage, a = response.usage, span.attributes
    if not response.usage_known:
        a[semconv.TETHER_COST_UNPRICED] = True
        a[semconv.TETHER_USAGE_UNKNOWN] = True
        return
    if cost is not None:
        a[semconv.TETHER_COST_USD] = cost
        a[semconv.TETHER_PRICING_VERSION] = scope.harness.pricing.version
    else:  # unknown, not free
        a[semconv.TETHER_COST_UNPRICED] = True
    if scope.tracing:
        a[semconv.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        a[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cached_input_tokens:
            a[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_input_tokens


def _priced(
    pricing: PricingTable, response: ModelResponse, model: Model, tokens: tuple[int, ...]
) -> float | None:
    """The cost of ``tokens`` (input, output, cached input) at the price of the model the
    reply names, else of the model asked; ``None`` when neither is priced."""
    cost = pricing.cost(response.model or model.name, *tokens)
    return pricing.cost(model.name, *tokens) if cost is None else cost


def _chat_span(
    scope: RunScope, model: Model, request: ModelRequest, sent: tuple[Any, int], attempt: int
) -> SpanRecord:
    if not scope.tracing:  # an id to hang decisions and child spans on; nothing to show
        return scope.recorder.start_span("", "model", scope.run_id, {})
    span = scope.recorder.start_span(
        f"{semconv.OP_CHAT} {model.name}",
        "model",
        scope.run_id,
        {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_CHAT,
            semconv.GEN_AI_PROVIDER_NAME: model.provider,
            semconv.GEN_AI_REQUEST_MODEL: model.name,
            semconv.TETHER_TURN: scope.state.turns,
            semconv.TETHER_MODEL_ATTEMPT: attempt,
        },
    )
    a = span.attributes
    # A model served over the network says where (``OpenAIChatModel.server``): a fallback to
    # the same model name on another server is then told apart.
    server: tuple[str, int] | None = getattr(model, "server", None)
    if server is not None:
        a[semconv.SERVER_ADDRESS], a[semconv.SERVER_PORT] = server
    messages, omitted = sent
    a[semconv.GEN_AI_INPUT_MESSAGES] = messages
    if omitted:
        a[semconv.TETHER_INPUT_MESSAGES_OMITTED] = omitted
    s = request.settings
    for key, value in (
        (semconv.GEN_AI_REQUEST_TEMPERATURE, s.temperature),
        (semconv.GEN_AI_REQUEST_SEED, s.seed),
        (semconv.GEN_AI_REQUEST_MAX_TOKENS, s.max_tokens),
    ):
        if value is not None:
            a[key] = value
    return span


async def _settle(
    scope: RunScope,
    span: SpanRecord,
    model: Model,
    request: ModelRequest,
    response: ModelResponse,
    *,
    priced: bool,
) -> ModelResponse:
    """Account for a reply (usage, cost), pass ``after_model``, and record the reply on its
    span as the run goes on with it: masked where a guard masked it, a marker in its place
    where a control stopped the run at it (never the text it stopped). A reply a control gave
    in place of the call (``priced=False``) cost nothing."""
    response = _scrubbed(response)
    a = span.attributes
    if priced:
        _account(scope, span, model, request, response)
    else:
        scope.state.usage = scope.state.usage + response.usage
        a[semconv.TETHER_COST_USD] = 0.0
    if scope.tracing:
        a[semconv.GEN_AI_RESPONSE_MODEL] = response.model or model.name
        a[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [response.finish_reason]
        if response.response_id:
            a[semconv.GEN_AI_RESPONSE_ID] = response.response_id
    decision, checked = ALLOW, response
    if scope.pipeline.asks(_AFTER_MODEL):
        ctx = scope.hook_context(_AFTER_MODEL, span.span_id)
        try:
            decision, checked = await scope.pipeline.check(ctx, response)
        except BaseException:  # cancelled while judged: kept as the guards would store it
            if scope.tracing:
                a[semconv.GEN_AI_OUTPUT_MESSAGES] = output_messages(stored_reply(scope, response))
            scope.recorder.end_span(span)
            raise
    if scope.tracing:
        kept = withheld(checked, decision) if decision.stops else checked
        a[semconv.GEN_AI_OUTPUT_MESSAGES] = output_messages(kept)
    if decision.stops:
        scope.recorder.end_span(span)
        raise Stop(decision)
    assert isinstance(checked, ModelResponse)
    if scope.tracing and not checked.tool_calls and scope.harness.guards_answers:
        scope.hold_reply(span, checked)  # until on_output has judged it, if it is the answer
    else:
        scope.recorder.end_span(span)
    return checked


def withheld(response: ModelResponse, decision: Decision) -> ModelResponse:
    """What a span keeps of a reply a control stopped the run at: a marker naming the control
    and what it found (a guard's categories), in place of the text and the tool calls."""
    found = (decision.details or {}).get(GUARD_CATEGORIES) or ()
    what = f": {', '.join(str(c) for c in found)}" if found else ""
    marker = f"[reply withheld by {decision.control} ({decision.verdict.value}){what}]"
    return ModelResponse(
        content=marker,
        usage=response.usage,
        model=response.model,
        finish_reason=response.finish_reason,
        response_id=response.response_id,
    )


def stored_reply(scope: RunScope, response: ModelResponse) -> ModelResponse:
    """A reply no control has judged (a stream cut midway, a step cancelled while judged) as
    the trace stores it: its text and tool-call arguments masked as the guards of ``output``
    and ``tool_args`` mask them."""
    harness = scope.harness
    redact_text, redact_args = harness.redact_output, harness.redact_arguments
    update: dict[str, Any] = {}
    try:
        if redact_text is not None:
            update["content"] = redact_text(response.content)
        if redact_args is not None and response.tool_calls:
            update["tool_calls"] = [
                c.model_copy(update={"arguments": dict(redact_args(c.arguments))})
                for c in response.tool_calls
            ]
    except Exception as exc:  # not the raw reply: it is what the guards exist to keep out
        note = f"[reply not stored: masking it failed: {describe_exception(exc)}]"
        return ModelResponse(content=note, finish_reason=response.finish_reason)
    return response.model_copy(update=update) if update else response
