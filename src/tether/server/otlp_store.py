"""Storing one ``POST /v1/traces`` request: its spans join runs, in one transaction.

Each span joins the run of its root span (a run per root span, ``run_id`` = the root's span
id, project of the API key, entry point ``otlp``). A span whose parent has not arrived yet
(exporters send children first: they end first) goes into a *pending* run, ``running`` until
the parent arrives: the one of its project waiting for that parent (``tether_otlp_waits``:
missing parent -> run), else a new one named after it. When a span arrives that a pending
run waits for, and its own parent is missing too, the pending run keeps its id and waits for
that parent instead (``_keep_pending_runs``: a chain sent leaf first, one span a request,
moves none of its spans until its root comes); else the pending run's spans and events move into the
arriving span's run (so a chain of any depth, sent in any order, ends in its root's run);
when the root arrives, its run gets the root's name, input, output, status and the totals
(tokens, cost) of its model spans.

One request is one transaction: everything it reads (which spans and runs exist) and writes
(runs, spans, events, moved pending runs, the root's totals) commits together or not at all,
and the reply is sent after the commit. Two requests touching the same trace, in one process
or two, take their turns: on SQLite the transaction holds the file's write lock from its start
(``BEGIN IMMEDIATE``); on PostgreSQL it takes a transaction-scoped advisory lock per trace id
first (OpenTelemetry parents and children share their trace id), then one per run id it may
create (its roots, the parents it lacks: a sender chooses its trace ids), in one order.

Projects share the id space: a span of one project may name as its missing parent a span of
another project's trace (a service called by it, reading its id off ``traceparent``), and
pending runs of several projects may wait for one span (each project's under an id of its
own). When that span arrives, root or not, every other project's pending run waiting for it
ends: each of its spans that named it becomes the root of a run of its own project
(``_end_foreign_pending_run``), and the span is stored; a span naming a parent stored in
another project is the root of a run of its own project at once (``_runs_of``).

This path needs no crash journal (the runtime's trace writer keeps one because its records
are accepted before they are committed): nothing is acknowledged before its commit, so a
crash before it loses nothing the sender was told is stored, the sender's exporter sends the
request again (a 5xx or a dropped connection is retryable in OTLP), and a request sent again
stores nothing twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Connection

from tether.core import EntryPoint, RunKind
from tether.core.jsontext import json_text
from tether.server.otlp_mapping import (
    InvalidSpan,
    MappedSpan,
    attributes_of,
    map_span,
    run_input,
    run_output,
)
from tether.store import RunRecord, Store, tables
from tether.store.repository import REQUEST_MODEL, insert_rows, new_run_seqs, run_row
from tether.store.values import RUN_AGENT, RUN_MODEL, RUN_VERSION, clean_text, column_text, fit
from tether.trace import semconv
from tether.trace.pricing import pricing_from_env, round_cost

ERROR_EVENT_BY_KIND = {
    "tool": semconv.EVENT_TOOL_ERROR,
    "model": semconv.EVENT_MODEL_ERROR,
}
"""The Tether event a failed span adds (what puts its run in an error category)."""
RUN_KIND_BY_SPAN = {
    "agent": RunKind.AGENT_RUN,
    "model": RunKind.MODEL_REQUEST,
    "tool": RunKind.TOOL_CALL,
}
OTLP = EntryPoint.OTLP.value
_LOCK_SPACE = 0x7E7E_0002
"""The first key of PostgreSQL's two-key advisory locks taken per trace (the second: 32 bits
of the trace id). Another space than the migration lock's single key."""
_RUN_LOCK_SPACE = 0x7E7E_0003
"""The first key of the advisory locks taken per run id a request may create
(``_run_id_claims``)."""
_ALL_LOCK_SPACE = 0x7E7E_0004
"""The first key of the one advisory lock every request takes first: shared, or exclusive by
a request with more than ``_MAX_LOCK_KEYS`` keys (it takes no others)."""
_MAX_LOCK_KEYS = 256
"""The most per-trace and per-run advisory locks one request takes. PostgreSQL keeps every
lock in one shared table of ``max_locks_per_transaction`` x ``max_connections`` entries (6,400
by default): a request of 10,000 orphan spans with random ids took ~30,000, failed with 'out
of shared memory' (a 503 its exporter sends again, for ever), and while it tried, other
transactions on the database could find the table full too."""
_CHUNK = 1000
"""Ids per ``IN (...)`` on SQLite (far below its limit of 32,766 parameters)."""


@dataclass
class Ingested:
    """What one request stored and what it turned away."""

    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected += count
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)


def mapped_spans(message: ExportTraceServiceRequest, result: Ingested) -> list[MappedSpan]:
    """The request's valid spans, once each; the others are counted in ``result``."""
    pricing = pricing_from_env()
    out: dict[str, MappedSpan] = {}
    for rs in message.resource_spans:
        service = attributes_of(rs.resource.attributes).get("service.name")
        if not isinstance(service, str):
            service = None
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    m = map_span(span, service, pricing)
                except InvalidSpan as exc:
                    result.reject(str(exc))
                    continue
                if m.span_id in out:
                    result.reject(f"span {m.span_id} appears twice in the request")
                    continue
                out[m.span_id] = m
    return list(out.values())


