"""``StoreReader``: the read side of the store. Runs by filters, a page at a time (keyset on
``(started_ns, run_id)``, newest first, with a total count); one run's trace.

Errors say which side is at fault: ``NotFound`` (the store works; no such run),
``InvalidQuery`` (the store works; the request cannot be answered as asked: an ambiguous id,
a malformed cursor), and ``StoreError`` itself for a store that cannot be opened or read (down,
unreachable, not a database): the last is the only one worth retrying.

Reading starts no thread and writes nothing but the schema's upgrade, when the store needs one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, RowMapping, func, or_, select, tuple_
from sqlalchemy.exc import SQLAlchemyError

from tether.core import InvalidQuery, NotFound, StoreError, scrub_surrogates
from tether.store import tables
from tether.store.db import create_store_engine, driver_message, migrate, redact_url
from tether.store.query import (
    BLOCK_MARK,
    BLOCKED,
    DECISION_EVENT,
    ERROR_EVENTS,
    RunQuery,
    decode_cursor,
    encode_cursor,
)
from tether.store.records import CheckpointRecord, EventRecord, RunRecord, SpanRecord
from tether.store.values import (
    RUN_AGENT,
    RUN_ENTRY_POINT,
    RUN_KIND,
    RUN_MODEL,
    RUN_OUTCOME,
    RUN_PROJECT,
    RUN_STATUS,
    RUN_VERSION,
    clean_text,
    fit,
)

R = TypeVar("R", list[RunRecord], Iterator[RunRecord])

_LISTED_RUNS = 20
"""How many run ids an ambiguous trace id lists."""
_TRACE_ID_LENGTH = 32
_TEXTS = ("input", "output")
MAX_TEXT_CHARS = 2**31 - 1
"""The most characters ``find_runs`` reads of a text (PostgreSQL's int4; a text is at most
1 GB there)."""


@dataclass(frozen=True)
class RunListing(Generic[R]):
    """One page of runs: the runs (a list, or read as they are iterated), how many runs the
    query matches in all, and the cursor of the next page (None on the last page)."""

    runs: R
    total: int | None
    """Runs matching the query's filters, on every page; None when not counted."""
    next_cursor: str | None


@dataclass(frozen=True)
class Trace:
    """One run's trace: the run, its spans in start order, its events in time order."""

    run: RunRecord
    spans: list[SpanRecord]
    events: list[EventRecord]


def run_from_row(row: RowMapping) -> RunRecord:
    data = dict(row)
    data.pop("run_seq", None)  # the store's key for the run's spans, not the run's
    data["attributes"] = json.loads(data["attributes"])
    caller = data.get("caller")
    data["caller"] = None if caller is None else json.loads(caller)
    return RunRecord(**data)


def _stored(value: str, length: int) -> str:
    """A filter value as the store would have written it (NUL and lone surrogates replaced,
    clipped to the column): a filter on a value written matches it."""
    return clean_text(fit(value, length)) or ""


