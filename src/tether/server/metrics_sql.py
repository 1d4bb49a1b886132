"""The dashboards' figures counted by the database: one row per group comes back (a time
bucket, a project, an agent, a version, a model), never one per run.

The groupings are the whole range, the time buckets, projects, agents, versions and models;
each group gets its counts and sums and its nearest-rank latency percentiles (the
``ceil(p * n)``-th smallest latency of its n ended runs; ``tether.server.metrics``):

- PostgreSQL: one ``GROUP BY GROUPING SETS`` over the runs (the whole range, buckets,
  projects, agents, versions, and buckets by outcome for the outcomes chart) with
  ``percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency)``, nearest-rank by
  definition; one more over the runs joined to their models.
- SQLite has neither a percentile function nor grouping sets: the runs in range are copied
  once into a narrow temporary table; sums come from a few ``GROUP BY``s added up per grouping;
  per grouping an index on (group, latency) is built and each percentile is the one row
  ``ORDER BY latency LIMIT 1 OFFSET k`` of its group, walked from the nearer end. Exact, the
  same figures as PostgreSQL's. (``ROW_NUMBER() OVER (PARTITION BY ...)`` gives the same
  answer and measured about five times slower here.)

Error categories are one more ``GROUP BY`` over the runs joined to their error events.
All statements read one snapshot of the store (a read transaction), so the totals, the
buckets and the breakdowns agree even while runs are being written.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    case,
    distinct,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement, FromClause

from tether.core import StoreError
from tether.server.metrics import (
    DIMENSIONS,
    GOOD_OUTCOME,
    NONE_KEY,
    QUANTILES,
    Group,
    Metrics,
    TimeBuckets,
    add_up,
    assemble,
    listed,
)
from tether.store import tables
from tether.store.db import driver_message
from tether.store.query import BLOCK_MARK, BLOCKED, DECISION_EVENT, ERROR_EVENTS
from tether.trace import semconv


def _key(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A group's key: the value, or ``(none)`` when null or empty (``value or "(none)"``)."""
    return case((or_(value.is_(None), value == ""), literal(NONE_KEY)), else_=value)


def _contains(pg: bool, text: ColumnElement[Any], part: str) -> ColumnElement[bool]:
    """``part in text``, case and all (SQLite's LIKE ignores ASCII case)."""
    return (func.strpos(text, part) if pg else func.instr(text, part)) > 0


def _bucket(axis: TimeBuckets, started_ns: ColumnElement[Any]) -> ColumnElement[Any]:
    # Integer division on both databases; every run in range is at or after first_ns.
    first = literal(axis.first_ns, BigInteger)
    return (started_ns - first) // literal(axis.step_ns, BigInteger)


_NARROW = (
    ("run_id", String(16)),
    ("bucket", BigInteger),
    ("project", Text),
    ("agent", Text),
    ("version", Text),
    ("outcome", Text),
    ("failed", Integer),
    ("final", Integer),
    ("lat", BigInteger),
    ("input_tokens", BigInteger),
    ("output_tokens", BigInteger),
    ("cached_input_tokens", BigInteger),
    ("cost", Float),
    ("unpriced", Integer),
)
"""What the figures need of a run (``_runs``): its groups, latency, tokens and cost."""
_SUMMED = ("failed", "final", "input_tokens", "output_tokens", "cached_input_tokens", "cost")


def _runs(where: list[Any], axis: TimeBuckets) -> Select[Any]:
    """The runs in range, one row each, as ``_NARROW`` columns."""
    r = tables.runs.c
    unpriced = r.attributes.like(f'%"{semconv.TETHER_COST_UNPRICED}"%')
    outcome = case((or_(r.outcome.is_(None), r.outcome == ""), r.status), else_=r.outcome)
    version = case(
        (or_(r.agent_version.is_(None), r.agent_version == ""), literal(NONE_KEY)),
        else_=func.substr(r.agent_version, 1, 12),
    )
    columns = {
        "run_id": r.run_id,
        "bucket": _bucket(axis, r.started_ns),
        "project": _key(r.project),
        "agent": _key(r.agent_name),
        "version": _key(r.agent_name) + " " + version,
        "outcome": outcome,
        "failed": case((r.status == "failed", 1), else_=0),
        "final": case((outcome == GOOD_OUTCOME, 1), else_=0),
        "lat": r.ended_ns - r.started_ns,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cost": case((unpriced, 0.0), else_=r.cost_usd),
        "unpriced": case((unpriced, 1), else_=0),
    }
    return select(*(columns[name].label(name) for name, _ in _NARROW)).where(*where)