def ingest(store: Store, project: str, message: ExportTraceServiceRequest) -> Ingested:
    """Store the request's spans for ``project`` in one transaction; what was accepted and
    rejected. ``StoreError`` (nothing stored) when the store fails."""
    result = Ingested()
    spans = mapped_spans(message, result)
    if spans:
        with store.transaction(durable=True) as conn:  # a 2xx survives a power cut
            _lock_traces(conn, {m.trace_id for m in spans}, _run_id_claims(spans))
            result.accepted = _store(conn, project, spans, result)
    return result


# -- reading what is there ------------------------------------------------------------------


def _run_id_claims(spans: list[MappedSpan]) -> set[str]:
    """The ids the request may create a run under: its roots' span ids, the parents it
    lacks (a pending run is named after one, or waits for one) and the spans lacking them (a
    root, when the parent is another project's). Two requests claiming one id take turns
    even when their trace ids differ (a request's trace id is the sender's to choose)."""
    ids = {m.span_id for m in spans}
    roots = {m.span_id for m in spans if m.parent_id is None}
    lacking = [m for m in spans if m.parent_id is not None and m.parent_id not in ids]
    # A span whose parent is not in the request is its run's root when that parent is another
    # project's: it claims its own id too.
    return roots | {m.parent_id for m in lacking if m.parent_id} | {m.span_id for m in lacking}


def _lock_keys(ids: Iterable[str]) -> list[int]:
    return sorted({int.from_bytes(bytes.fromhex(i[:8]), "big", signed=True) for i in ids})


def _lock_traces(conn: Connection, trace_ids: set[str], run_ids: set[str]) -> None:
    """PostgreSQL: wait for the other transactions writing any of these traces, or claiming
    any of these run ids (SQLite's ``BEGIN IMMEDIATE`` has serialized every writer already).
    Without the run ids, a request of another project that named a missing parent after a
    root being committed under its own trace id read the run as absent, had its insert of the
    run skipped as existing, and wrote its spans into the other project's run. Keys in one
    order (the one every request takes, traces, then run ids): no deadlock. A request with
    more keys than ``_MAX_LOCK_KEYS`` waits for every other instead (``_ALL_LOCK_SPACE``)."""
    if conn.dialect.name != "postgresql":
        return
    traces, runs = _lock_keys(trace_ids), _lock_keys(run_ids)
    if len(traces) + len(runs) > _MAX_LOCK_KEYS:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, 0)", (_ALL_LOCK_SPACE,))
        return
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock_shared(%s, 0)", (_ALL_LOCK_SPACE,))
    conn.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) AS k",
        (_LOCK_SPACE, traces),
    ).all()
    conn.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) AS k",
        (_RUN_LOCK_SPACE, runs),
    ).all()


