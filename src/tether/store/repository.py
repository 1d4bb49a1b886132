"""``Store``: writes trace batches and reads runs, spans, events and checkpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, RowMapping, bindparam, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from tether.core import StoreError
from tether.store import tables
from tether.store.db import create_store_engine, driver_message, migrate, redact_url
from tether.store.records import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    TraceBatch,
)
from tether.store.replay import without_existing
from tether.store.values import (
    CHECKPOINT_REASON,
    EVENT_NAME,
    RUN_AGENT,
    RUN_OUTCOME,
    RUN_STATUS,
    RUN_VERSION,
    SPAN_KIND,
    SPAN_NAME,
    SPAN_STATUS,
    clean_text,
    dumps_attributes,
    fit,
)

_LISTED_RUNS = 20
"""How many run ids an ambiguous trace id lists."""
_TRACE_ID_LENGTH = 32

_RUN_END_FIELDS = (
    "status",
    "outcome",
    "output",
    "ended_ns",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "turns",
    "tool_calls",
    "error",
)


# One prepared UPDATE for every run that ended in a batch, executed as executemany.
_END_RUN = (
    update(tables.runs)
    .where(tables.runs.c.run_id == bindparam("b_run_id"))
    # A record given its run by its trace (from an old crash journal, see
    # ``tether.store.replay``) must not overwrite another run of the trace.
    .where(tables.runs.c.started_ns == bindparam("b_started_ns"))
    .values({f: bindparam(f"b_{f}") for f in (*_RUN_END_FIELDS, "attributes")})
)


# Columns written by ``_insert``, in the order of its row tuples (events: id is generated).
_INSERT_COLUMNS = {
    tables.spans.name: tuple(c.name for c in tables.spans.columns),
    tables.events.name: tuple(c.name for c in tables.events.columns if c.name != "id"),
}
_INSERT_SQL: dict[tuple[str, str], str] = {}


def _insert(conn: Any, table: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert the rows of the busiest tables (spans, events): on SQLite straight through the
    driver's ``executemany`` (SQLAlchemy's per-row parameter processing costs about as much as
    the insert itself there); elsewhere through Core, which batches rows into multi-row
    INSERTs. The values are prepared by the caller, identically for both."""
    columns = _INSERT_COLUMNS[table.name]
    if conn.dialect.paramstyle != "qmark":
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    key = (conn.dialect.name, table.name)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        sql = _INSERT_SQL[key] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
    conn.exec_driver_sql(sql, rows)


def _insert_dicts(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows given as dicts (all with the same keys): on SQLite through the driver's
    ``executemany``, as :func:`_insert`; elsewhere through Core."""
    if conn.dialect.paramstyle != "qmark":
        conn.execute(table.insert(), rows)
        return
    columns = tuple(rows[0])
    key = (table.name, columns)
    sql = _INSERT_DICT_SQL.get(key)
    if sql is None:
        sql = _INSERT_DICT_SQL[key] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
    conn.exec_driver_sql(sql, [tuple(row.values()) for row in rows])


_INSERT_DICT_SQL: dict[tuple[str, tuple[str, ...]], str] = {}
_END_RUN_SQLITE = (
    f"UPDATE {tables.runs.name} SET "
    + ", ".join(f"{f} = ?" for f in (*_RUN_END_FIELDS, "attributes"))
    + " WHERE run_id = ? AND started_ns = ?"
)
_END_RUN_ORDER = tuple(f"b_{f}" for f in (*_RUN_END_FIELDS, "attributes", "run_id", "started_ns"))


def _end_runs(conn: Any, params: list[dict[str, Any]]) -> None:
    """The prepared run-end UPDATE for every run that ended in a batch; on SQLite through the
    driver's ``executemany`` (as :func:`_insert`)."""
    if conn.dialect.paramstyle != "qmark":
        conn.execute(_END_RUN, params)
        return
    conn.exec_driver_sql(_END_RUN_SQLITE, [tuple(p[k] for k in _END_RUN_ORDER) for p in params])


def _run_end_params(r: RunRecord) -> dict[str, Any]:
    params = {f"b_{f}": getattr(r, f) for f in _RUN_END_FIELDS}
    params["b_output"], params["b_error"] = clean_text(r.output), clean_text(r.error)
    params["b_status"] = clean_text(fit(r.status, RUN_STATUS))
    params["b_outcome"] = clean_text(fit(r.outcome, RUN_OUTCOME))
    params["b_attributes"] = dumps_attributes(r.attributes)
    params["b_run_id"] = r.run_id
    params["b_started_ns"] = r.started_ns
    return params


def _run_row(r: RunRecord) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "trace_id": r.trace_id,
        "agent_name": clean_text(fit(r.agent_name, RUN_AGENT)),
        "agent_version": clean_text(fit(r.agent_version, RUN_VERSION)),
        "status": clean_text(fit(r.status, RUN_STATUS)),
        "outcome": clean_text(fit(r.outcome, RUN_OUTCOME)),
        "input": clean_text(r.input),
        "output": clean_text(r.output),
        "started_ns": r.started_ns,
        "ended_ns": r.ended_ns,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cost_usd": r.cost_usd,
        "turns": r.turns,
        "tool_calls": r.tool_calls,
        "error": clean_text(r.error),
        "attributes": dumps_attributes(r.attributes),
    }