def _with_models(runs: FromClause) -> Select[Any]:
    """``runs`` (``_NARROW`` rows) once per model each asked for (once with ``(none)`` if
    none), with the model as column ``model``."""
    m = tables.run_models.c
    joined = runs.outerjoin(tables.run_models, m.run_id == runs.c.run_id)
    return select(runs, _key(m.model).label("model")).select_from(joined)


def _sums(rows: FromClause) -> list[Any]:
    """A group's count and sums (``_group`` reads them), then its count of ended runs."""
    c = rows.c
    summed = [func.sum(c[name]) for name in (*_SUMMED, "unpriced")]
    return [func.count(), *summed, func.count(c.lat)]


def _group(sums: Sequence[Any], latency_ns: Sequence[Any] = ()) -> Group:
    count, failed, final, tokens_in, tokens_out, cached, cost, unpriced = sums[:8]
    return Group(
        requests=int(count or 0),
        errors=int(failed or 0),
        final_answers=int(final or 0),
        latency_ms=tuple(None if v is None else int(v) / 1e6 for v in latency_ns)
        or (None,) * len(QUANTILES),
        input_tokens=int(tokens_in or 0),
        output_tokens=int(tokens_out or 0),
        cached_input_tokens=int(cached or 0),
        cost_usd=float(cost or 0.0),
        unpriced=int(unpriced or 0),
    )


_GROUPINGS = (None, "bucket", "project", "agent", "version")
"""What the runs (one row each) are grouped by (None: all together); ``model`` is grouped
over the runs joined to their models, one row per model."""

Counts = tuple[dict[str | None, dict[Any, Group]], list[tuple[int, str, int]]]
"""Groups by grouping and value (``[None][None]`` is the whole range), and runs by time
bucket and outcome."""


