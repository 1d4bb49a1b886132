"""OTLP spans onto Tether's records: the OpenTelemetry GenAI conventions (``gen_ai.*``) and
OpenInference's attributes (``openinference.span.kind``, ``llm.*``, ``input.value``, ...)
become the same span attributes the runtime writes, so an application that never calls
Tether's runtime is shown and costed the same way.

Pure functions over decoded protobuf messages. A span is mapped straight to the values the
store keeps (its attributes serialized once, as compact JSON), with no record objects in
between: this is the hot path of ``POST /v1/traces``. The store work is in
``tether.server.otlp_store``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tether.core.jsontext import json_text
from tether.store.values import EVENT_NAME, SPAN_NAME, clean_text, column_text, fit
from tether.trace import semconv
from tether.trace.pricing import PricingTable

MAX_ATTRIBUTE_DEPTH = 8
"""Nested arrays/maps deeper than this are cut (a hostile payload cannot recurse forever)."""

AGENT_OPS = frozenset({"invoke_agent", "create_agent"})
MODEL_OPS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
TOOL_OPS = frozenset({semconv.OP_EXECUTE_TOOL})
OPENINFERENCE_KINDS = {
    "AGENT": "agent",
    "CHAIN": "agent",
    "LLM": "model",
    "EMBEDDING": "model",
    "TOOL": "tool",
    "RETRIEVER": "tool",
    "RERANKER": "tool",
    "GUARDRAIL": "control",
    "EVALUATOR": "control",
}
"""``openinference.span.kind`` values by Tether span kind."""

_OPENINFERENCE_PREFIXES = ("llm.", "input.", "output.", "tool.", "agent.", "openinference.")
"""Where OpenInference's attributes start: a span with none of them skips that mapping."""
_OPENINFERENCE_FIRST = frozenset(p[0] for p in _OPENINFERENCE_PREFIXES)
"""Their first letters: most keys (``gen_ai.*``, ``service.*``) are told apart by the first
character alone, far cheaper than ``startswith`` over six prefixes on every key."""
_OI_MESSAGE = re.compile(r"llm\.(input|output)_messages\.(\d+)\.message\.(.+)")
_ERROR = Status.STATUS_CODE_ERROR


class InvalidSpan(ValueError):
    """A span that cannot be stored, with the reason (counted in ``rejected_spans``)."""


@dataclass(slots=True)
class MappedSpan:
    """One OTLP span as the store keeps it, before its run is known (``run_id`` empty)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    """As stored: clipped to the column, NUL and lone surrogates replaced."""
    kind: str
    start_ns: int
    end_ns: int
    failed: bool
    status_message: str | None
    attributes: dict[str, Any]
    attributes_json: str
    events: tuple[tuple[str, int, str], ...] = ()
    """The span's own events: (name as stored, time, attributes as JSON)."""
    run_input: str | None = None
    """For a root span: what the run was asked (``input.value`` or the first user message)."""
    run_output: str | None = None
    """For a root span: what it answered."""
    run_id: str = ""
    messages: dict[str, Any] | None = None
    """For a model span: its GenAI messages as data (``gen_ai.input.messages`` ... by name),
    what its run's input and output are read from when the root span carries none."""

    def row(self, run_seq: int | None) -> tuple[Any, ...]:
        """The span's row of ``tether_spans``, in column order (``run_seq``: its run's)."""
        return (
            self.span_id,
            self.run_id,
            self.trace_id,
            self.parent_id,
            self.name,
            self.kind,
            self.start_ns,
            self.end_ns,
            "error" if self.failed else "ok",
            self.status_message,
            self.attributes_json,
            run_seq,
        )


