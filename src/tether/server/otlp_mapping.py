"""OTLP spans onto Tether's records: the OpenTelemetry GenAI conventions (``gen_ai.*``) and
OpenInference's attributes (``openinference.span.kind``, ``llm.*``, ``input.value``, ...)
become the same ``SpanRecord`` attributes the runtime writes, so an application that never
calls Tether's runtime is shown and costed the same way.

Pure functions over decoded protobuf messages; the store work is in ``tether.server.otlp``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tether.store import EventRecord, SpanRecord
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

_OI_MESSAGE = re.compile(r"llm\.(input|output)_messages\.(\d+)\.message\.(.+)")


class InvalidSpan(ValueError):
    """A span that cannot be stored, with the reason (counted in ``rejected_spans``)."""


@dataclass(slots=True)
class MappedSpan:
    """One OTLP span as Tether's records, before its run is known."""

    span: SpanRecord
    events: list[EventRecord] = field(default_factory=list)
    run_input: str | None = None
    """For a root span: what the run was asked (``input.value`` or the first user message)."""
    run_output: str | None = None
    """For a root span: what it answered."""


def any_value(value: AnyValue, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` as plain Python (bytes as hex)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "bytes_value":
        return value.bytes_value.hex()
    if depth >= MAX_ATTRIBUTE_DEPTH:
        return "…"
    if which == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return getattr(value, which)


def attributes_of(pairs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue``s as a dict."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in pairs:
        out[kv.key] = any_value(kv.value)
    return out


def _json_or_text(value: Any) -> Any:
    """OTLP carries structured GenAI values as JSON strings; the store keeps them as data."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _span_kind(a: dict[str, Any], is_root: bool) -> str:
    op = a.get(semconv.GEN_AI_OPERATION_NAME)
    if op in AGENT_OPS:
        return "agent"
    if op in MODEL_OPS:
        return "model"
    if op in TOOL_OPS:
        return "tool"
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
        except ValueError:
            return 0
    return 0


def _normalize(a: dict[str, Any], kind: str) -> tuple[str | None, str | None]:
    """Put OpenInference's attributes under the GenAI names Tether reads (kept as given
    too); the span's input and output text."""
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
    for key in (g.GEN_AI_INPUT_MESSAGES, g.GEN_AI_OUTPUT_MESSAGES, g.GEN_AI_SYSTEM_INSTRUCTIONS):
        if key in a:
            a[key] = _json_or_text(a[key])
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
    for key in (
        g.GEN_AI_USAGE_INPUT_TOKENS,
        g.GEN_AI_USAGE_OUTPUT_TOKENS,
        g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    ):
        if key in a:
            a[key] = _int(a[key])
    text_in = oi_in if oi_in is not None else _first_text(a.get(g.GEN_AI_INPUT_MESSAGES), "user")
    text_out = oi_out if oi_out is not None else _first_text(a.get(g.GEN_AI_OUTPUT_MESSAGES), None)
    return (
        None if text_in is None else str(text_in),
        None if text_out is None else str(text_out),
    )


def price(a: dict[str, Any], pricing: PricingTable) -> float | None:
    """Price a model span as the runtime does (response model first, then the requested
    one); the cost goes on the span, or ``tether.cost.unpriced`` when the table lacks the
    model. Returns the cost (None: unpriced)."""
    tokens = (
        _int(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)),
        _int(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)),
        _int(a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
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


def _hex_id(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size or not any(raw):
        raise InvalidSpan(f"{what} must be {size} bytes and not all zero (got {len(raw)} bytes)")
    return raw.hex()


def map_span(span: Span, resource: dict[str, Any], pricing: PricingTable) -> MappedSpan:
    """One OTLP span as a ``SpanRecord`` (``run_id`` left empty) and its events; ``InvalidSpan``
    says why it cannot be stored."""
    trace_id = _hex_id(span.trace_id, 16, "traceId")
    span_id = _hex_id(span.span_id, 8, "spanId")
    parent_id = _hex_id(span.parent_span_id, 8, "parentSpanId") if span.parent_span_id else None
    if span.start_time_unix_nano <= 0:
        raise InvalidSpan(f"span {span_id}: startTimeUnixNano is missing")
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        raise InvalidSpan(f"span {span_id}: endTimeUnixNano is before startTimeUnixNano")
    if not span.name:
        raise InvalidSpan(f"span {span_id}: name is empty")
    a = attributes_of(span.attributes)
    kind = _span_kind(a, parent_id is None)
    text_in, text_out = _normalize(a, kind)
    service = resource.get("service.name")
    if isinstance(service, str) and service:
        a.setdefault("service.name", service)
    if kind == "model":
        price(a, pricing)
    a[semconv.TETHER_ENTRY_POINT] = "otlp"
    failed = span.status.code == Status.STATUS_CODE_ERROR
    if failed and semconv.ERROR_TYPE not in a:
        a[semconv.ERROR_TYPE] = "error"
    record = SpanRecord(
        trace_id=trace_id,
        run_id="",
        span_id=span_id,
        parent_id=parent_id,
        name=span.name,
        kind=kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano or span.start_time_unix_nano,
        status="error" if failed else "ok",
        status_message=span.status.message or None,
        attributes=a,
    )
    events = [
        EventRecord(
            trace_id=trace_id,
            run_id="",
            span_id=span_id,
            name=e.name or "event",
            time_ns=e.time_unix_nano or span.start_time_unix_nano,
            attributes=attributes_of(e.attributes),
        )
        for e in span.events
    ]
    return MappedSpan(record, events, text_in, text_out)