def _percentiles(lat: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.percentile_disc(postgresql.array(list(QUANTILES))).within_group(lat)


def _postgres(conn: Connection, runs: Select[Any]) -> Counts:
    """One ``GROUP BY GROUPING SETS`` over the runs (the whole range, buckets, projects,
    agents, versions, and buckets by outcome), one over the runs by model:
    ``percentile_disc`` is the nearest-rank percentile."""
    conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # the sorts stay in memory
    rows = runs.subquery("runs_in_range")
    c = rows.c
    names = ("bucket", "project", "agent", "version", "outcome")
    keys = [c[n] for n in names]
    sets = [(), ("bucket",), ("project",), ("agent",), ("version",), ("bucket", "outcome")]
    stmt = select(func.grouping(*keys), *keys, *_sums(rows), _percentiles(c.lat)).group_by(
        func.grouping_sets(*(tuple_(*(c[n] for n in s)) for s in sets))
    )
    # GROUPING(keys) has a bit set for each key a row is not grouped on, the first highest.
    set_of = {
        sum(1 << (len(names) - 1 - i) for i, n in enumerate(names) if n not in s): s for s in sets
    }
    groups: dict[str | None, dict[Any, Group]] = {g: {} for g in (*_GROUPINGS, "model")}
    outcomes: list[tuple[int, str, int]] = []
    for row in conn.execute(stmt):
        grouped, values = set_of[row[0]], dict(zip(names, row[1 : 1 + len(names)], strict=True))
        sums, ranked = row[1 + len(names) : -1], row[-1] or ()
        if not grouped:
            groups[None][None] = _group(sums, ranked)
        elif len(grouped) == 1:
            groups[grouped[0]][values[grouped[0]]] = _group(sums, ranked)
        else:  # by bucket and outcome
            outcomes.append((int(values["bucket"]), values["outcome"], int(sums[0])))
    m = _with_models(rows).subquery("runs_by_model")
    stmt = select(m.c.model, *_sums(m), _percentiles(m.c.lat)).group_by(m.c.model)
    for row in conn.execute(stmt):
        groups["model"][row[0]] = _group(row[1:-1], row[-1] or ())
    return groups, outcomes


_Summed = tuple[dict[str, Any], Group, int]
"""One ``GROUP BY`` row: its key values by name, its sums, its count of ended runs."""


class _SqliteCounts:
    """SQLite has no percentile function (nor grouping sets): the runs in range are copied
    once into a narrow temporary table. Sums come from a few ``GROUP BY``s added up by
    grouping (buckets from buckets by outcome; projects, agents and versions from one
    ``GROUP BY`` of the three, whose combinations are few). Each grouping's percentiles are
    read through an index on (group, latency), built once (one sort): the one row ``ORDER BY
    latency LIMIT 1 OFFSET rank - 1`` of the group, walked from whichever end is nearer.
    Exact."""

    RUNS, MODELS = "tether_metrics_runs", "tether_metrics_models"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.meta = MetaData()

    def __call__(self, runs: Select[Any]) -> Counts:
        self.drop()
        try:
            table = self._table(self.RUNS, runs, ())
            by_outcome = self._sums(table, ("bucket", "outcome"))
            outcomes = [(int(v["bucket"]), v["outcome"], g.requests) for v, g, _ in by_outcome]
            groups: dict[str | None, dict[Any, Group]] = {}
            groups[None] = self._ranked(table, None, self._sums(table, ()))
            groups["bucket"] = self._ranked(table, "bucket", by_outcome)
            rolled = self._sums(table, ("project", "agent", "version"))
            for key in ("project", "agent", "version"):
                groups[key] = self._ranked(table, key, rolled)
            models = self._table(self.MODELS, _with_models(table), (("model", Text),))
            groups["model"] = self._ranked(models, "model", self._sums(models, ("model",)))
            return groups, outcomes
        finally:
            self.drop()

    def _table(self, name: str, rows: Select[Any], extra: Sequence[tuple[str, Any]]) -> Table:
        columns = [Column(n, t) for n, t in (*_NARROW, *extra)]
        table = Table(name, self.meta, *columns, prefixes=["TEMPORARY"])
        table.create(self.conn)
        self.conn.execute(insert(table).from_select([c.name for c in columns], rows))
        return table

    def _sums(self, table: Table, keys: Sequence[str]) -> list[_Summed]:
        """``({key: value}, sums, count of ended runs)`` by ``keys``."""
        columns = [table.c[k] for k in keys]
        stmt = select(*columns, *_sums(table)).group_by(*columns)
        return [
            (dict(zip(keys, row, strict=False)), _group(row[len(keys) :]), int(row[-1]))
            for row in self.conn.execute(stmt)
        ]

    def _ranked(self, table: Table, key: str | None, rows: list[_Summed]) -> dict[Any, Group]:
        """The groups by ``key`` (None: one, of all), summed from ``rows`` (grouped by
        ``key`` and maybe more), with their percentiles."""
        groups: dict[Any, Group] = {}
        ended: dict[Any, int] = {}
        for values, sums, n in rows:
            value = None if key is None else values[key]
            add_up(groups.setdefault(value, Group()), sums)
            ended[value] = ended.get(value, 0) + n
        keys = [] if key is None else [table.c[key]]
        Index(f"{table.name}_{key or 'all'}", *keys, table.c.lat).create(self.conn)
        # Only the groups a breakdown lists get percentiles: a read for each of 20,000
        # agents' took 15 s.
        wanted = groups if key in (None, "bucket") else listed(groups)
        for value in wanted:
            group, n = groups[value], ended[value]
            ranks = [rank_of(q, n) for q in QUANTILES]
            group.latency_ms = tuple(self._nth(table, key, value, r, n) for r in ranks)
        return groups

    def _nth(
        self, table: Table, key: str | None, value: Any, rank: int | None, ended: int
    ) -> float | None:
        """The ``rank``-th smallest of the group's ``ended`` latencies, in ms (None: none)."""
        if rank is None:
            return None
        lat = table.c.lat
        stmt = select(lat).where(lat.is_not(None))
        if key is not None:
            stmt = stmt.where(table.c[key] == value)
        if rank <= ended // 2:
            stmt = stmt.order_by(lat).offset(rank - 1)
        else:  # p95, p99: a few steps down from the largest
            stmt = stmt.order_by(lat.desc()).offset(ended - rank)
        return int(self.conn.execute(stmt.limit(1)).scalar_one()) / 1e6

    def drop(self) -> None:
        for name in (self.MODELS, self.RUNS):
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        self.meta.clear()


def rank_of(q: float, n: int) -> int | None:
    """The nearest rank of quantile ``q`` among ``n`` values: ``ceil(q * n)``, at least 1;
    None when there are none."""
    return max(math.ceil(q * n), 1) if n else None


def _categories(
    conn: Connection, pg: bool, where: list[Any], axis: TimeBuckets
) -> Iterator[tuple[int, str, int]]:
    """Runs by bucket and error category (a run counts once in each of its categories)."""
    r, e = tables.runs.c, tables.events.c
    category = case(*[(e.name == name, cat) for cat, name in ERROR_EVENTS.items()], else_=BLOCKED)
    wanted = or_(
        e.name.in_(list(ERROR_EVENTS.values())),
        and_(e.name == DECISION_EVENT, _contains(pg, e.attributes, BLOCK_MARK)),
    )
    bucket = _bucket(axis, r.started_ns)
    stmt = (
        select(bucket, category, func.count(distinct(e.run_id)))
        .select_from(tables.runs.join(tables.events, e.run_id == r.run_id))
        .where(*where, wanted)
        .group_by(bucket, category)
    )
    for b, cat, count in conn.execute(stmt):
        yield int(b), cat, int(count)


_SHARED_CONNECTION = threading.Lock()
"""An in-memory SQLite store has one connection, shared by every thread: one computation at
a time uses its temporary tables."""


@contextmanager
def _snapshot(engine: Engine) -> Iterator[tuple[Connection, bool]]:
    """A connection whose statements all read one snapshot; and whether it is PostgreSQL."""
    pg = engine.dialect.name == "postgresql"
    if pg:
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="REPEATABLE READ"), pg
        return
    if engine.url.database in (None, "", ":memory:"):
        # No snapshot: the connection is the writer thread's too, and may be in its
        # transaction.
        with _SHARED_CONNECTION, engine.connect() as conn:
            yield conn, pg
        return
    with engine.connect() as conn:
        # pysqlite starts no transaction for a SELECT: begin one, so every statement reads the
        # same snapshot of the WAL (ended by the rollback on close). The temporary tables stay
        # in SQLite's temporary files (not in memory): a range of a million runs copies about
        # 100 MB.
        conn.exec_driver_sql("BEGIN")
        yield conn, pg


