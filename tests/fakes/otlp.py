"""OTLP/JSON request bodies for ``POST /v1/traces`` tests (ids as hex, as OTLP/JSON has them)."""

from __future__ import annotations

from typing import Any

TRACE = "5b8efff798038103d269b633813fc60c"
NS = 1_700_000_000_000_000_000


def json_span(
    span_id: str, parent: str | None, name: str, attrs: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    """One span; ``trace``, ``start``, ``end`` and ``status`` (an OTLP status dict) may be
    given."""

    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": str(v)}

    span = {
        "traceId": kw.get("trace", TRACE),
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(kw.get("start", NS)),
        "endTimeUnixNano": str(kw.get("end", NS + 2_000_000_000)),
        "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()],
    }
    if parent:
        span["parentSpanId"] = parent
    if "status" in kw:
        span["status"] = kw["status"]
    return span


def json_request(*spans: dict[str, Any], service: str = "rag") -> dict[str, Any]:
    """An ExportTraceServiceRequest holding ``spans`` under one resource and scope."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "openinference"}, "spans": list(spans)}],
            }
        ]
    }
