"""``Store``: writes trace batches (and reads, as the ``StoreReader`` it is)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from tether.core import StoreError
from tether.store import tables
from tether.store.reader import StoreReader, run_from_row
from tether.store.records import (
    RunRecord,
    SpanRecord,
    TraceBatch,
)
from tether.store.replay import without_existing
from tether.store.values import (
    CHECKPOINT_REASON,
    EVENT_NAME,
    RUN_AGENT,
    RUN_ENTRY_POINT,
    RUN_KIND,
    RUN_MODEL,
    RUN_OUTCOME,
    RUN_PROJECT,
    RUN_STATUS,
    RUN_VERSION,
    SPAN_KIND,
    SPAN_NAME,
    SPAN_STATUS,
    clean_text,
    column_text,
    dumps_attributes,
    fit,
)

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
    # The input as the run's end states it, when it states one: a control at ``on_input``
    # may have changed it after the start was written (a redaction the store must keep).
    .values(input=func.coalesce(func.nullif(bindparam("b_input"), ""), tables.runs.c.input))
)


# Columns written by ``insert_rows``, in the order of its row tuples (events: id is generated).
INSERT_COLUMNS = {
    tables.runs.name: tuple(c.name for c in tables.runs.columns),
    tables.spans.name: tuple(c.name for c in tables.spans.columns),
    tables.events.name: tuple(c.name for c in tables.events.columns if c.name != "id"),
    tables.run_models.name: tuple(c.name for c in tables.run_models.columns),
    tables.otlp_waits.name: tuple(c.name for c in tables.otlp_waits.columns),
}
_INSERT_SQL: dict[tuple[str, str, bool], str] = {}

REQUEST_MODEL = "gen_ai.request.model"
"""The OTel GenAI attribute of a model span naming the model asked for: the store keeps each
run's (in ``tether_run_models``) for ``RunQuery.model``."""


def insert_rows(
    conn: Any, table: Any, rows: list[tuple[Any, ...]], *, skip_existing: bool = False
) -> None:
    """Insert rows given as tuples in the order of ``INSERT_COLUMNS`` (the busiest tables):
    on SQLite straight through the driver's ``executemany`` (SQLAlchemy's per-row parameter
    processing costs about as much as the insert itself there); elsewhere through Core, which
    batches rows into multi-row INSERTs. The values are prepared by the caller, identically
    for both. ``skip_existing``: a row whose key is stored already is left out, not an error."""
    if not rows:
        return
    columns = INSERT_COLUMNS[table.name]
    if conn.dialect.paramstyle == "qmark":
        ignore = "OR IGNORE " if skip_existing else ""
        _sqlite_insert(conn, f"INSERT {ignore}INTO {table.name} ({', '.join(columns)})", rows)
        return
    key = (conn.dialect.name, table.name, skip_existing)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        conflict = " ON CONFLICT DO NOTHING" if skip_existing else ""
        sql = _INSERT_SQL[key] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('%s' for _ in columns)}){conflict}"
        )
    conn.exec_driver_sql(sql, rows)


_MAX_ROWS_A_STATEMENT = 64
_MAX_PARAMETERS = 999
"""SQLite's smallest limit on a statement's parameters (builds before 3.32)."""
_MULTI_ROW_SQL: dict[tuple[str, int], str] = {}


