"""Runs written straight into a real store, shaped as the runtime writes them (an agent span,
chat spans with messages and usage, tool spans, control decisions), for the server's tests."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

from tether.store import EventRecord, RunRecord, SpanRecord, Store, TraceBatch
from tether.trace import semconv

_ids = itertools.count(1)


def _hex(n: int, width: int) -> str:
    return f"{n:0{width}x}"


@dataclass
class Seeded:
    """What ``add_run`` wrote."""

    run_id: str
    trace_id: str
    span_ids: list[str]


def add_run(
    store: Store,
    *,
    project: str = "default",
    agent: str = "support",
    version: str = "v1aaaaaaaaaa",
    model: str = "gpt-4.1-mini",
    input_text: str = "Where is my order 1042?",
    output_text: str | None = "It is in transit.",
    outcome: str = "final_answer",
    status: str = "completed",
    started_ns: int | None = None,
    latency_ms: float = 1200.0,
    cost_usd: float | None = 0.0021,
    blocked: bool = False,
    tool_error: bool = False,
    tool_calls: int = 1,
    attributes: dict[str, object] | None = None,
    tool_arguments: str = '{"order_id": 1042}',
    tool_result: str = '{"status": "in transit"}',
) -> Seeded:
    """One finished run of ``agent`` in ``project``; ``blocked`` adds a control decision
    that blocked its tool call."""
    n = next(_ids)
    run_id = _hex(n, 16)
    trace_id = _hex(n, 32)
    start = started_ns if started_ns is not None else time.time_ns() - 60_000_000_000
    end = start + int(latency_ms * 1e6)
    spans: list[SpanRecord] = []
    events: list[EventRecord] = []
    spans.append(
        SpanRecord(
            trace_id,
            run_id=run_id,
            span_id=run_id,
            parent_id=None,
            name=f"invoke_agent {agent}",
            kind="agent",
            start_ns=start,
            end_ns=end,
            attributes={semconv.GEN_AI_AGENT_NAME: agent, semconv.TETHER_PROJECT: project},
        )
    )
    chat_id = _hex(n * 1000 + 1, 16)
    spans.append(
        SpanRecord(
            trace_id,
            run_id=run_id,
            span_id=chat_id,
            parent_id=run_id,
            name=f"chat {model}",
            kind="model",
            start_ns=start + 1_000_000,
            end_ns=start + int(latency_ms * 0.5e6),
            attributes={
                semconv.GEN_AI_REQUEST_MODEL: model,
                semconv.GEN_AI_USAGE_INPUT_TOKENS: 120,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 30,
                semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 20,
                **(
                    {semconv.TETHER_COST_UNPRICED: True}  # a model the table does not know
                    if cost_usd is None
                    else {
                        semconv.TETHER_COST_USD: cost_usd,
                        semconv.TETHER_PRICING_VERSION: "2026-11-01",
                    }
                ),
                semconv.GEN_AI_INPUT_MESSAGES: json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": input_text}]}]
                ),
                semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": output_text or ""}],
                        }
                    ]
                ),
            },
        )
    )
    for i in range(tool_calls):
        tool_id = _hex(n * 1000 + 10 + i, 16)
        failed = tool_error and i == 0
        spans.append(
            SpanRecord(
                trace_id,
                run_id=run_id,
                span_id=tool_id,
                parent_id=run_id,
                name="execute_tool lookup_order",
                kind="tool",
                start_ns=start + int(latency_ms * 0.55e6),
                end_ns=start + int(latency_ms * 0.8e6),
                status="error" if failed else "ok",
                attributes={
                    semconv.GEN_AI_TOOL_NAME: "lookup_order",
                    semconv.GEN_AI_TOOL_CALL_ARGUMENTS: tool_arguments,
                    semconv.GEN_AI_TOOL_CALL_RESULT: tool_result,
                },
            )
        )
        if blocked and i == 0:
            events.append(
                EventRecord(
                    trace_id,
                    run_id=run_id,
                    span_id=tool_id,
                    name=semconv.EVENT_CONTROL_DECISION,
                    time_ns=start + int(latency_ms * 0.56e6),
                    attributes={
                        semconv.TETHER_CONTROL_NAME: "tool_policy",
                        semconv.TETHER_CONTROL_HOOK: "before_tool",
                        semconv.TETHER_DECISION: "block",
                        semconv.TETHER_DECISION_REASON: "refunds need approval",
                    },
                )
            )
        if failed:
            events.append(
                EventRecord(
                    trace_id,
                    run_id=run_id,
                    span_id=tool_id,
                    name=semconv.EVENT_TOOL_ERROR,
                    time_ns=start + int(latency_ms * 0.7e6),
                    attributes={"error": "HTTP 404"},
                )
            )
    run = RunRecord(
        trace_id,
        run_id=run_id,
        agent_name=agent,
        agent_version=version,
        started_ns=start,
        status=status,
        outcome=outcome,
        input=input_text,
        output=output_text,
        ended_ns=end,
        input_tokens=120,
        output_tokens=30,
        cached_input_tokens=20,
        cost_usd=cost_usd or 0.0,  # the unpriced span says the cost is unknown
        turns=1,
        tool_calls=tool_calls,
        attributes={
            **(attributes or {}),
            **({semconv.TETHER_COST_UNPRICED: True} if cost_usd is None else {}),
        },
        project=project,
    )
    store.write(TraceBatch(runs_started=[run], spans=spans, events=events, runs_ended=[run]))
    return Seeded(run_id, trace_id, [s.span_id for s in spans])
