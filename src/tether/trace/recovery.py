"""Closing a run whose process died: its totals, rebuilt from the spans the journal recovered.

The process never wrote the run's end, so the run row still holds the zeros it started with.
What the spans say is what is known; what they cannot say (a model call the pricing table does
not know, a run with no model call recorded) is marked unknown, never counted as free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tether.store import RunRecord, SpanRecord
from tether.trace import semconv
from tether.trace.pricing import round_cost


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def abandoned_run_end(
    run: RunRecord, spans: Sequence[SpanRecord], *, last_write_ns: int, error: str
) -> RunRecord:
    """The end of a run left ``running`` by a process that died: failed, with the tokens,
    cost, turns and tool calls of its recorded spans, ending at its last span's end (or, with
    no span, when its process last wrote to the journal)."""
    models = [s for s in spans if s.kind == "model"]
    input_tokens = output_tokens = cached = 0
    cost = 0.0
    unpriced = 0
    turns: set[Any] = set()
    for i, span in enumerate(models):
        a = span.attributes
        input_tokens += _count(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS))
        output_tokens += _count(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS))
        cached += _count(a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS))
        price = a.get(semconv.TETHER_COST_USD)
        if isinstance(price, int | float) and not isinstance(price, bool):
            cost = round_cost(cost + price)
        elif span.status == "ok" or a.get(semconv.TETHER_COST_UNPRICED):
            unpriced += 1  # answered, but at a price nobody knows
        # Fallback attempts share their turn; spans of an older Tether may lack it.
        turns.add(a.get(semconv.TETHER_TURN, f"span {i}"))
    attributes = dict(run.attributes)
    attributes["stop_reason"] = "process exited"
    if unpriced or not models:
        # Unknown, not zero: the renderers show a run with this attribute as unpriced.
        attributes[semconv.TETHER_COST_UNPRICED] = unpriced or True
    ends = [s.end_ns for s in spans if s.end_ns]
    # File times are coarse; span times are the run's own clock: never before it started.
    ended_ns = max(max(ends) if ends else last_write_ns, run.started_ns)
    return dataclasses.replace(
        run,
        status="failed",
        outcome="error",
        ended_ns=ended_ns,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cost_usd=cost,
        turns=len(turns),
        tool_calls=sum(1 for s in spans if s.kind == "tool"),
        error=error,
        attributes=attributes,
    )