def _in(conn: Connection, sql: str, ids: Iterable[str]) -> Iterator[Any]:
    """Rows of ``sql``, whose ``{ids}`` is a list of ids, for ``ids`` (one parameter on
    PostgreSQL, chunks on SQLite)."""
    values = sorted(set(ids))
    if not values:
        return
    if conn.dialect.paramstyle == "qmark":
        for i in range(0, len(values), _CHUNK):
            chunk = values[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            yield from conn.exec_driver_sql(sql.format(ids=marks), tuple(chunk))
    else:
        yield from conn.exec_driver_sql(sql.format(ids="SELECT unnest(%s::text[])"), (values,))


def _stored_spans(conn: Connection, ids: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """(run id, project, trace id) of the stored spans among ``ids``."""
    sql = (
        "SELECT s.span_id, s.run_id, r.project, s.trace_id FROM tether_spans s "
        "JOIN tether_runs r ON r.run_id = s.run_id WHERE s.span_id IN ({ids})"
    )
    return {row[0]: (row[1], row[2], row[3]) for row in _in(conn, sql, ids)}


_TOTALS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "turns",
    "tool_calls",
)


@dataclass(slots=True)
class _StoredRun:
    project: str
    status: str
    entry_point: str
    started_ns: int
    attributes: str
    run_seq: int | None
    totals: tuple[Any, ...]
    """The ``_TOTALS`` columns."""

    @property
    def pending(self) -> bool:
        """A run named after a span not arrived yet (its root never has)."""
        return self.status == "running" and self.entry_point == OTLP


def _stored_runs(conn: Connection, ids: Iterable[str]) -> dict[str, _StoredRun]:
    sql = (
        "SELECT run_id, project, status, entry_point, started_ns, attributes, run_seq, "
        f"{', '.join(_TOTALS)} FROM tether_runs WHERE run_id IN ({{ids}})"
    )
    return {
        row[0]: _StoredRun(row[1], row[2], row[3], row[4], row[5], row[6], tuple(row[7:]))
        for row in _in(conn, sql, ids)
    }


def _waiting(
    conn: Connection, ids: Iterable[str], project: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The pending runs waiting for ``ids`` (``tether_otlp_waits``: a pending run waits for
    the missing parent of its topmost span): ``project``'s, one a span, and other projects'
    (projects share the span id space: a service names its caller's span, another
    project's, through ``traceparent``; several may wait for one span)."""
    sql = (
        "SELECT w.span_id, w.run_id, r.project FROM tether_otlp_waits w "
        "JOIN tether_runs r ON r.run_id = w.run_id WHERE w.span_id IN ({ids})"
    )
    own: dict[str, str] = {}
    foreign: dict[str, list[str]] = {}
    for span_id, run_id, owner in _in(conn, sql, ids):
        if owner == project:
            own[span_id] = run_id
        else:
            foreign.setdefault(span_id, []).append(run_id)
    return own, foreign


def _waits_exist(conn: Connection, ids: Iterable[str]) -> bool:
    """Whether any run, of any project, waits for one of ``ids``."""
    sql = "SELECT span_id FROM tether_otlp_waits WHERE span_id IN ({ids})"
    return next(_in(conn, sql, ids), None) is not None


def _free_run_ids(conn: Connection, count: int, taken: Iterable[str]) -> list[str]:
    """``count`` random run ids no run has (nor any in ``taken``), looked up together."""
    sql = "SELECT run_id FROM tether_runs WHERE run_id IN ({ids})"
    found: set[str] = set()
    avoid = set(taken)
    while len(found) < count:
        drawn = {secrets.token_hex(8) for _ in range(count - len(found))} - avoid
        drawn -= {row[0] for row in _in(conn, sql, drawn)}
        found |= drawn
        avoid |= drawn
    return sorted(found)


# -- which run each span joins ----------------------------------------------------------------

_FOREIGN = ""
"""A span stored in another project (it is refused: its id is taken)."""


def _runs_of(
    by_id: dict[str, MappedSpan],
    stored: dict[str, tuple[str, str, str]],
    project: str,
    waiting: dict[str, str],
) -> dict[str, str]:
    """The run each span joins by its chain of parents: the run of the first stored span on
    the chain; the root's own id when the chain ends at a root in the request; the id of the
    span whose parent is another project's, when the chain reaches one (a service of this
    project called by one of another, whose span it names through ``traceparent``: its part
    of the trace is a run of its own, nothing is attached to the other project's); else the
    pending run waiting for the missing parent (``waiting``), or a new one named after it."""
    found: dict[str, str] = {}
    for sid, span in by_id.items():
        # Most spans: a root in the request, or a new child whose parent's run is known.
        if sid not in stored:
            parent_id = span.parent_id
            if parent_id is None:
                found[sid] = sid
                continue
            if parent_id != sid and (known := found.get(parent_id)) is not None:
                found[sid] = known
                continue
        path: list[str] = []
        on_path: set[str] = set()
        cur = sid
        while True:
            if cur in found:
                run = found[cur]
                break
            have = stored.get(cur)
            if have is not None:
                # Another project's: the span below it on the chain is this project's root.
                run = have[0] if have[1] == project else path[-1] if path else _FOREIGN
                break
            path.append(cur)
            on_path.add(cur)
            parent = by_id[cur].parent_id
            if parent is None or parent in on_path:  # a root (or a cycle: its first span)
                run = cur
                break
            if parent not in by_id:
                have = stored.get(parent)
                if have is None:
                    run = waiting.get(parent, parent)
                else:
                    run = have[0] if have[1] == project else cur
                break
            cur = parent
        for s in path:
            found[s] = run
        found[sid] = run  # (a span stored already is not on the path)
    return found


def _final(run_id: str, merged_into: dict[str, str]) -> str:
    seen = {run_id}
    while run_id in merged_into and merged_into[run_id] not in seen:
        run_id = merged_into[run_id]
        seen.add(run_id)
    return run_id


# -- runs -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    turns: int = 0
    tool_calls: int = 0
    started_ns: int | None = None
    first_model: tuple[int, dict[str, Any], dict[str, Any]] | None = None
    """The first model span's start, attributes and messages as data (its input is the run's
    when the root span states none: an OpenTelemetry agent span rarely does)."""
    last_model: tuple[int, dict[str, Any], dict[str, Any]] | None = None
    """The last model span's likewise (its output is the run's)."""

    def add(
        self,
        kind: str,
        start_ns: int,
        a: dict[str, Any] | None,
        messages: dict[str, Any] | None = None,
    ) -> None:
        """Count a span (``a``: a model span's attributes; ``messages``: its messages as
        data, when ``a`` holds them as JSON text)."""
        if self.started_ns is None or start_ns < self.started_ns:
            self.started_ns = start_ns
        if kind == "model" and a is not None:
            seen = (start_ns, a, a if messages is None else messages)
            if self.first_model is None or start_ns < self.first_model[0]:
                self.first_model = seen
            if self.last_model is None or start_ns >= self.last_model[0]:
                self.last_model = seen
            self.turns += 1
            self.input_tokens += int(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS) or 0)
            self.output_tokens += int(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS) or 0)
            self.cached_input_tokens += int(
                a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) or 0
            )
            if a.get(semconv.TETHER_COST_UNPRICED):
                self.unpriced += 1
            else:
                self.cost_usd += float(a.get(semconv.TETHER_COST_USD) or 0)
        elif kind == "tool":
            self.tool_calls += 1

    def texts(self) -> tuple[str | None, str | None]:
        """What the run was asked (the first model call's first user message) and answered
        (the last model call's reply), from its model spans."""
        asked = answered = None
        if self.first_model is not None:
            asked = run_input(self.first_model[1], self.first_model[2])
        if self.last_model is not None:
            answered = run_output(self.last_model[1], self.last_model[2])
        return asked, answered

    def add_totals(self, other: _Totals) -> None:
        for name in (*_TOTALS, "unpriced"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.started_ns is not None:
            self.add("", other.started_ns, None)

    @classmethod
    def of_run(cls, run: _StoredRun) -> _Totals:
        """A stored run's totals (of the spans it had)."""
        totals = cls(**dict(zip(_TOTALS, run.totals, strict=True)))
        unpriced = orjson.loads(run.attributes).get(semconv.TETHER_COST_UNPRICED)
        totals.unpriced = unpriced if isinstance(unpriced, int) else 0
        totals.started_ns = run.started_ns
        return totals

    def columns(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _TOTALS}
        values["cost_usd"] = round_cost(self.cost_usd)
        return values


def _with_unpriced(attributes: dict[str, Any], totals: _Totals) -> dict[str, Any]:
    if totals.unpriced:
        attributes[semconv.TETHER_COST_UNPRICED] = totals.unpriced
    else:
        attributes.pop(semconv.TETHER_COST_UNPRICED, None)
    return attributes


def _run_of_root(project: str, root: MappedSpan, totals: _Totals) -> RunRecord:
    a = root.attributes
    asked, answered = root.run_input, root.run_output
    if asked is None or answered is None:  # the root states none: its model calls tell
        from_models = totals.texts()
        asked = from_models[0] if asked is None else asked
        answered = from_models[1] if answered is None else answered
    agent = a.get(semconv.GEN_AI_AGENT_NAME) or a.get("service.name")
    version = a.get("gen_ai.agent.version") or a.get("service.version")
    failed = root.failed
    return RunRecord(
        trace_id=root.trace_id,
        run_id=root.span_id,
        agent_name=fit(clean_text(str(agent)), RUN_AGENT) if agent else None,
        agent_version=fit(clean_text(str(version)), RUN_VERSION) if version else None,
        started_ns=root.start_ns,
        status="failed" if failed else "completed",
        outcome="error" if failed else "final_answer",
        input=asked or "",
        output=answered,
        ended_ns=root.end_ns,
        error=(root.status_message or "error") if failed else None,
        attributes=_with_unpriced({semconv.TETHER_ENTRY_POINT: OTLP}, totals),
        project=project,
        kind=RUN_KIND_BY_SPAN.get(root.kind, RunKind.AGENT_RUN).value,
        entry_point=OTLP,
        **totals.columns(),
    )


def _pending_run(project: str, run_id: str, members: list[MappedSpan]) -> RunRecord:
    first = min(members, key=lambda m: m.start_ns)
    return RunRecord(
        trace_id=first.trace_id,
        run_id=run_id,
        agent_name=None,
        agent_version=None,
        started_ns=first.start_ns,
        input="",
        attributes={semconv.TETHER_ENTRY_POINT: OTLP},
        project=project,
        kind=RunKind.AGENT_RUN.value,
        entry_point=OTLP,
    )


_ROOT_COLUMNS = (
    "agent_name",
    "agent_version",
    "kind",
    "status",
    "outcome",
    "input",
    "output",
    "started_ns",
    "ended_ns",
    "error",
)


def _error_event(m: MappedSpan, root: bool) -> tuple[Any, ...] | None:
    if not m.failed:
        return None
    name = semconv.EVENT_RUN_ERROR if root else ERROR_EVENT_BY_KIND.get(m.kind)
    if name is None:
        return None
    attributes = json_text({"message": m.status_message or "error"})
    return (m.run_id, m.trace_id, m.span_id, name, m.end_ns, attributes)


def _insert_spans(
    conn: Connection,
    spans: list[MappedSpan],
    seqs: dict[str, int | None],
    *,
    spans_written: bool = False,
    roots: frozenset[str],
) -> None:
    """The spans' rows (``seqs``: each run's ``run_seq``; ``spans_written``: they are
    written already), their events and their runs' models (one pass over them).
    ``roots``: the spans that are their runs' roots (not every span whose id is its run's:
    a pending run may be named after a span it holds)."""
    rows: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    models: set[tuple[str, str]] = set()
    for m in spans:
        if not spans_written:
            rows.append(m.row(seqs[m.run_id]))
        if m.events:
            events.extend((m.run_id, m.trace_id, m.span_id, *e) for e in m.events)
        if m.failed and (error := _error_event(m, m.span_id in roots)) is not None:
            events.append(error)
        if m.kind == "model":
            model = m.attributes.get(REQUEST_MODEL)
            if isinstance(model, str) and model:
                models.add((m.run_id, column_text(model, RUN_MODEL) or model))
    insert_rows(conn, tables.spans, rows, skip_existing=True)  # (none: written already)
    if events:
        insert_rows(conn, tables.events, events)
    if models:  # in one order: two writers' inserts never wait on each other in turn
        insert_rows(conn, tables.run_models, sorted(models), skip_existing=True)


# -- one request ------------------------------------------------------------------------------


_PENDING_SCAN = 256
"""How many ``running`` runs the check for pending runs reads before it gives up (and the
request takes the path that looks every span up)."""


def _store(conn: Connection, project: str, spans: list[MappedSpan], result: Ingested) -> int:
    """Write ``spans`` inside the open transaction; how many were accepted.

    Most requests bring spans never seen, in whole traces or joining runs stored before: on
    SQLite, when the project has no pending run, they are written first without looking
    each span id up (two lookups a span, about a twelfth of an ingest's work), inside a
    savepoint; if the inserts find a span or a run stored already (a batch sent again, an
    id taken), the savepoint is rolled back and the request written the careful way."""
    if conn.dialect.name == "sqlite" and not _pending_runs_may_exist(conn, project):
        attempt = Ingested()
        conn.exec_driver_sql("SAVEPOINT tether_otlp_new")
        accepted = _write(conn, project, spans, attempt, all_new=True)
        if accepted is not None:
            conn.exec_driver_sql("RELEASE tether_otlp_new")
            for reason in attempt.reasons:
                result.reject(reason, 0)
            result.rejected += attempt.rejected
            return accepted
        conn.exec_driver_sql("ROLLBACK TO tether_otlp_new")
        conn.exec_driver_sql("RELEASE tether_otlp_new")
    written = _write(conn, project, spans, result, all_new=False)
    assert written is not None
    return written


def _pending_runs_may_exist(conn: Connection, project: str) -> bool:
    """Whether ``project`` may have a pending run (one waiting for its root span): read from
    the ``running`` runs of every project, at most ``_PENDING_SCAN`` of them (an attacker's
    thousands of orphan spans in another project must not make every request slower)."""
    rows = conn.exec_driver_sql(
        "SELECT project, entry_point FROM tether_runs WHERE status = 'running' LIMIT "
        f"{_PENDING_SCAN + 1}"
    ).all()
    return len(rows) > _PENDING_SCAN or (project, OTLP) in {tuple(r) for r in rows}


def _changes(conn: Connection) -> int:
    """SQLite's count of rows changed on this connection so far."""
    return int(conn.connection.driver_connection.total_changes)  # type: ignore[union-attr]


def _write(
    conn: Connection, project: str, spans: list[MappedSpan], result: Ingested, *, all_new: bool
) -> int | None:
    """``_store``'s work; ``all_new``: take every span and every run it names for one not
    stored yet (only parents from outside the request, and runs from outside it, are looked
    up) and return None, having written part of it, when the inserts show otherwise."""
    by_id = {m.span_id: m for m in spans}
    parents = {m.parent_id for m in spans if m.parent_id is not None}
    stored = _stored_spans(conn, parents - by_id.keys() if all_new else by_id.keys() | parents)
    missing = parents - by_id.keys() - stored.keys()
    # (all_new: the project has no pending run; another project's waiting for one of the
    # request's roots or missing parents sends the request the careful way, below)
    waiting, foreign = ({}, {}) if all_new else _waiting(conn, missing | by_id.keys(), project)
    runs = _runs_of(by_id, stored, project, waiting)
    waits_for: dict[str, str] = {}  # new pending runs not named after what they wait for
    taken: list[MappedSpan] = []
    for m in spans:
        sid = m.span_id
        have = stored.get(sid)
        if have is not None and have[1] != project:
            result.reject(f"span {sid}: the id is already taken")
            continue
        if have is not None and have[2] != m.trace_id:
            # Not a resend: the store keys spans by their id alone.
            result.reject(f"span {sid}: the id is already stored in another trace")
            continue
        run = runs[sid]
        if run == _FOREIGN:  # (the id check above refused it already)
            result.reject(f"span {sid}: the id is already taken")
            continue
        m.run_id = run
        taken.append(m)
    accepted = len(taken)
    new = [m for m in taken if m.span_id not in stored]  # a span sent again is stored once
    if all_new:  # runs the request's own spans name are new; a pending run waiting for a
        # span would be the project's, and it has none (another project's: the careful way
        # ends it, or refuses the span)
        stored_runs = _stored_runs(conn, {m.run_id for m in new} - by_id.keys())
        if _waits_exist(conn, {m.span_id for m in new} | missing):
            return None
    else:
        arriving = {waiting[m.span_id] for m in new if m.span_id in waiting}
        arriving.update(r for m in new for r in foreign.get(m.span_id, ()))
        stored_runs = _stored_runs(
            conn, {m.run_id for m in new} | {m.span_id for m in new} | arriving
        )
        for m in new:
            named = stored_runs.get(m.span_id)
            if (
                m.span_id not in waiting
                and m.span_id not in foreign.get(m.span_id, ())
                and named is not None
                and named.pending
            ):
                # A pending run with no wait, as a Tether before migration 0012 writes them
                # (a replica not yet replaced in a rolling upgrade): named after what it
                # waits for.
                if named.project == project:
                    waiting[m.span_id] = m.span_id
                else:
                    foreign.setdefault(m.span_id, []).append(m.span_id)
        for m in new:
            # Other projects' runs waiting for a span arriving (root or not) end: each of
            # their spans naming it is a root of its project's (as when it came first).
            for theirs in sorted(foreign.get(m.span_id, ())):
                have_run = stored_runs.pop(theirs, None)
                if have_run is not None and have_run.pending:
                    _end_foreign_pending_run(conn, theirs, m.span_id, have_run.project)
        # A missing parent that names another project's run already (its pending run waits
        # for the same span, under that id): this project's pending run takes another id.
        held = sorted(
            parent
            for parent in missing - waiting.keys()
            if (have_run := stored_runs.get(parent)) is not None and have_run.project != project
        )
        if held:
            fresh_ids = _free_run_ids(conn, len(held), stored_runs.keys() | by_id.keys())
            renamed = dict(zip(held, fresh_ids, strict=True))
            waits_for.update(zip(fresh_ids, held, strict=True))
            for m in new:
                m.run_id = renamed.get(m.run_id, m.run_id)
    fresh: list[MappedSpan] = []
    merged_into: dict[str, str] = {}
    arrived: list[tuple[str, str]] = []  # spans a pending run of the project waited for
    closing: set[str] = set()  # the first spans of cycles closed by arriving
    stored_run = stored_runs.get
    for m in new:
        have_run = stored_run(m.run_id)
        # A root for a run stored, not waiting for its root, and without it: a run of the SDK
        # still running (its root span is written as it ends). The span does not take its
        # place (the run's status, output and totals are the run's own).
        if have_run is not None and (
            have_run.project != project or (m.span_id == m.run_id and not have_run.pending)
        ):
            result.reject(f"span {m.span_id}: its run id is already taken")
            continue
        fresh.append(m)
        # A span arriving that a pending run waits for: that run joins the span's run.
        waiter = waiting.get(m.span_id)
        named = None if waiter is None else stored_run(waiter)
        if waiter is None or named is None or named.project != project or not named.pending:
            continue
        arrived.append((m.span_id, waiter))
        if waiter == m.run_id and waiter != m.span_id:
            # Its parents lead back into the run waiting for it: a cycle, whose first span
            # it is (as in ``_runs_of``): its run's root.
            m.run_id = m.span_id
            closing.add(m.span_id)
        if waiter != m.run_id:
            merged_into[waiter] = m.run_id
    # The roots: a pending run kept may be named after a span it holds, which is not its root.
    roots = frozenset(r for s, r in runs.items() if r == s and s not in stored) | closing
    kept: dict[str, str] = {}
    if merged_into:  # (rare: most requests join no pending run)
        for m in fresh:
            m.run_id = _final(m.run_id, merged_into)
        merged_into = {old: _final(old, merged_into) for old in merged_into}
        merged_into = {old: new_id for old, new_id in merged_into.items() if old != new_id}
        kept = _keep_pending_runs(fresh, merged_into, stored_runs, roots)
        kept = {run: waits_for.get(span, span) for run, span in kept.items()}

    by_run: dict[str, list[MappedSpan]] = {}
    for m in fresh:
        members = by_run.get(m.run_id)
        if members is None:
            by_run[m.run_id] = [m]
        else:
            members.append(m)
    new_runs: list[tuple[Any, ...]] = []
    seqs: dict[str, int | None] = {r: have.run_seq for r, have in stored_runs.items()}
    fresh_seqs = iter(new_run_seqs(len(by_run)))
    for run_id, members in by_run.items():
        if run_id in stored_runs:
            continue
        seqs[run_id] = seq = next(fresh_seqs)
        if run_id in roots:
            totals = _Totals()
            for m in members:
                totals.add(m.kind, m.start_ns, m.attributes, m.messages)
            record = _run_of_root(project, by_id[run_id], totals)
        else:
            record = _pending_run(project, run_id, members)
            # it waits for the parent it is named after (or took another id for)
            kept[run_id] = waits_for.get(run_id, run_id)
        new_runs.append(tuple(run_row(record, run_seq=seq).values()))
    before = _changes(conn) if all_new else 0
    if new_runs:
        insert_rows(conn, tables.runs, new_runs, skip_existing=True)
    if all_new and _changes(conn) - before != len(new_runs):
        return None  # a run id taken already
    if fresh:
        if all_new:
            before = _changes(conn)
            insert_rows(
                conn, tables.spans, [m.row(seqs[m.run_id]) for m in fresh], skip_existing=True
            )
            if _changes(conn) - before != len(fresh):
                return None  # a span stored already (sent again) or an id taken
        _insert_spans(conn, fresh, seqs, spans_written=all_new, roots=roots)
    _rewait(conn, arrived, kept)
    touched = {r for r in by_run if r in stored_runs} | set(merged_into.values())
    if touched:
        _update_runs(conn, project, touched, by_run, merged_into, by_id, stored_runs, roots)
    return accepted - (len(new) - len(fresh))


def _keep_pending_runs(
    fresh: list[MappedSpan],
    merged_into: dict[str, str],
    stored_runs: dict[str, _StoredRun],
    roots: frozenset[str],
) -> dict[str, str]:
    """Pending runs joining a pending run the request would create (named after the parent
    their spans now lack): the oldest of them stays instead, with its id, and waits for that
    parent; the others join it. A chain sent leaf first, one span a request, so changes one
    row of ``tether_otlp_waits`` a span, and its spans move once, when its root arrives (each
    of them moved at each link before: rows written grew with the square of its depth).
    Returns the runs kept, each with the span it now waits for."""
    joining: dict[str, list[str]] = {}
    for old, target in merged_into.items():
        if target not in stored_runs and target not in roots:
            joining.setdefault(target, []).append(old)
    kept: dict[str, str] = {}
    for target, olds in joining.items():
        keep = min(olds, key=lambda old: (stored_runs[old].run_seq or 0, old))
        kept[keep] = target
        for old in olds:
            merged_into[old] = keep
        del merged_into[keep]
    if kept:
        instead = {target: keep for keep, target in kept.items()}
        for m in fresh:
            m.run_id = instead.get(m.run_id, m.run_id)
    return kept


def _rewait(conn: Connection, arrived: list[tuple[str, str]], waits: dict[str, str]) -> None:
    """Drop the waits for the spans arrived; ``waits``: each pending run, new or kept, with
    the span it waits for from now on."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    if arrived:
        conn.exec_driver_sql(
            f"DELETE FROM tether_otlp_waits WHERE span_id = {mark} AND run_id = {mark}", arrived
        )
    if waits:
        insert_rows(conn, tables.otlp_waits, sorted((span, run) for run, span in waits.items()))


def _end_foreign_pending_run(conn: Connection, run_id: str, root_id: str, owner: str) -> None:
    """End the pending run ``run_id`` of project ``owner``, waiting for ``root_id``, a root of
    another project arriving. Spans of ``owner`` named that root as their parent before it
    arrived (a service of ``owner`` called by the root's, through ``traceparent``); now that
    it has, each
    of those spans is the root of a run of ``owner``'s, as it is when the caller arrives
    first (``_runs_of``): its run takes its id, name, status and the totals of its spans.

    The pending run was moved to a random id and stayed ``running`` for ever: its parent
    would never be of its project. The run id was taken by it, and the root's own project
    had the root refused and its run never ended before that. A callee root whose id is
    already a run's (no sender can name it first: the id is its stored span's, but another
    project may have a pending run under it) takes a random id no run has."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    rows = conn.exec_driver_sql(
        "SELECT s.span_id, s.trace_id, s.parent_id, s.name, s.kind, s.start_ns, s.end_ns, "
        "s.status, s.status_message, s.attributes FROM tether_runs r JOIN tether_spans s "
        f"ON s.run_seq = r.run_seq AND s.run_id = r.run_id WHERE r.run_id = {mark}",
        (run_id,),
    ).all()
    spans = {
        row[0]: MappedSpan(
            row[1],
            row[0],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7] == "error",
            row[8],
            orjson.loads(row[9]),
            row[9],
        )
        for row in rows
    }
    conn.exec_driver_sql(
        f"DELETE FROM tether_otlp_waits WHERE span_id = {mark} AND run_id = {mark}",
        (root_id, run_id),
    )
    tops = sorted(sid for sid, m in spans.items() if m.parent_id == root_id)
    if not tops:  # (no span names it: a cycle's leftovers) the run keeps them, ended
        tops = sorted(spans)[:1]
    top_of: dict[str, str] = {t: t for t in tops}
    for sid in spans:  # each span's top, by its chain of parents (a chain ends at one)
        path, cur = [], sid
        while cur not in top_of and cur in spans and cur not in path:
            path.append(cur)
            cur = spans[cur].parent_id or ""
        top = top_of.get(cur, tops[0])
        for on in path:
            top_of[on] = top
    new_ids: dict[str, str] = {}
    # A top the run is named after (it waited for the root since that span came) keeps it.
    stays = run_id if run_id in tops else None
    for top in tops:
        new_id = top
        while (
            top != stays
            and conn.exec_driver_sql(
                f"SELECT 1 FROM tether_runs WHERE run_id = {mark}", (new_id,)
            ).first()
        ):
            new_id = secrets.token_hex(8)
        new_ids[top] = new_id
    totals = {top: _Totals() for top in tops}
    for sid, m in spans.items():
        m.run_id = new_ids[top_of[sid]]
        totals[top_of[sid]].add(m.kind, m.start_ns, m.attributes, m.messages)
    seqs = dict(zip(tops, new_run_seqs(len(tops)), strict=True))
    records = []
    for top in tops:
        record = _run_of_root(owner, spans[top], totals[top])
        record.run_id = new_ids[top]
        row = run_row(record, run_seq=seqs[top])
        if top != stays:
            records.append(tuple(row.values()))
            continue
        values = {c: v for c, v in row.items() if c not in ("run_id", "run_seq")}
        sets = ", ".join(f"{column} = {mark}" for column in values)
        conn.exec_driver_sql(
            f"UPDATE tether_runs SET {sets} WHERE run_id = {mark}", (*values.values(), run_id)
        )
    if records:
        insert_rows(conn, tables.runs, records)
    moved = {sid: m for sid, m in spans.items() if m.run_id != run_id}
    if moved:
        conn.exec_driver_sql(
            f"UPDATE tether_spans SET run_id = {mark}, run_seq = {mark} WHERE span_id = {mark}",
            [(m.run_id, seqs[top_of[sid]], sid) for sid, m in moved.items()],
        )
        conn.exec_driver_sql(
            f"UPDATE tether_events SET run_id = {mark} WHERE run_id = {mark} AND span_id = {mark}",
            [(m.run_id, run_id, sid) for sid, m in moved.items()],
        )
    models = {
        (m.run_id, column_text(model, RUN_MODEL) or model)
        for m in spans.values()
        if m.kind == "model" and isinstance(model := m.attributes.get(REQUEST_MODEL), str) and model
    }
    conn.exec_driver_sql(f"DELETE FROM tether_run_models WHERE run_id = {mark}", (run_id,))
    if models:
        insert_rows(conn, tables.run_models, sorted(models), skip_existing=True)
    if stays is None:
        conn.exec_driver_sql(f"DELETE FROM tether_runs WHERE run_id = {mark}", (run_id,))