def newest_start(engine: Engine, projects: Sequence[str] | None) -> int | None:
    """When the newest run of ``projects`` (None: every project) started, if any (one index
    read)."""
    r = tables.runs.c
    query = select(func.max(r.started_ns))
    if projects is not None:
        query = query.where(r.project.in_(list(projects)))
    try:
        with engine.connect() as conn:
            newest: int | None = conn.execute(query).scalar()
    except SQLAlchemyError as exc:
        raise StoreError(f"reading metrics failed: {driver_message(exc)}") from exc
    return newest


def compute(
    engine: Engine, projects: Sequence[str] | None, since_ns: int, until_ns: int
) -> Metrics:
    """The figures of the runs of ``projects`` (None: every project) started in
    ``[since_ns, until_ns)``."""
    axis = TimeBuckets.over(since_ns, until_ns)
    r = tables.runs.c
    where: list[Any] = [r.started_ns >= since_ns, r.started_ns < until_ns]
    if projects is not None:
        where.append(r.project.in_(list(projects)))
    try:
        with _snapshot(engine) as (conn, pg):
            runs = _runs(where, axis)
            groups, outcomes = _postgres(conn, runs) if pg else _SqliteCounts(conn)(runs)
            total = groups[None].get(None) or Group()
            buckets = [groups["bucket"].get(i) or Group() for i in range(axis.count)]
            for index, outcome, count in outcomes:
                buckets[index].outcomes[outcome] += count
                total.outcomes[outcome] += count
            for index, category, count in _categories(conn, pg, where, axis):
                buckets[index].categories[category] += count
                total.categories[category] += count
    except SQLAlchemyError as exc:
        raise StoreError(f"reading metrics failed: {driver_message(exc)}") from exc
    return assemble(axis, total, buckets, {d: groups[d] for d in DIMENSIONS})