def _conditions(query: RunQuery) -> list[Any]:
    runs = tables.runs.c
    out: list[Any] = []
    for column, values, length in (
        (runs.status, query.status, RUN_STATUS),
        (runs.outcome, query.outcome, RUN_OUTCOME),
        (runs.agent_name, query.agent, RUN_AGENT),
        (runs.project, query.project, RUN_PROJECT),
        (runs.kind, query.kind, RUN_KIND),
        (runs.entry_point, query.entry_point, RUN_ENTRY_POINT),
    ):
        if values:
            out.append(column.in_(sorted({_stored(str(v), length) for v in values})))
    if query.version:
        prefixes = sorted({_stored(v, RUN_VERSION) for v in query.version})
        # autoescape: '%' and '_' are characters of the version, not LIKE wildcards.
        out.append(or_(*(runs.agent_version.startswith(p, autoescape=True) for p in prefixes)))
    if query.model:
        models = tables.run_models.c
        wanted = sorted({_stored(m, RUN_MODEL) for m in query.model})
        out.append(runs.run_id.in_(select(models.run_id).where(models.model.in_(wanted))))
    if query.since_ns is not None:
        out.append(runs.started_ns >= query.since_ns)
    if query.until_ns is not None:
        out.append(runs.started_ns < query.until_ns)
    if query.min_cost_usd is not None:
        out.append(runs.cost_usd >= query.min_cost_usd)
        out.append(~runs.attributes.contains(_UNPRICED, autoescape=True))
    if query.min_latency_ms is not None:
        out.append(runs.ended_ns.is_not(None))
        out.append(runs.ended_ns - runs.started_ns >= round(query.min_latency_ms * 1_000_000))
    if query.error_category:
        out.append(or_(*(_has_category(c) for c in sorted(set(query.error_category)))))
    for tag in query.tag:
        key, value = tag.split("=", 1)
        # Attributes are stored as compact JSON: the pair reads exactly so.
        # Lone surrogates as the store writes them (U+FFFD): UTF-8 cannot carry them.
        pair = json.dumps(
            {scrub_surrogates(key): scrub_surrogates(value)},
            separators=(",", ":"),
            ensure_ascii=False,
        )[1:-1]
        out.append(runs.attributes.contains(pair, autoescape=True))
    if query.text:
        needle = clean_text(query.text) or ""
        out.append(
            or_(
                runs.input.icontains(needle, autoescape=True),
                runs.output.icontains(needle, autoescape=True),
            )
        )
    return out


_UNPRICED = '"tether.cost.unpriced"'


def _has_category(category: str) -> Any:
    """Runs with an event of that error category (``EXISTS``, by the events' run index)."""
    events = tables.events.c
    found = select(events.run_id).where(events.run_id == tables.runs.c.run_id)
    if category == BLOCKED:
        found = found.where(events.name == DECISION_EVENT, events.attributes.contains(BLOCK_MARK))
    else:
        found = found.where(events.name == ERROR_EVENTS[category])
    return found.exists()


