"""Aggregates for the dashboards and ``/api/v1/metrics``: requests, latency percentiles,
errors by outcome and category, tokens and cost over time, and the same by project, agent,
version and model.

Read from ``tether_runs`` (one row per run, indexed by project and start time), the models
each run requested (``tether_run_models``) and the error events of the runs in range. Costs
are the ones stored with each run: priced when the run was made, by the versioned pricing
table (cached input tokens at their own rate, the user's prices file merged over the shipped
one); runs with a model the table did not know are counted as ``unpriced``, not as free.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from tether.core import StoreError
from tether.store import tables
from tether.store.db import driver_message
from tether.store.query import BLOCK_MARK, BLOCKED, ERROR_EVENTS
from tether.trace import semconv

MAX_BUCKETS = 60
"""Points on a time chart at most."""
_STEPS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400)
CATEGORY_OF = {event: category for category, event in ERROR_EVENTS.items()}
"""Error category by the event name that puts a run in it."""
GOOD_OUTCOME = "final_answer"


def bucket_seconds(span_s: float) -> int:
    """A readable bucket width giving at most ``MAX_BUCKETS`` points over ``span_s``."""
    for step in _STEPS_S:
        if span_s / step <= MAX_BUCKETS:
            return step
    return math.ceil(span_s / MAX_BUCKETS / 86_400) * 86_400


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, nearest rank; None without values."""
    if not sorted_values:
        return None
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


@dataclass(slots=True)
class RunRow:
    """What the dashboards read of one run."""

    run_id: str
    project: str
    agent: str | None
    version: str | None
    status: str
    outcome: str | None
    started_ns: int
    latency_ms: float | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float | None
    models: list[str] = field(default_factory=list)
    categories: set[str] = field(default_factory=set)


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)

    def add(self, row: RunRow) -> None:
        self.requests += 1
        self.errors += row.status == "failed"
        if row.latency_ms is not None:
            self.latencies.append(row.latency_ms)
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.cached_input_tokens += row.cached_input_tokens
        if row.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += row.cost_usd
        self.outcomes[row.outcome or row.status] += 1
        self.categories.update(row.categories)


class Breakdown(BaseModel):
    """Totals of the runs that share one value (an agent, a version, a model, a project)."""

    key: str
    """The value (``(none)`` for runs without one)."""
    requests: int
    """Runs started in the range."""
    error_rate: float
    """Share of them that failed."""
    not_final_rate: float
    """Share that ended otherwise than with a final answer (failed, stopped, paused)."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    """Cost of the priced runs, US dollars."""
    unpriced: int
    """Runs whose cost is unknown (a model the pricing table does not know)."""


class Series(BaseModel):
    label: str
    values: list[float | None]


class Chart(BaseModel):
    title: str
    unit: str
    """``count``, ``ms``, ``usd``, ``%`` or ``tokens``."""
    series: list[Series]


class Metrics(BaseModel):
    """Dashboards' figures for one project (or all, for an admin) and time range."""

    since_ns: int
    until_ns: int
    bucket_s: int
    """Width of a time bucket, seconds."""
    times: list[int]
    """Start of each bucket, seconds since the epoch."""
    totals: Breakdown
    outcomes: dict[str, int]
    """Runs by outcome (``running`` for runs not ended)."""
    error_categories: dict[str, int]
    """Runs by error category (a run may count in several)."""
    charts: dict[str, Chart]
    by_project: list[Breakdown]
    by_agent: list[Breakdown]
    by_version: list[Breakdown]
    by_model: list[Breakdown]


def _breakdown(key: str, t: _Tally) -> Breakdown:
    lat = sorted(t.latencies)
    n = max(t.requests, 1)
    return Breakdown(
        key=key,
        requests=t.requests,
        error_rate=t.errors / n,
        not_final_rate=(t.requests - t.outcomes.get(GOOD_OUTCOME, 0)) / n,
        p50_ms=percentile(lat, 0.50),
        p95_ms=percentile(lat, 0.95),
        p99_ms=percentile(lat, 0.99),
        input_tokens=t.input_tokens,
        output_tokens=t.output_tokens,
        cached_input_tokens=t.cached_input_tokens,
        cost_usd=round(t.cost_usd, 10),
        unpriced=t.unpriced,
    )


def _by(rows: Iterable[RunRow], keys: Any) -> list[Breakdown]:
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for row in rows:
        for key in keys(row):
            tallies[key or "(none)"].add(row)
    out = [_breakdown(k, t) for k, t in tallies.items()]
    return sorted(out, key=lambda b: (-b.requests, b.key))