def _update_runs(
    conn: Connection,
    project: str,
    touched: set[str],
    by_run: dict[str, list[MappedSpan]],
    merged_into: dict[str, str],
    by_id: dict[str, MappedSpan],
    stored_runs: dict[str, _StoredRun],
    roots: frozenset[str],
) -> None:
    """Runs stored before this request (or joined by pending runs) that it adds spans to
    (``roots``: the request's spans that are their runs' roots).

    A root arriving in this request gives its run the root's values and totals over every
    span stored (read once: the run ends). A run ended before (its root stored) adds what
    arrived, and what the pending runs joining it held, to its totals. A run still pending
    keeps no totals (its root brings them) and starts at its first span: a trace of thousands
    of spans sent before its root costs no rereading of them with every request."""
    merged_by_target: dict[str, list[str]] = {}
    for old, target in merged_into.items():
        merged_by_target.setdefault(target, []).append(old)
    ended: dict[str, _Totals] = {}  # runs ended before: their totals so far
    for run_id in sorted(touched):
        have = stored_runs.get(run_id)
        if have is not None and not have.pending and run_id not in roots:
            ended[run_id] = _Totals.of_run(have)
    joined = [old for target in ended for old in merged_by_target.get(target, ())]
    joined_totals = _span_totals(conn, joined)
    if merged_into:
        _merge(conn, merged_into)
    ending = [r for r in sorted(touched) if r in roots]
    root_totals = _span_totals(conn, ending)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for run_id in sorted(touched):
        if run_id in roots:
            total = root_totals.get(run_id) or _Totals()
            row = run_row(_run_of_root(project, by_id[run_id], total))
            values = {c: row[c] for c in _ROOT_COLUMNS}
            values.update(total.columns(), attributes=row["attributes"])
        elif run_id in ended:
            total = ended[run_id]
            for m in by_run.get(run_id, ()):
                total.add(m.kind, m.start_ns, m.attributes, m.messages)
            for old in merged_by_target.get(run_id, ()):
                total.add_totals(joined_totals.get(old) or _Totals())
            attributes = orjson.loads(stored_runs[run_id].attributes)
            values = total.columns()
            values["attributes"] = json_text(_with_unpriced(attributes, total))
        else:  # pending: it starts at its first span (members, and the runs that joined it)
            starts = [m.start_ns for m in by_run.get(run_id, ())]
            starts += [stored_runs[o].started_ns for o in merged_by_target.get(run_id, ())]
            have = stored_runs.get(run_id)
            if have is not None:
                starts.append(have.started_ns)
            values = {"started_ns": min(starts)} if starts else {}
        if values:
            sets = ", ".join(f"{column} = {mark}" for column in values)
            conn.exec_driver_sql(
                f"UPDATE tether_runs SET {sets} WHERE run_id = {mark}", (*values.values(), run_id)
            )