_TEXTS = ("input", "output")


def _run_from(row: RowMapping) -> RunRecord:
    data = dict(row)
    data["attributes"] = json.loads(data["attributes"])
    return RunRecord(**data)


class Store:
    """The trace store behind one database URL. Thread-safe: every call takes a connection."""

    def __init__(self, url: str, *, engine: Engine | None = None, connect: bool = True) -> None:
        """Open the store and bring its schema up to date. With ``connect=False`` only the
        URL and driver are checked now; the database is first reached (and migrated) by the
        first read or write, so a store that is down when the process starts can come up
        later."""
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

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def _failed(self, doing: str, exc: SQLAlchemyError) -> StoreError:
        """The ``StoreError`` for a database error while ``doing`` (``"writing to"``) this
        store: where, and what the driver said (never the SQL parameters: user content)."""
        return StoreError(f"{doing} {self.display_url} failed: {driver_message(exc)}")

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: TraceBatch, *, skip_existing: bool = False) -> None:
        """Write a batch in one transaction: all of it, or none of it (and ``StoreError``).

        ``skip_existing`` leaves out records the store already has (replaying a crash
        journal whose records may have been committed just before the crash), and gives
        records of a journal written before runs had ids the run of their trace.
        """
        self.ensure_ready()
        try:
            with self.engine.begin() as conn:
                if skip_existing:
                    batch = without_existing(conn, batch)
                cached = batch.attributes_json
                if batch.runs_started:
                    _insert_dicts(conn, tables.runs, [_run_row(r) for r in batch.runs_started])
                if batch.spans:
                    _insert(
                        conn,
                        tables.spans,
                        [
                            (
                                s.span_id,
                                s.run_id,
                                s.trace_id,
                                s.parent_id,
                                clean_text(fit(s.name, SPAN_NAME)),
                                clean_text(fit(s.kind, SPAN_KIND)),
                                s.start_ns,
                                s.end_ns,
                                clean_text(fit(s.status, SPAN_STATUS)),
                                clean_text(s.status_message),
                                cached.get(id(s)) or dumps_attributes(s.attributes),
                            )
                            for s in batch.spans
                        ],
                    )
                if batch.events:
                    _insert(
                        conn,
                        tables.events,
                        [
                            (
                                e.run_id,
                                e.trace_id,
                                e.span_id,
                                clean_text(fit(e.name, EVENT_NAME)),
                                e.time_ns,
                                cached.get(id(e)) or dumps_attributes(e.attributes),
                            )
                            for e in batch.events
                        ],
                    )
                if batch.checkpoints:
                    conn.execute(
                        tables.checkpoints.insert(),
                        [
                            {
                                "run_id": c.run_id,
                                "trace_id": c.trace_id,
                                "schema_version": c.schema_version,
                                "created_ns": c.created_ns,
                                "reason": clean_text(fit(c.reason, CHECKPOINT_REASON)),
                                "state": c.state_json,
                            }
                            for c in batch.checkpoints
                        ],
                    )
                if batch.runs_ended:
                    _end_runs(conn, [_run_end_params(r) for r in batch.runs_ended])
        except SQLAlchemyError as exc:
            raise self._failed("writing to", exc) from exc
        except Exception as exc:  # attributes that cannot be serialized (or whose str() fails)
            raise StoreError(
                f"a trace record cannot be serialized: {type(exc).__name__}: {exc}"
            ) from exc

    # -- reading -----------------------------------------------------------------------------

    def running_runs_of(self, attribute: str, value: str) -> list[RunRecord]:
        """The runs still ``running`` whose ``attribute`` is ``value`` (the writer of a process
        that died: the trace writer closes them, with totals from their spans)."""
        if not value.replace("-", "").isalnum():
            raise ValueError(f"not a writer id: {value!r}")
        needle = f'%"{attribute}":"{value}"%'  # attributes are compact JSON
        stmt = (
            select(tables.runs)
            .where(tables.runs.c.status == "running")
            .where(tables.runs.c.attributes.like(needle))
        )
        return [_run_from(r) for r in self._read(stmt)]

    def _read(self, stmt: Any) -> Sequence[RowMapping]:
        self.ensure_ready()
        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).mappings().all()
        except SQLAlchemyError as exc:
            raise self._failed("reading from", exc) from exc

    def list_runs(
        self, *, limit: int = 20, agent: str | None = None, text_chars: int | None = None
    ) -> list[RunRecord]:
        """Newest runs first. With ``text_chars``, each run's input and output are read only
        up to that many characters (a table showing a line of each need not read 10,000 runs'
        whole texts)."""
        runs = tables.runs.c
        columns: list[Any] = list(runs)
        if text_chars is not None:
            columns = [
                func.substr(c, 1, text_chars).label(c.name) if c.name in _TEXTS else c
                for c in columns
            ]
        stmt = select(*columns).order_by(runs.started_ns.desc()).limit(limit)
        if agent:
            stmt = stmt.where(runs.agent_name == agent)
        return [_run_from(r) for r in self._read(stmt)]

    def iter_runs(
        self, *, limit: int = 20, agent: str | None = None, page: int = 100
    ) -> Iterator[RunRecord]:
        """``list_runs``, read ``page`` runs at a time: whole inputs and outputs of thousands of
        runs are never all in memory at once. Which runs is decided now (``StoreError`` here,
        not halfway through)."""
        runs = tables.runs.c
        stmt = select(runs.run_id).order_by(runs.started_ns.desc()).limit(limit)
        if agent:
            stmt = stmt.where(runs.agent_name == agent)
        run_ids = [row["run_id"] for row in self._read(stmt)]

        def pages() -> Iterator[RunRecord]:
            for start in range(0, len(run_ids), page):
                wanted = run_ids[start : start + page]
                rows = self._read(select(tables.runs).where(runs.run_id.in_(wanted)))
                by_id = {row["run_id"]: row for row in rows}
                # A run deleted meanwhile is left out.
                yield from (_run_from(by_id[i]) for i in wanted if i in by_id)

        return pages()

    def get_run(self, run_or_trace_id: str) -> RunRecord:
        """The run with this run id or trace id, or with a unique prefix (at least 6
        characters) of either. A trace id that several runs share is ambiguous: the
        ``StoreError`` lists their run ids."""
        key = run_or_trace_id.lower()
        if len(key) < 6:
            raise StoreError(f"id {run_or_trace_id!r} is too short; give at least 6 characters")
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
        found = [_run_from(r) for r in self._read(stmt)]
        if not found:
            raise StoreError(
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
            raise StoreError(
                f"trace {found[0].trace_id} has several runs: {listed}{more}",
                hint="give one run id, e.g.: tether traces show " + found[0].run_id,
            )
        raise StoreError(f"id prefix {run_or_trace_id!r} is ambiguous; give more characters")

    def get_spans(self, run_id: str) -> list[SpanRecord]:
        """The spans of one run (``RunRecord.run_id``), in start order."""
        stmt = (
            select(tables.spans)
            .where(tables.spans.c.run_id == run_id)
            .order_by(tables.spans.c.start_ns, tables.spans.c.span_id)
        )
        out = []
        for row in self._read(stmt):
            data = dict(row)
            data["attributes"] = json.loads(data["attributes"])
            out.append(SpanRecord(**data))
        return out

    def get_events(self, run_id: str) -> list[EventRecord]:
        """The events of one run, in time order."""
        stmt = (
            select(tables.events)
            .where(tables.events.c.run_id == run_id)
            .order_by(tables.events.c.time_ns, tables.events.c.id)
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