def any_value(value: AnyValue, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` as plain Python (bytes as hex)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which is None:
        return None
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which in ("double_value", "bool_value"):
        return getattr(value, which)
    if depth >= MAX_ATTRIBUTE_DEPTH:
        return "…"
    if which == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}


def attributes_of(pairs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue``s as a dict."""
    out: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        # A non-empty string or a non-zero integer (most attributes) is read without asking
        # which value is set.
        found = value.string_value or value.int_value
        out[kv.key] = found if found else any_value(value)
    return out


def _json_or_text(value: Any) -> tuple[Any, Any]:
    """OTLP carries structured GenAI values as JSON strings; the store keeps them as data.
    (What the attributes hold: for valid JSON the text itself, written into the stored JSON
    as it is, without building and serializing it again; and the value as data.)"""
    if not isinstance(value, str):
        return value, value
    try:
        return orjson.Fragment(value), orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses and the standard library reads (NaN, lone surrogates)
        data = json.loads(value)
    except (ValueError, RecursionError):
        return value, value
    return data, data


def attributes_json(a: dict[str, Any], data: dict[str, Any]) -> str:
    """The attributes as the store keeps them (``tether.store.dumps_attributes``), with the
    JSON texts ``_normalize`` left in them; ``data`` holds those values as data, for what
    orjson cannot write (the standard library's path of ``json_text`` then)."""
    try:
        # Keys are text (OTLP's keys are strings): no OPT_NON_STR_KEYS, which costs a
        # quarter of the encoding.
        return orjson.dumps(a, default=str).decode()
    except orjson.JSONEncodeError:
        return json_text({k: data.get(k, v) for k, v in a.items()})


_KIND_BY_OPERATION = {
    **dict.fromkeys(AGENT_OPS, "agent"),
    **dict.fromkeys(MODEL_OPS, "model"),
    **dict.fromkeys(TOOL_OPS, "tool"),
}


def _span_kind(a: dict[str, Any]) -> str:
    op = a.get(semconv.GEN_AI_OPERATION_NAME)
    # Any OTLP value may come: an array or a map is not an operation (nor hashable).
    if isinstance(op, str) and (kind := _KIND_BY_OPERATION.get(op)) is not None:
        return kind
    oi = a.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[oi.upper()]
    # Any other span (an HTTP call, a database query) is a step of the application's own code.
    return "agent"


def _text_messages(items: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _, m in sorted(items.items()):
        parts: list[dict[str, Any]] = []
        if m.get("content") is not None:
            parts.append({"type": "text", "content": str(m["content"])})
        for call in m.get("tool_calls", []):
            parts.append({"type": "tool_call", **call})
        out.append({"role": str(m.get("role", "user")), "parts": parts})
    return out


def _openinference_messages(a: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``llm.input_messages.N.message.role/content`` (flattened) as GenAI message lists; the
    flattened keys are removed from ``a``."""
    found: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    for key in [k for k in a if k.startswith("llm.") and "_messages." in k]:
        m = _OI_MESSAGE.fullmatch(key)
        if m is None:
            continue
        side, index, rest = m.group(1), int(m.group(2)), m.group(3)
        value = a.pop(key)
        message = found[side].setdefault(index, {})
        if rest in ("role", "content"):
            message[rest] = value
        elif rest.startswith("tool_calls."):
            # tool_calls.K.tool_call.function.name / .arguments / .id
            bits = rest.split(".")
            if len(bits) >= 4 and bits[1].isdigit():
                calls: list[dict[str, Any]] = message.setdefault("tool_calls", [])
                k = int(bits[1])
                while len(calls) <= k:
                    calls.append({})
                leaf = bits[-1]
                calls[k]["id" if leaf == "id" else leaf] = value
    return {side: _text_messages(items) for side, items in found.items() if items}


def _first_text(messages: Any, role: str | None) -> str | None:
    if not isinstance(messages, list):
        return None
    for m in messages:
        if not isinstance(m, dict) or (role is not None and m.get("role") != role):
            continue
        for part in m.get("parts") or []:
            if isinstance(part, dict) and part.get("content") is not None:
                return str(part["content"])
    return None


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float | str):
        try:
            return max(int(float(value)), 0)
        except (ValueError, OverflowError):
            return 0
    return 0


def _openinference(a: dict[str, Any], kind: str) -> None:
    """Put OpenInference's attributes under the GenAI names Tether reads (kept as given too)."""
    g = semconv
    oi_in, oi_out = a.get("input.value"), a.get("output.value")
    if "llm.model_name" in a:
        a.setdefault(g.GEN_AI_REQUEST_MODEL, a["llm.model_name"])
        a.setdefault(g.GEN_AI_RESPONSE_MODEL, a["llm.model_name"])
    if "llm.provider" in a:
        a.setdefault(g.GEN_AI_PROVIDER_NAME, a["llm.provider"])
    for oi, gen in (
        ("llm.token_count.prompt", g.GEN_AI_USAGE_INPUT_TOKENS),
        ("llm.token_count.completion", g.GEN_AI_USAGE_OUTPUT_TOKENS),
        ("llm.token_count.prompt_details.cache_read", g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ):
        if oi in a:
            a.setdefault(gen, a[oi])
    if "tool.name" in a:
        a.setdefault(g.GEN_AI_TOOL_NAME, a["tool.name"])
    for side, messages in _openinference_messages(a).items():
        a.setdefault(
            g.GEN_AI_INPUT_MESSAGES if side == "input" else g.GEN_AI_OUTPUT_MESSAGES, messages
        )
    if kind == "tool":
        if oi_in is not None:
            a.setdefault(g.GEN_AI_TOOL_CALL_ARGUMENTS, oi_in)
        if oi_out is not None:
            a.setdefault(g.GEN_AI_TOOL_CALL_RESULT, oi_out)
    if kind == "agent" and "agent.name" in a:
        a.setdefault(g.GEN_AI_AGENT_NAME, a["agent.name"])
    if kind == "model" and oi_in is not None and g.GEN_AI_INPUT_MESSAGES not in a:
        a[g.GEN_AI_INPUT_MESSAGES] = [
            {"role": "user", "parts": [{"type": "text", "content": str(oi_in)}]}
        ]
    if kind == "model" and oi_out is not None and g.GEN_AI_OUTPUT_MESSAGES not in a:
        a[g.GEN_AI_OUTPUT_MESSAGES] = [
            {"role": "assistant", "parts": [{"type": "text", "content": str(oi_out)}]}
        ]


_STRUCTURED = (
    semconv.GEN_AI_INPUT_MESSAGES,
    semconv.GEN_AI_OUTPUT_MESSAGES,
    semconv.GEN_AI_SYSTEM_INSTRUCTIONS,
)
_TOKENS = (
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
)


class _TooManyTokens(Exception):
    """A token count over ``MAX_TOKENS`` (its attribute's name): the span is rejected."""


def _normalize(a: dict[str, Any], kind: str, openinference: bool) -> dict[str, Any]:
    """The GenAI attributes Tether reads, from OpenInference's too (``openinference``: whether
    ``a`` holds any of theirs, noted as they were read): messages as JSON (see
    ``_json_or_text``), token counts as non-negative integers (``_TooManyTokens`` past
    ``MAX_TOKENS``). Returns the messages as data."""
    if openinference:
        _openinference(a, kind)
    data: dict[str, Any] = {}
    for key in _STRUCTURED:
        if key in a:
            a[key], data[key] = _json_or_text(a[key])
    for key in _TOKENS:
        if key in a:
            value = a[key]
            if type(value) is not int or value < 0:
                a[key] = value = _int(value)
            if value > MAX_TOKENS:
                raise _TooManyTokens(key)
    return data


def run_texts(a: dict[str, Any], data: dict[str, Any]) -> tuple[str | None, str | None]:
    """A root span's input and output text: OpenInference's values, or the first user message
    and the first reply (``data``: the messages as data)."""
    return run_input(a, data), run_output(a, data)


def run_input(a: dict[str, Any], data: dict[str, Any]) -> str | None:
    """``run_texts``' input alone."""
    text = a.get("input.value")
    if text is None:
        text = _first_text(data.get(semconv.GEN_AI_INPUT_MESSAGES), "user")
    return None if text is None else str(text)


def run_output(a: dict[str, Any], data: dict[str, Any]) -> str | None:
    """``run_texts``' output alone."""
    text = a.get("output.value")
    if text is None:
        text = _first_text(data.get(semconv.GEN_AI_OUTPUT_MESSAGES), None)
    return None if text is None else str(text)


def price(a: dict[str, Any], pricing: PricingTable) -> float | None:
    """Price a model span (its attributes normalized by ``_normalize``) as the runtime does
    (response model first, then the requested one); the cost goes on the span, or
    ``tether.cost.unpriced`` when the table lacks the model. Returns the cost (None:
    unpriced)."""
    tokens = (  # made non-negative integers by ``_normalize``
        a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS) or 0,
        a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS) or 0,
        a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) or 0,
    )
    cost = None
    for key in (semconv.GEN_AI_RESPONSE_MODEL, semconv.GEN_AI_REQUEST_MODEL):
        model = a.get(key)
        if isinstance(model, str) and model:
            cost = pricing.cost(model, *tokens)
            if cost is not None:
                break
    if cost is None:
        a[semconv.TETHER_COST_UNPRICED] = True
        return None
    a[semconv.TETHER_COST_USD] = cost
    a[semconv.TETHER_PRICING_VERSION] = pricing.version
    return cost


_ZERO_8, _ZERO_16 = bytes(8), bytes(16)


MAX_TOKENS = 10**12
"""The most tokens one span may count (each of input, output, cached): far above any model
call, and low enough that a run's totals, sums over its spans in signed 64-bit columns, do
not overflow (a count of 1e300 failed the whole request's write)."""
MAX_TIME_NS = 2**63 - 1
"""The latest time the store's signed 64-bit columns hold (OTLP's are unsigned: a time past
this is rejected with its span, not a failed write of the whole request)."""


def _late(span_id: str, what: str) -> InvalidSpan:
    return InvalidSpan(f"span {span_id}: {what} is out of range (after the year 2262)")


def _bad_id(what: str, size: int, raw: bytes) -> InvalidSpan:
    return InvalidSpan(f"{what} must be {size} bytes and not all zero (got {len(raw)} bytes)")


def map_span(span: Span, service: str | None, pricing: PricingTable) -> MappedSpan:
    """One OTLP span as the store keeps it (``run_id`` left empty) with its events;
    ``InvalidSpan`` says why it cannot be stored. ``service``: its resource's
    ``service.name``."""
    # The id checks written out: this runs for every span, and a call per id costs more
    # than the check.
    raw = span.trace_id
    if len(raw) != 16 or raw == _ZERO_16:
        raise _bad_id("traceId", 16, raw)
    trace_id = raw.hex()
    raw = span.span_id
    if len(raw) != 8 or raw == _ZERO_8:
        raise _bad_id("spanId", 8, raw)
    span_id = raw.hex()
    raw = span.parent_span_id
    parent_id = None
    if raw:
        if len(raw) != 8 or raw == _ZERO_8:
            raise _bad_id("parentSpanId", 8, raw)
        parent_id = raw.hex()
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start <= 0:
        raise InvalidSpan(f"span {span_id}: startTimeUnixNano is missing")
    if end and end < start:
        raise InvalidSpan(f"span {span_id}: endTimeUnixNano is before startTimeUnixNano")
    if end > MAX_TIME_NS or start > MAX_TIME_NS:
        raise _late(span_id, "endTimeUnixNano" if start <= MAX_TIME_NS else "startTimeUnixNano")
    name = span.name
    if not name:
        raise InvalidSpan(f"span {span_id}: name is empty")
    # ``attributes_of``, written out and noting OpenInference's keys as it goes: one pass
    # over the attributes, and no call, for every span.
    a: dict[str, Any] = {}
    openinference = False
    first = _OPENINFERENCE_FIRST
    for kv in span.attributes:
        value = kv.value
        found = value.string_value or value.int_value
        key = kv.key
        a[key] = found if found else any_value(value)
        if key[:1] in first and not openinference:
            openinference = key.startswith(_OPENINFERENCE_PREFIXES)
    op = a.get(semconv.GEN_AI_OPERATION_NAME)
    kind = _KIND_BY_OPERATION.get(op) if type(op) is str else None
    if kind is None:
        kind = _span_kind(a)
    try:
        data = _normalize(a, kind, openinference)
    except _TooManyTokens as exc:
        raise InvalidSpan(
            f"span {span_id}: {exc} is out of range (at most {MAX_TOKENS:,} a span)"
        ) from None
    if service:
        a.setdefault("service.name", service)
    if kind == "model":
        price(a, pricing)
    a[semconv.TETHER_ENTRY_POINT] = "otlp"
    failed, message = False, ""
    if span.HasField("status"):  # most spans have none: no message object made for them
        status = span.status
        failed, message = status.code == _ERROR, status.message
    if failed and semconv.ERROR_TYPE not in a:
        a[semconv.ERROR_TYPE] = "error"
    try:  # ``attributes_json``, its usual path written out (it runs for every span)
        stored = orjson.dumps(a, default=str).decode()
    except orjson.JSONEncodeError:
        stored = attributes_json(a, data)
    mapped = MappedSpan(
        trace_id,
        span_id,
        parent_id,
        column_text(name, SPAN_NAME) or name,
        kind,
        start,
        end or start,
        failed,
        (clean_text(message) or None) if message else None,
        a,
        stored,
    )
    if span.events:
        if any(e.time_unix_nano > MAX_TIME_NS for e in span.events):
            raise _late(span_id, "an event's timeUnixNano")
        mapped.events = tuple(
            (
                clean_text(fit(e.name or "event", EVENT_NAME)) or "event",
                e.time_unix_nano or start,
                json_text(attributes_of(e.attributes)),
            )
            for e in span.events
        )
    if kind == "model":
        mapped.messages = data
    if parent_id is None:
        mapped.run_input, mapped.run_output = run_texts(a, data)
    return mapped