def _span_totals(conn: Connection, run_ids: list[str]) -> dict[str, _Totals]:
    """Totals over the stored spans of ``run_ids``."""
    totals: dict[str, _Totals] = {}
    sql = (  # through the spans' run index: by each run's run_seq
        "SELECT s.run_id, s.kind, s.start_ns, CASE WHEN s.kind = 'model' THEN s.attributes END "
        "FROM tether_runs r JOIN tether_spans s ON s.run_seq = r.run_seq AND s.run_id = r.run_id "
        "WHERE r.run_id IN ({ids})"
    )
    for run_id, kind, start_ns, text in _in(conn, sql, run_ids):
        total = totals.setdefault(run_id, _Totals())
        total.add(kind, start_ns, None if text is None else orjson.loads(text))
    return totals


def _merge(conn: Connection, merged_into: dict[str, str]) -> None:
    """Move pending runs' spans, events and models into the runs they joined; drop the
    pending runs."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    moves = sorted((new, old) for old, new in merged_into.items())
    seq = f"(SELECT run_seq FROM tether_runs WHERE run_id = {mark})"
    conn.exec_driver_sql(  # the spans' run index is by run_seq
        f"UPDATE tether_spans SET run_id = {mark}, run_seq = {seq} "
        f"WHERE run_seq = {seq} AND run_id = {mark}",
        [(new, new, old, old) for new, old in moves],
    )
    conn.exec_driver_sql(f"UPDATE tether_events SET run_id = {mark} WHERE run_id = {mark}", moves)
    models = [
        (new, model)
        for new, old in moves
        for (model,) in conn.exec_driver_sql(
            f"SELECT model FROM tether_run_models WHERE run_id = {mark}", (old,)
        )
    ]
    olds = [(old,) for _, old in moves]
    conn.exec_driver_sql(f"DELETE FROM tether_run_models WHERE run_id = {mark}", olds)
    if models:
        insert_rows(conn, tables.run_models, sorted(set(models)), skip_existing=True)
    conn.exec_driver_sql(f"DELETE FROM tether_runs WHERE run_id = {mark}", olds)
