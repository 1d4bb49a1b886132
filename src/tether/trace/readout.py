"""What readers of stored runs are shown that the records do not say outright: a cost
unknown rather than zero when a model call could not be priced, a readable time. (Without
pydantic: the terminal's renderers use these too.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tether.store import RunRecord, SpanRecord
from tether.trace import semconv
from tether.trace.pricing import round_cost


def fmt_ns(ns: int) -> str:
    """A time in nanoseconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def json_cost(usd: float | None) -> float | None:
    """A cost for JSON output: ``null`` when unknown, without float noise otherwise."""
    return None if usd is None else round_cost(usd)


def run_cost(run: RunRecord, spans: Sequence[SpanRecord] = ()) -> float | None:
    """A stored run's cost, ``None`` when a model call in it could not be priced."""
    unpriced = run.attributes.get(semconv.TETHER_COST_UNPRICED) or any(
        s.kind == "model" and s.attributes.get(semconv.TETHER_COST_UNPRICED) for s in spans
    )
    return None if unpriced else run.cost_usd