class StoreReader:
    """Reads runs and traces from the store behind one database URL. Thread-safe: every call
    takes a connection. ``Store`` is a reader that also writes."""

    def __init__(self, url: str, *, engine: Engine | None = None, connect: bool = True) -> None:
        """Open the store and bring its schema up to date. With ``connect=False`` only the
        URL and driver are checked now; the database is first reached (and migrated) by the
        first read (or write), so a store that is down when the process starts can come up
        later. ``engine``: one made by ``create_store_engine`` (read-only, for a SQLite file
        this process cannot write)."""
        self.url = url
        self.engine = engine or create_store_engine(url)
        self._ready = False
        self._ready_lock = threading.Lock()
        if connect:
            self.ensure_ready()

    def ensure_ready(self) -> None:
        """Connect and migrate, once. ``StoreError`` if the database cannot be reached."""
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                migrate(self.engine)
                self._ready = True

    def forked(self) -> None:
        """In a child forked from the process that made this reader: a lock a thread of the
        parent held then (migrating the store on its first write) is never released here.
        (Its engine's pool is renewed by ``tether.store.db``'s own fork handler.)"""
        self._ready_lock = threading.Lock()

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def _failed(self, doing: str, exc: SQLAlchemyError) -> StoreError:
        """The ``StoreError`` for a database error while ``doing`` (``"writing to"``) this
        store: where, and what the driver said (never the SQL parameters: user content)."""
        return StoreError(f"{doing} {self.display_url} failed: {driver_message(exc)}")

    def _read(self, stmt: Any) -> Sequence[RowMapping]:
        self.ensure_ready()
        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).mappings().all()
        except SQLAlchemyError as exc:
            raise self._failed("reading from", exc) from exc

    # -- runs, a page at a time --------------------------------------------------------------

    def _page(
        self, query: RunQuery, columns: Sequence[Any], *, count: bool
    ) -> tuple[Sequence[RowMapping], int | None, str | None]:
        """The rows of one page (``columns`` must hold ``run_id`` and ``started_ns``), the
        total count, and the next page's cursor."""
        runs = tables.runs.c
        conditions = _conditions(query)
        stmt = select(*columns).where(*conditions)
        if query.cursor is not None:
            started_ns, run_id = decode_cursor(query.cursor)
            stmt = stmt.where(tuple_(runs.started_ns, runs.run_id) < tuple_(started_ns, run_id))
        # One more than the page: whether there is a next page, without counting.
        stmt = stmt.order_by(runs.started_ns.desc(), runs.run_id.desc()).limit(query.limit + 1)
        rows = self._read(stmt)
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            next_cursor = encode_cursor(rows[-1]["started_ns"], rows[-1]["run_id"])
        total = None
        if count:
            counted = select(func.count().label("n")).select_from(tables.runs).where(*conditions)
            total = int(self._read(counted)[0]["n"])
        return rows, total, next_cursor

    def find_runs(
        self, query: RunQuery, *, text_chars: int | None = None, count: bool = True
    ) -> RunListing[list[RunRecord]]:
        """One page of the runs ``query`` asks for, newest first. With ``text_chars``, each
        run's input and output are read only up to that many characters (a table showing a
        line of each need not read whole texts). ``count=False``: ``total`` is None (counting
        reads every matching run's key)."""
        columns: list[Any] = list(tables.runs.c)
        if text_chars is not None:
            # PostgreSQL's substr takes an int4 (no text is longer): 2**31 was sent as a
            # bigint, 'function substr(text, integer, bigint) does not exist', a 503.
            most = min(text_chars, MAX_TEXT_CHARS)
            columns = [
                func.substr(c, 1, most).label(c.name) if c.name in _TEXTS else c for c in columns
            ]
        rows, total, next_cursor = self._page(query, columns, count=count)
        return RunListing([run_from_row(r) for r in rows], total, next_cursor)

    def stream_runs(
        self, query: RunQuery, *, chunk: int = 100, count: bool = True
    ) -> RunListing[Iterator[RunRecord]]:
        """``find_runs``, the runs read ``chunk`` at a time as they are iterated: whole inputs
        and outputs of thousands of runs are never all in memory at once. Which runs is
        decided now (``StoreError`` here, not halfway through); a run deleted meanwhile is
        left out."""
        runs = tables.runs.c
        rows, total, next_cursor = self._page(query, [runs.run_id, runs.started_ns], count=count)
        run_ids = [row["run_id"] for row in rows]

        def read() -> Iterator[RunRecord]:
            for start in range(0, len(run_ids), chunk):
                wanted = run_ids[start : start + chunk]
                found = self._read(select(tables.runs).where(runs.run_id.in_(wanted)))
                by_id = {row["run_id"]: row for row in found}
                yield from (run_from_row(by_id[i]) for i in wanted if i in by_id)

        return RunListing(read(), total, next_cursor)

    def list_runs(
        self, *, limit: int = 20, agent: str | None = None, text_chars: int | None = None
    ) -> list[RunRecord]:
        """The newest runs (of one agent): ``find_runs`` without a count."""
        query = RunQuery(limit=limit, agent=() if agent is None else (agent,))
        return self.find_runs(query, text_chars=text_chars, count=False).runs

    def iter_runs(
        self, *, limit: int = 20, agent: str | None = None, page: int = 100
    ) -> Iterator[RunRecord]:
        """``list_runs``, read ``page`` runs at a time (see ``stream_runs``)."""
        query = RunQuery(limit=limit, agent=() if agent is None else (agent,))
        return self.stream_runs(query, chunk=page, count=False).runs

    # -- one run -------------------------------------------------------------------------------

    def get_run(self, run_or_trace_id: str) -> RunRecord:
        """The run with this run id or trace id, or with a unique prefix (at least 6
        characters) of either. ``NotFound`` if there is none; ``InvalidQuery`` for an id too
        short, or one that several runs match (a trace id they share: the error lists their
        run ids)."""
        key = run_or_trace_id.lower()
        if len(key) < 6:
            raise InvalidQuery(f"id {run_or_trace_id!r} is too short; give at least 6 characters")
        if not (key.isascii() and key.isprintable()):
            # Run and trace ids are hex: no run has this one. (Asked as it is, PostgreSQL
            # refuses a NUL, which read as the store being down, and a lone surrogate cannot
            # be sent at all.)
            raise NotFound(
                f"no run or trace {run_or_trace_id!r} in {self.display_url}",
                hint="list recent runs with: tether traces list",
            )
        runs = tables.runs.c
        # autoescape: '%' and '_' in the prefix are literal characters, not LIKE wildcards.
        stmt = (
            select(tables.runs)
            .where(
                or_(
                    runs.run_id.startswith(key, autoescape=True),
                    runs.trace_id.startswith(key, autoescape=True),
                )
            )
            .order_by(runs.started_ns, runs.run_id)
            .limit(_LISTED_RUNS + 1)
        )
        found = [run_from_row(r) for r in self._read(stmt)]
        if not found:
            raise NotFound(
                f"no run or trace {run_or_trace_id!r} in {self.display_url}",
                hint="list recent runs with: tether traces list",
            )
        exact = [r for r in found if r.run_id == key]
        if exact:
            return exact[0]
        if len(found) == 1:
            return found[0]
        traces = {r.trace_id for r in found}
        complete = len(found) <= _LISTED_RUNS or len(key) == _TRACE_ID_LENGTH
        if len(traces) == 1 and complete:
            listed = ", ".join(r.run_id for r in found[:_LISTED_RUNS])
            more = ", ..." if len(found) > _LISTED_RUNS else ""
            raise InvalidQuery(
                f"trace {found[0].trace_id} has several runs: {listed}{more}",
                hint="give one run id, e.g.: tether traces show " + found[0].run_id,
            )
        raise InvalidQuery(f"id prefix {run_or_trace_id!r} is ambiguous; give more characters")

    def get_trace(self, run_or_trace_id: str) -> Trace:
        """A run (found as ``get_run`` finds it) with its spans and events."""
        run = self.get_run(run_or_trace_id)
        return Trace(run, self.get_spans(run.run_id), self.get_events(run.run_id))

    def get_spans(self, run_id: str, *, limit: int | None = None) -> list[SpanRecord]:
        """The spans of one run (``RunRecord.run_id``), in start order (the first ``limit``)."""
        stmt = (
            select(tables.spans)
            .where(tables.spans_of_run(run_id))
            .order_by(tables.spans.c.start_ns, tables.spans.c.span_id)
            .limit(limit)
        )
        out = []
        for row in self._read(stmt):
            data = dict(row)
            data.pop("run_seq", None)  # the store's key for the run's spans, not the span's
            data["attributes"] = json.loads(data["attributes"])
            out.append(SpanRecord(**data))
        return out

    def get_events(self, run_id: str, *, limit: int | None = None) -> list[EventRecord]:
        """The events of one run, in time order (the first ``limit``)."""
        stmt = (
            select(tables.events)
            .where(tables.events.c.run_id == run_id)
            .order_by(tables.events.c.time_ns, tables.events.c.id)
            .limit(limit)
        )
        return [
            EventRecord(
                trace_id=r["trace_id"],
                run_id=r["run_id"],
                span_id=r["span_id"],
                name=r["name"],
                time_ns=r["time_ns"],
                attributes=json.loads(r["attributes"]),
            )
            for r in self._read(stmt)
        ]

    def get_checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        """The checkpoints of one run, oldest first."""
        stmt = (
            select(tables.checkpoints)
            .where(tables.checkpoints.c.run_id == run_id)
            .order_by(tables.checkpoints.c.created_ns, tables.checkpoints.c.id)
        )
        return [
            CheckpointRecord(
                trace_id=r["trace_id"],
                run_id=r["run_id"],
                schema_version=r["schema_version"],
                created_ns=r["created_ns"],
                state_json=r["state"],
                reason=r["reason"],
            )
            for r in self._read(stmt)
        ]
