"""``Store``: writes trace batches and reads runs, spans, events and checkpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, RowMapping, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from tether.core import StoreError, scrub_surrogates
from tether.store import tables
from tether.store.db import create_store_engine, migrate, redact_url
from tether.store.records import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    TraceBatch,
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


# Built once: ``json.dumps`` with non-default options builds a new encoder on every call.
_encode_utf8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def dumps_attributes(value: dict[str, Any]) -> str:
    """Attributes as the store keeps them: compact JSON, anything unserializable as ``str``."""
    text: str = _encode_utf8(value)
    # A lone surrogate (only in a string, so inside a JSON string literal) becomes U+FFFD, as
    # in the text columns: escaped, it would come back on reading and break every UTF-8
    # output the trace is shown on.
    return text if text.isascii() else scrub_surrogates(text)


def _text(value: str | None) -> str | None:
    """Text any database accepts: no NUL (PostgreSQL refuses it) and no lone surrogates (not
    encodable as UTF-8). One stray character in user input must not lose a trace."""
    if not value:
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value if value.isascii() else scrub_surrogates(value)


# One prepared UPDATE for every run that ended in a batch, executed as executemany.
_END_RUN = (
    update(tables.runs)
    .where(tables.runs.c.trace_id == bindparam("b_trace_id"))
    # A reused trace id must not overwrite the run that owns it.
    .where(tables.runs.c.started_ns == bindparam("b_started_ns"))
    .values({f: bindparam(f"b_{f}") for f in (*_RUN_END_FIELDS, "attributes")})
)


def _fit(value: str | None, length: int) -> str | None:
    """Clip to the column's length: PostgreSQL refuses longer values, and one long tool name
    from a model must not cost the whole span."""
    return value[:length] if value is not None and len(value) > length else value


def _length(column: Any) -> int:
    return int(column.type.length)


# Column lengths, read once (the write path runs per record).
_RUN_AGENT, _RUN_VERSION = _length(tables.runs.c.agent_name), _length(tables.runs.c.agent_version)
_RUN_STATUS, _RUN_OUTCOME = _length(tables.runs.c.status), _length(tables.runs.c.outcome)
_SPAN_NAME, _SPAN_KIND = _length(tables.spans.c.name), _length(tables.spans.c.kind)
_SPAN_STATUS = _length(tables.spans.c.status)
_EVENT_NAME = _length(tables.events.c.name)
_CHECKPOINT_REASON = _length(tables.checkpoints.c.reason)


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


def _run_end_params(r: RunRecord) -> dict[str, Any]:
    params = {f"b_{f}": getattr(r, f) for f in _RUN_END_FIELDS}
    params["b_output"], params["b_error"] = _text(r.output), _text(r.error)
    params["b_status"] = _text(_fit(r.status, _RUN_STATUS))
    params["b_outcome"] = _text(_fit(r.outcome, _RUN_OUTCOME))
    params["b_attributes"] = dumps_attributes(r.attributes)
    params["b_trace_id"] = r.trace_id
    params["b_started_ns"] = r.started_ns
    return params


def _run_row(r: RunRecord) -> dict[str, Any]:
    return {
        "trace_id": r.trace_id,
        "agent_name": _text(_fit(r.agent_name, _RUN_AGENT)),
        "agent_version": _text(_fit(r.agent_version, _RUN_VERSION)),
        "status": _text(_fit(r.status, _RUN_STATUS)),
        "outcome": _text(_fit(r.outcome, _RUN_OUTCOME)),
        "input": _text(r.input),
        "output": _text(r.output),
        "started_ns": r.started_ns,
        "ended_ns": r.ended_ns,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_input_tokens": r.cached_input_tokens,
        "cost_usd": r.cost_usd,
        "turns": r.turns,
        "tool_calls": r.tool_calls,
        "error": _text(r.error),
        "attributes": dumps_attributes(r.attributes),
    }


def _run_from(row: RowMapping) -> RunRecord:
    data = dict(row)
    data["attributes"] = json.loads(data["attributes"])
    return RunRecord(**data)


def _chunks(values: Sequence[Any], size: int = 500) -> Any:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _existing(conn: Any, columns: Sequence[Any], key: Any, values: set[Any]) -> set[Any]:
    found: set[Any] = set()
    for chunk in _chunks(sorted(values)):
        for row in conn.execute(select(*columns).where(key.in_(chunk))):
            found.add(tuple(row) if len(columns) > 1 else row[0])
    return found


def _without_existing(conn: Any, batch: TraceBatch) -> TraceBatch:
    """The batch minus what is already stored: runs by id, spans by id, events by (trace,
    name, time), checkpoints by (trace, time). Run ends are updates, idempotent already."""
    runs, spans, events = tables.runs.c, tables.spans.c, tables.events.c
    checks = tables.checkpoints.c
    have_runs = _existing(
        conn, [runs.trace_id], runs.trace_id, {r.trace_id for r in batch.runs_started}
    )
    have_spans = _existing(conn, [spans.span_id], spans.span_id, {s.span_id for s in batch.spans})
    have_events = _existing(
        conn,
        [events.trace_id, events.name, events.time_ns],
        events.trace_id,
        {e.trace_id for e in batch.events},
    )
    have_checks = _existing(
        conn,
        [checks.trace_id, checks.created_ns],
        checks.trace_id,
        {c.trace_id for c in batch.checkpoints},
    )
    return TraceBatch(
        runs_started=[r for r in batch.runs_started if r.trace_id not in have_runs],
        spans=[s for s in batch.spans if s.span_id not in have_spans],
        events=[
            e
            for e in batch.events
            if (e.trace_id, _text(_fit(e.name, _EVENT_NAME)), e.time_ns) not in have_events
        ],
        checkpoints=[c for c in batch.checkpoints if (c.trace_id, c.created_ns) not in have_checks],
        runs_ended=batch.runs_ended,
        attributes_json=batch.attributes_json,
    )


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

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: TraceBatch, *, skip_existing: bool = False) -> None:
        """Write a batch in one transaction: all of it, or none of it (and ``StoreError``).

        ``skip_existing`` leaves out records the store already has (replaying a crash
        journal whose records may have been committed just before the crash).
        """
        self.ensure_ready()
        try:
            with self.engine.begin() as conn:
                if skip_existing:
                    batch = _without_existing(conn, batch)
                cached = batch.attributes_json
                if batch.runs_started:
                    conn.execute(tables.runs.insert(), [_run_row(r) for r in batch.runs_started])
                if batch.spans:
                    _insert(
                        conn,
                        tables.spans,
                        [
                            (
                                s.span_id,
                                s.trace_id,
                                s.parent_id,
                                _text(_fit(s.name, _SPAN_NAME)),
                                _text(_fit(s.kind, _SPAN_KIND)),
                                s.start_ns,
                                s.end_ns,
                                _text(_fit(s.status, _SPAN_STATUS)),
                                _text(s.status_message),
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
                                e.trace_id,
                                e.span_id,
                                _text(_fit(e.name, _EVENT_NAME)),
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
                                "trace_id": c.trace_id,
                                "schema_version": c.schema_version,
                                "created_ns": c.created_ns,
                                "reason": _text(_fit(c.reason, _CHECKPOINT_REASON)),
                                "state": c.state_json,
                            }
                            for c in batch.checkpoints
                        ],
                    )
                if batch.runs_ended:
                    conn.execute(_END_RUN, [_run_end_params(r) for r in batch.runs_ended])
        except SQLAlchemyError as exc:
            # The driver's message without the SQL parameters (they hold user content).
            detail = getattr(exc, "orig", None) or type(exc).__name__
            raise StoreError(f"writing to {self.display_url} failed: {detail}") from exc
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
            detail = getattr(exc, "orig", None) or type(exc).__name__
            raise StoreError(f"reading from {self.display_url} failed: {detail}") from exc

    def list_runs(self, *, limit: int = 20, agent: str | None = None) -> list[RunRecord]:
        """Newest runs first."""
        stmt = select(tables.runs).order_by(tables.runs.c.started_ns.desc()).limit(limit)
        if agent:
            stmt = stmt.where(tables.runs.c.agent_name == agent)
        return [_run_from(r) for r in self._read(stmt)]

    def get_run(self, trace_id: str) -> RunRecord:
        """The run with this id, or with this unique id prefix (at least 6 characters)."""
        if len(trace_id) < 6:
            raise StoreError(f"trace id {trace_id!r} is too short; give at least 6 characters")
        # autoescape: '%' and '_' in the prefix are literal characters, not LIKE wildcards.
        stmt = (
            select(tables.runs)
            .where(tables.runs.c.trace_id.startswith(trace_id.lower(), autoescape=True))
            .limit(2)
        )
        rows = self._read(stmt)
        if not rows:
            raise StoreError(
                f"no trace {trace_id!r} in {self.display_url}",
                hint="list recent traces with: tether traces list",
            )
        if len(rows) > 1:
            raise StoreError(f"trace id prefix {trace_id!r} is ambiguous; give more characters")
        return _run_from(rows[0])

    def get_spans(self, trace_id: str) -> list[SpanRecord]:
        stmt = (
            select(tables.spans)
            .where(tables.spans.c.trace_id == trace_id)
            .order_by(tables.spans.c.start_ns, tables.spans.c.span_id)
        )
        out = []
        for row in self._read(stmt):
            data = dict(row)
            data["attributes"] = json.loads(data["attributes"])
            out.append(SpanRecord(**data))
        return out

    def get_events(self, trace_id: str) -> list[EventRecord]:
        stmt = (
            select(tables.events)
            .where(tables.events.c.trace_id == trace_id)
            .order_by(tables.events.c.time_ns, tables.events.c.id)
        )
        return [
            EventRecord(
                trace_id=r["trace_id"],
                span_id=r["span_id"],
                name=r["name"],
                time_ns=r["time_ns"],
                attributes=json.loads(r["attributes"]),
            )
            for r in self._read(stmt)
        ]

    def get_checkpoints(self, trace_id: str) -> list[CheckpointRecord]:
        stmt = (
            select(tables.checkpoints)
            .where(tables.checkpoints.c.trace_id == trace_id)
            .order_by(tables.checkpoints.c.created_ns, tables.checkpoints.c.id)
        )
        return [
            CheckpointRecord(
                trace_id=r["trace_id"],
                schema_version=r["schema_version"],
                created_ns=r["created_ns"],
                state_json=r["state"],
                reason=r["reason"],
            )
            for r in self._read(stmt)
        ]
