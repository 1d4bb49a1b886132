"""The dashboards' figures computed in Python from every run row of the range: the definition
the database's aggregates (``tether.server.metrics_sql``) are held to by the tests, and the
old path ``benchmarks/dashboard_query.py`` measures them against. The server does not use it:
it reads each run of the range into memory (fine to about 100k runs, slow past that).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from tether.core import StoreError
from tether.server.metrics import (
    CATEGORY_OF,
    GOOD_OUTCOME,
    NONE_KEY,
    QUANTILES,
    Group,
    Metrics,
    TimeBuckets,
    assemble,
)
from tether.store import tables
from tether.store.db import driver_message
from tether.store.query import BLOCK_MARK, BLOCKED
from tether.trace import semconv


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


class _Tally:
    """A group being counted run by run."""

    def __init__(self) -> None:
        self.group = Group()
        self.latencies: list[float] = []

    def add(self, row: RunRow) -> None:
        g = self.group
        g.requests += 1
        g.errors += row.status == "failed"
        if row.latency_ms is not None:
            self.latencies.append(row.latency_ms)
        g.input_tokens += row.input_tokens
        g.output_tokens += row.output_tokens
        g.cached_input_tokens += row.cached_input_tokens
        if row.cost_usd is None:
            g.unpriced += 1
        else:
            g.cost_usd += row.cost_usd
        outcome = row.outcome or row.status
        g.outcomes[outcome] += 1
        g.final_answers += outcome == GOOD_OUTCOME
        g.categories.update(row.categories)

    def done(self) -> Group:
        lat = sorted(self.latencies)
        self.group.latency_ms = tuple(percentile(lat, q) for q in QUANTILES)
        return self.group


def _by(rows: Iterable[RunRow], keys: Callable[[RunRow], Iterable[str | None]]) -> dict[str, Group]:
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for row in rows:
        for key in keys(row):
            tallies[key or NONE_KEY].add(row)
    return {k: t.done() for k, t in tallies.items()}


def aggregate(rows: Sequence[RunRow], since_ns: int, until_ns: int) -> Metrics:
    """The figures of ``rows`` (runs started in ``[since_ns, until_ns)``)."""
    axis = TimeBuckets.over(since_ns, until_ns)
    buckets = [_Tally() for _ in range(axis.count)]
    total = _Tally()
    for row in rows:
        buckets[axis.index(row.started_ns)].add(row)
        total.add(row)
    by = {
        "project": _by(rows, lambda r: [r.project]),
        "agent": _by(rows, lambda r: [r.agent]),
        "version": _by(rows, lambda r: [f"{r.agent or NONE_KEY} {(r.version or NONE_KEY)[:12]}"]),
        "model": _by(rows, lambda r: r.models or [None]),
    }
    return assemble(axis, total.done(), [b.done() for b in buckets], by)


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


def compute(
    engine: Engine, projects: Sequence[str] | None, since_ns: int, until_ns: int
) -> Metrics:
    """The figures of the runs of ``projects`` (None: all) started in the range, in Python."""
    return aggregate(read_rows(engine, projects, since_ns, until_ns), since_ns, until_ns)
