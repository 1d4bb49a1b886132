"""Prometheus ``/metrics``: the dashboards' series (runs by project, agent, version, status and
outcome; runs by model; latency histograms; errors by category; tokens and cost), read from the
store at scrape time by a custom collector (aggregate queries over ``tether_runs``; the result
is kept ``CACHE_SECONDS`` so several scrapers cost one query).

Counters count every run stored so far (they only grow, as Prometheus expects; ``rate()``
gives per-second figures). Cardinality is bounded: at most ``MAX_SERIES`` label sets per
metric, the rest summed under ``agent="_other"`` / ``model="_other"``.

Access: an API key that may read (``viewer`` and up) sees its project's series; an ``admin``
key every project's. ``?project=NAME`` narrows to one project and follows the API's rule
(``auth.scoped``): a key of another project that is not an admin's gets 404, as for any other
route. ``TETHER_METRICS_PUBLIC=1`` lets a scraper in without a key (then every project's
series are shown): only for a server whose port only the scraper reaches.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, case, distinct, func, select
from starlette.responses import Response

from tether.server.auth import Forbidden, authenticate, scoped
from tether.server.roles import Permission
from tether.store import tables
from tether.store.query import BLOCK_MARK, BLOCKED, DECISION_EVENT, ERROR_EVENTS

PUBLIC_ENV = "TETHER_METRICS_PUBLIC"
CACHE_SECONDS = 5.0
MAX_SERIES = 500
OTHER = "_other"
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Upper bounds (seconds) of the run latency histogram's buckets."""

router = APIRouter(tags=["prometheus"])


@dataclass
class _Rows:
    """One scrape's aggregates."""

    runs: list[Any]
    models: list[Any]
    errors: list[Any]


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def _bounded(
    rows: list[Any], key_len: int, other_at: int
) -> list[tuple[tuple[str, ...], list[float]]]:
    """Rows as (labels, values), at most ``MAX_SERIES``: the smallest groups (by their first
    value) summed into one with ``OTHER`` at label position ``other_at``."""
    items = [
        (tuple(_label(v) for v in row[:key_len]), [float(v or 0) for v in row[key_len:]])
        for row in rows
    ]
    if len(items) <= MAX_SERIES:
        return items
    items.sort(key=lambda item: -item[1][0])
    kept, rest = items[: MAX_SERIES - 1], items[MAX_SERIES - 1 :]
    merged: dict[tuple[str, ...], list[float]] = {}
    for labels, values in rest:
        key = tuple(OTHER if i >= other_at else v for i, v in enumerate(labels))
        into = merged.setdefault(key, [0.0] * len(values))
        for i, v in enumerate(values):
            into[i] += v
    return kept + list(merged.items())


def _query(engine: Engine, project: str | None) -> _Rows:
    r = tables.runs.c
    where = [] if project is None else [r.project == project]
    latency = (r.ended_ns - r.started_ns) / 1e9
    ended = r.ended_ns.is_not(None)
    buckets = [func.sum(case((and_(ended, latency <= b), 1), else_=0)) for b in LATENCY_BUCKETS_S]
    runs_stmt = (
        select(
            r.project,
            r.agent_name,
            r.agent_version,
            r.status,
            r.outcome,
            func.count(),
            func.sum(r.input_tokens),
            func.sum(r.output_tokens),
            func.sum(r.cached_input_tokens),
            func.sum(r.cost_usd),
            func.sum(case((ended, 1), else_=0)),
            func.sum(case((ended, latency), else_=0.0)),
            *buckets,
        )
        .where(*where)
        .group_by(r.project, r.agent_name, r.agent_version, r.status, r.outcome)
    )
    m = tables.run_models.c
    models_stmt = (
        select(r.project, m.model, r.outcome, func.count())
        .join(tables.runs, r.run_id == m.run_id)
        .where(*where)
        .group_by(r.project, m.model, r.outcome)
    )
    e = tables.events.c
    category = case(
        *[(e.name == name, cat) for cat, name in ERROR_EVENTS.items()],
        else_=BLOCKED,
    )
    wanted = e.name.in_(list(ERROR_EVENTS.values())) | and_(
        e.name == DECISION_EVENT, e.attributes.contains(BLOCK_MARK)
    )
    errors_stmt = (
        select(r.project, category, func.count(distinct(e.run_id)))
        .join(tables.runs, r.run_id == e.run_id)
        .where(wanted, *where)
        .group_by(r.project, category)
    )
    with engine.connect() as conn:
        return _Rows(
            runs=list(conn.execute(runs_stmt)),
            models=list(conn.execute(models_stmt)),
            errors=list(conn.execute(errors_stmt)),
        )