def _sqlite_insert(conn: Any, head: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``head`` (``INSERT ... INTO t (columns)``) for ``rows``, as multi-row INSERTs of up
    to 64 rows (in chunks of powers of two: a few statements per table, each prepared once
    and cached by the driver).

    Why not ``executemany``: the driver lets go of the GIL around each row's step and takes
    it back after, and while a run is executing Python on another thread taking it back waits
    up to the interpreter's switch interval (5 ms). The writer thread then inserts about a row
    per switch interval while runs go on, and its whole batch waits for the runs to pause. A
    multi-row statement binds its values once and runs all its rows in one step without the
    GIL, in parallel with the runs."""
    if not rows:
        return
    most = min(_MAX_ROWS_A_STATEMENT, _MAX_PARAMETERS // len(rows[0]))
    most = 1 << (most.bit_length() - 1)
    i, n = 0, len(rows)
    while i < n:
        size = min(most, 1 << ((n - i).bit_length() - 1))
        sql = _MULTI_ROW_SQL.get((head, size))
        if sql is None:
            one = f"({', '.join('?' * len(rows[0]))})"
            sql = _MULTI_ROW_SQL[(head, size)] = f"{head} VALUES {', '.join([one] * size)}"
        conn.exec_driver_sql(sql, tuple(chain.from_iterable(rows[i : i + size])))
        i += size


def _run_models(spans: list[SpanRecord]) -> list[tuple[str, str]]:
    """(run id, model) of each model span's requested model, once each."""
    found: set[tuple[str, str]] = set()
    for s in spans:
        if s.kind == "model":
            model = s.attributes.get(REQUEST_MODEL)
            if isinstance(model, str) and model:
                found.add((s.run_id, column_text(model, RUN_MODEL) or model))
    return sorted(found)  # one order: two writers' inserts never wait on each other in turn


def _insert_dicts(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows given as dicts (all with the same keys): on SQLite through the driver's
    ``executemany``, as :func:`insert_rows`; elsewhere through Core."""
    if conn.dialect.paramstyle != "qmark":
        conn.execute(table.insert(), rows)
        return
    head = f"INSERT INTO {table.name} ({', '.join(rows[0])})"
    _sqlite_insert(conn, head, [tuple(row.values()) for row in rows])


_END_RUN_SQLITE = (
    f"UPDATE {tables.runs.name} SET "
    + ", ".join(f"{f} = ?" for f in (*_RUN_END_FIELDS, "attributes"))
    + ", input = COALESCE(NULLIF(?, ''), input)"
    + " WHERE run_id = ? AND started_ns = ?"
)
_END_RUN_ORDER = tuple(
    f"b_{f}" for f in (*_RUN_END_FIELDS, "attributes", "input", "run_id", "started_ns")
)


def _end_runs(conn: Any, params: list[dict[str, Any]]) -> None:
    """The prepared run-end UPDATE for every run that ended in a batch; on SQLite through the
    driver's ``executemany`` (as :func:`insert_rows`)."""
    if conn.dialect.paramstyle != "qmark":
        conn.execute(_END_RUN, params)
        return
    conn.exec_driver_sql(_END_RUN_SQLITE, [tuple(p[k] for k in _END_RUN_ORDER) for p in params])


def _run_end_params(r: RunRecord) -> dict[str, Any]:
    params = {f"b_{f}": getattr(r, f) for f in _RUN_END_FIELDS}
    params["b_output"], params["b_error"] = clean_text(r.output), clean_text(r.error)
    params["b_status"] = column_text(r.status, RUN_STATUS)
    params["b_outcome"] = column_text(r.outcome, RUN_OUTCOME)
    params["b_attributes"] = dumps_attributes(r.attributes)
    params["b_input"] = clean_text(r.input)
    params["b_run_id"] = r.run_id
    params["b_started_ns"] = r.started_ns
    return params


def new_run_seqs(count: int) -> range:
    """``run_seq`` values for ``count`` runs written now (``tables.runs``): the clock in ns,
    one apart. They grow with each write (up to the clock's steps), which is all the spans'
    run index needs; they need not be unique."""
    first = time.time_ns()
    return range(first, first + count)


def _run_seqs(conn: Any, spans: list[SpanRecord], known: dict[str, int]) -> dict[str, int]:
    """The ``run_seq`` of each span's run: ``known`` (runs written in this batch), the others
    read from the store (a run that started in an earlier batch). A run not stored has none:
    its spans are then refused by the foreign key, as before."""
    missing = {s.run_id for s in spans if s.run_id not in known}
    if not missing:
        return known
    found = dict(known)
    runs = tables.runs.c
    ids = sorted(missing)
    for i in range(0, len(ids), _IDS_PER_QUERY):
        query = select(runs.run_id, runs.run_seq).where(
            runs.run_id.in_(ids[i : i + _IDS_PER_QUERY])
        )
        found.update((run_id, seq) for run_id, seq in conn.execute(query))
    return found


_IDS_PER_QUERY = 1000
"""Run ids per ``IN (...)`` (SQLite takes at most 32,766 parameters a statement)."""


def _run_rows(
    started: list[RunRecord], ended: list[RunRecord]
) -> tuple[list[dict[str, Any]], list[RunRecord]]:
    """The rows to insert for the runs started in a batch, and the run ends left to update.
    A run that also ends in the batch (most do: the writer takes what a short run wrote at
    once) is inserted as its end leaves it, the row an INSERT and then the end's UPDATE would
    give, in one statement instead of two. Each row gets a new ``run_seq``."""
    seqs = new_run_seqs(len(started))
    if not ended:
        return [run_row(r, run_seq=seq) for r, seq in zip(started, seqs, strict=True)], ended
    last = {(r.run_id, r.started_ns): r for r in ended}  # the last end of a run wins, as updates
    rows, merged = [], set()
    for r, seq in zip(started, seqs, strict=True):
        key = (r.run_id, r.started_ns)
        end = last.get(key)
        if end is not None:
            merged.add(key)
        rows.append(run_row(r, end, run_seq=seq))
    if not merged:
        return rows, ended
    return rows, [r for r in ended if (r.run_id, r.started_ns) not in merged]


def run_row(
    r: RunRecord, end: RunRecord | None = None, *, run_seq: int | None = None
) -> dict[str, Any]:
    """A run's row of ``tether_runs`` as the store writes it, by column (in column order).
    ``end``: the run's end, when it is written with its start: the row an INSERT of the start
    and then the end's UPDATE would leave (the end's fields and attributes), built once.
    ``run_seq``: the key its spans are stored under (``new_run_seqs``)."""
    e = r if end is None else end  # what the end's UPDATE sets (_RUN_END_FIELDS, attributes)
    return {
        "run_id": r.run_id,
        "trace_id": r.trace_id,
        "project": column_text(r.project, RUN_PROJECT),
        "kind": column_text(r.kind, RUN_KIND),
        "entry_point": column_text(r.entry_point, RUN_ENTRY_POINT),
        "agent_name": column_text(r.agent_name, RUN_AGENT),
        "agent_version": column_text(r.agent_version, RUN_VERSION),
        "caller": None if r.caller is None else dumps_attributes(r.caller),
        "status": column_text(e.status, RUN_STATUS),
        "outcome": column_text(e.outcome, RUN_OUTCOME),
        "input": clean_text(e.input or r.input),  # as the end states it (see _END_RUN)
        "output": clean_text(e.output),
        "started_ns": r.started_ns,
        "ended_ns": e.ended_ns,
        "input_tokens": e.input_tokens,
        "output_tokens": e.output_tokens,
        "cached_input_tokens": e.cached_input_tokens,
        "cost_usd": e.cost_usd,
        "turns": e.turns,
        "tool_calls": e.tool_calls,
        "error": clean_text(e.error),
        "attributes": dumps_attributes(e.attributes),
        "run_seq": run_seq,
    }


class Store(StoreReader):
    """The trace store behind one database URL: a ``StoreReader`` that also writes trace
    batches. Thread-safe: every call takes a connection."""

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
                ended = batch.runs_ended
                seqs: dict[str, int] = {}
                if batch.runs_started:
                    rows, ended = _run_rows(batch.runs_started, ended)
                    seqs = {row["run_id"]: row["run_seq"] for row in rows}
                    _insert_dicts(conn, tables.runs, rows)
                if batch.spans:
                    seq_of = _run_seqs(conn, batch.spans, seqs).get
                    insert_rows(
                        conn,
                        tables.spans,
                        [
                            (
                                s.span_id,
                                s.run_id,
                                s.trace_id,
                                s.parent_id,
                                column_text(s.name, SPAN_NAME),
                                column_text(s.kind, SPAN_KIND),
                                s.start_ns,
                                s.end_ns,
                                column_text(s.status, SPAN_STATUS),
                                clean_text(s.status_message),
                                cached.get(id(s)) or dumps_attributes(s.attributes),
                                seq_of(s.run_id),
                            )
                            for s in batch.spans
                        ],
                    )
                    models = _run_models(batch.spans)
                    if models:
                        insert_rows(conn, tables.run_models, models, skip_existing=True)
                if batch.events:
                    insert_rows(
                        conn,
                        tables.events,
                        [
                            (
                                e.run_id,
                                e.trace_id,
                                e.span_id,
                                column_text(e.name, EVENT_NAME),
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
                if ended:
                    _end_runs(conn, [_run_end_params(r) for r in ended])
                if batch.audit:
                    from tether.store.audit import append_audit, audit_key, without_existing_audit

                    entries = batch.audit
                    if skip_existing:
                        entries = without_existing_audit(conn, entries)
                    append_audit(conn, entries, audit_key())
        except SQLAlchemyError as exc:
            raise self._failed("writing to", exc) from exc
        except Exception as exc:  # attributes that cannot be serialized (or whose str() fails)
            raise StoreError(
                f"a trace record cannot be serialized: {type(exc).__name__}: {exc}"
            ) from exc

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Connection]:
        """One write transaction for work that reads before it writes (``POST /v1/traces``):
        committed when the block ends, rolled back (and ``StoreError``) if it raises. On SQLite
        it holds the file's write lock from its first statement (``BEGIN IMMEDIATE``), so what
        it reads cannot change before it writes, in this process or another; on PostgreSQL the
        caller takes the locks its work needs (``pg_advisory_xact_lock``).

        ``durable``: on SQLite the commit is synced to disk before it returns
        (``synchronous=FULL`` for this transaction): the store's ``NORMAL`` keeps a commit
        through a crash of the process, not through one of the machine (a power cut can take
        back the last commits), and a caller that answers "stored" after the commit (OTLP's
        2xx) must not be taken back. PostgreSQL's commits are synced already."""
        self.ensure_ready()
        try:
            with self.engine.connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                if sqlite and durable:
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                try:
                    if sqlite:
                        # pysqlite would begin a deferred transaction at the first write only.
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
                    conn.commit()
                finally:
                    if sqlite and durable:
                        conn.rollback()  # (none left open: the pragma is refused inside one)
                        conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        except SQLAlchemyError as exc:
            raise self._failed("writing to", exc) from exc

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
        return [run_from_row(r) for r in self._read(stmt)]