def aggregate(rows: Sequence[RunRow], since_ns: int, until_ns: int) -> Metrics:
    """The figures of ``rows`` (runs started in ``[since_ns, until_ns)``)."""
    step = bucket_seconds((until_ns - since_ns) / 1e9)
    step_ns = step * 1_000_000_000
    first = since_ns // step_ns * step_ns
    count = max(math.ceil((until_ns - first) / step_ns), 1)
    buckets = [_Tally() for _ in range(count)]
    total = _Tally()
    for row in rows:
        index = min(max((row.started_ns - first) // step_ns, 0), count - 1)
        buckets[index].add(row)
        total.add(row)
    times = [(first + i * step_ns) // 1_000_000_000 for i in range(count)]

    def series(label: str, values: Iterable[float | None]) -> Series:
        return Series(label=label, values=list(values))

    latency = [sorted(b.latencies) for b in buckets]
    outcomes = sorted(o for o in total.outcomes if o != GOOD_OUTCOME)
    categories = sorted(total.categories)
    charts = {
        "requests": Chart(
            title="Runs",
            unit="count",
            series=[
                series("runs", (b.requests for b in buckets)),
                series("failed", (b.errors for b in buckets)),
            ],
        ),
        "latency": Chart(
            title="Latency",
            unit="ms",
            series=[
                series(f"p{int(q * 100)}", (percentile(v, q) for v in latency))
                for q in (0.5, 0.95, 0.99)
            ],
        ),
        "outcomes": Chart(
            title="Share of runs not ending with a final answer, by outcome",
            unit="%",
            series=[
                series(
                    o, (b.outcomes.get(o, 0) / b.requests if b.requests else None for b in buckets)
                )
                for o in outcomes
            ],
        ),
        "categories": Chart(
            title="Share of runs with an error, by category",
            unit="%",
            series=[
                series(
                    c,
                    (b.categories.get(c, 0) / b.requests if b.requests else None for b in buckets),
                )
                for c in categories
            ],
        ),
        "tokens": Chart(
            title="Tokens",
            unit="tokens",
            series=[
                series("input", (b.input_tokens for b in buckets)),
                series("cached input", (b.cached_input_tokens for b in buckets)),
                series("output", (b.output_tokens for b in buckets)),
            ],
        ),
        "cost": Chart(
            title="Cost (USD)",
            unit="usd",
            series=[series("cost", (round(b.cost_usd, 10) for b in buckets))],
        ),
    }
    if not rows:
        for chart in charts.values():
            chart.series = []
    return Metrics(
        since_ns=since_ns,
        until_ns=until_ns,
        bucket_s=step,
        times=times,
        totals=_breakdown("all", total),
        outcomes=dict(sorted(total.outcomes.items())),
        error_categories=dict(sorted(total.categories.items())),
        charts=charts,
        by_project=_by(rows, lambda r: [r.project]),
        by_agent=_by(rows, lambda r: [r.agent]),
        by_version=_by(rows, lambda r: [f"{r.agent or '(none)'} {(r.version or '(none)')[:12]}"]),
        by_model=_by(rows, lambda r: r.models or [None]),
    )


def read_rows(
    engine: Engine, projects: Sequence[str] | None, since_ns: int, until_ns: int
) -> list[RunRow]:
    """The runs of ``projects`` (None: all) started in ``[since_ns, until_ns)``, with their
    models and error categories."""
    runs = tables.runs.c
    where = [runs.started_ns >= since_ns, runs.started_ns < until_ns]
    if projects is not None:
        where.append(runs.project.in_(list(projects)))
    stmt = select(
        runs.run_id,
        runs.project,
        runs.agent_name,
        runs.agent_version,
        runs.status,
        runs.outcome,
        runs.started_ns,
        runs.ended_ns,
        runs.input_tokens,
        runs.output_tokens,
        runs.cached_input_tokens,
        runs.cost_usd,
        runs.attributes.like(f'%"{semconv.TETHER_COST_UNPRICED}"%').label("unpriced"),
    ).where(*where)
    in_range = select(runs.run_id).where(*where)
    models = tables.run_models.c
    model_stmt = select(models.run_id, models.model).where(models.run_id.in_(in_range))
    ev = tables.events.c
    event_stmt = (
        select(ev.run_id, ev.name, ev.attributes)
        .where(ev.run_id.in_(in_range))
        .where(ev.name.in_([*CATEGORY_OF, semconv.EVENT_CONTROL_DECISION]))
    )
    try:
        with engine.connect() as conn:
            rows = {
                r.run_id: RunRow(
                    run_id=r.run_id,
                    project=r.project,
                    agent=r.agent_name,
                    version=r.agent_version,
                    status=r.status,
                    outcome=r.outcome,
                    started_ns=r.started_ns,
                    latency_ms=None if r.ended_ns is None else (r.ended_ns - r.started_ns) / 1e6,
                    input_tokens=r.input_tokens,
                    output_tokens=r.output_tokens,
                    cached_input_tokens=r.cached_input_tokens,
                    cost_usd=None if r.unpriced else r.cost_usd,
                )
                for r in conn.execute(stmt)
            }
            for run_id, model in conn.execute(model_stmt):
                if run_id in rows:
                    rows[run_id].models.append(model)
            for run_id, name, attributes in conn.execute(event_stmt):
                row = rows.get(run_id)
                if row is None:
                    continue
                if name in CATEGORY_OF:
                    row.categories.add(CATEGORY_OF[name])
                elif BLOCK_MARK in attributes:
                    row.categories.add(BLOCKED)
    except SQLAlchemyError as exc:
        raise StoreError(f"reading metrics failed: {driver_message(exc)}") from exc
    return list(rows.values())