class StoreCollector(Collector):
    """Prometheus collector over the store's aggregates for one project (None: all)."""

    def __init__(self, rows: _Rows) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        run_labels = ["project", "agent", "version", "status", "outcome"]
        runs = CounterMetricFamily("tether_runs", "Runs stored", labels=run_labels)
        short = ["project", "agent", "version"]
        tokens = CounterMetricFamily("tether_tokens", "Model tokens", labels=[*short, "type"])
        cost = CounterMetricFamily(
            "tether_cost_usd", "Priced cost of runs, US dollars", labels=short
        )
        latency = HistogramMetricFamily(
            "tether_run_latency_seconds", "Run latency (ended runs)", labels=short
        )
        by_short: dict[tuple[str, ...], list[float]] = defaultdict(
            lambda: [0.0] * (6 + len(LATENCY_BUCKETS_S))
        )
        for labels, v in _bounded(self.rows.runs, 5, 1):
            runs.add_metric(list(labels), v[0])
            acc = by_short[labels[:3]]
            for i, x in enumerate(v[1:]):
                acc[i] += x
        for labels, acc in by_short.items():
            tokens.add_metric([*labels, "input"], acc[0])
            tokens.add_metric([*labels, "output"], acc[1])
            tokens.add_metric([*labels, "cached_input"], acc[2])
            cost.add_metric(list(labels), acc[3])
            count, total = acc[4], acc[5]
            cumulative = [(str(b), acc[6 + i]) for i, b in enumerate(LATENCY_BUCKETS_S)]
            latency.add_metric(list(labels), [*cumulative, ("+Inf", count)], sum_value=total)
        models = CounterMetricFamily(
            "tether_model_runs",
            "Runs that requested each model",
            labels=["project", "model", "outcome"],
        )
        for labels, v in _bounded(self.rows.models, 3, 1):
            models.add_metric(list(labels), v[0])
        errors = CounterMetricFamily(
            "tether_run_errors",
            "Runs with an error of each category",
            labels=["project", "category"],
        )
        for labels, v in _bounded(self.rows.errors, 2, 2):
            errors.add_metric(list(labels), v[0])
        yield from (runs, models, latency, errors, tokens, cost)


_cache: dict[tuple[int, str | None], tuple[float, bytes]] = {}
_cache_lock = threading.Lock()


def render(engine: Engine, project: str | None) -> bytes:
    """The exposition text for ``project`` (None: every project), at most ``CACHE_SECONDS``
    old."""
    key = (id(engine), project)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(_query(engine, project)))
    text = generate_latest(registry)
    with _cache_lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = (now, text)
    return text


def public() -> bool:
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes")


@router.get("/metrics", summary="Prometheus exposition of runs, latency, errors, tokens and cost")
async def metrics(request: Request) -> Response:
    # Checking the key reads the store too: in the worker thread, never in the event loop
    # (a store that is slow to answer would hold every other request).
    text = await run_in_threadpool(_scrape, request)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def _scrape(request: Request) -> bytes:
    asked = request.query_params.get("project")
    project: str | None
    if public():
        project = asked
    else:
        # Another project than the key's: refused as every route refuses it (404 unless the
        # key may see all projects); it quietly answered with the key's own project's series.
        principal = scoped(request, authenticate(request), asked)
        if not principal.may(Permission.READ):
            raise Forbidden(f"a key of role {principal.role.value!r} may not read metrics")
        every = asked is None and principal.may(Permission.ALL_PROJECTS)
        project = None if every else principal.project
    return render(request.app.state.engine, project)
