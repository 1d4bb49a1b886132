"""Reading runs for the API and the pages, within the caller's project: a run of another
project is not found (404), never shown."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from fastapi import Request
from pydantic import BaseModel
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from tether.core import StoreError
from tether.store import RunRecord, tables
from tether.store.db import driver_message
from tether.store.reader import StoreReader, Trace, run_from_row
from tether.trace import semconv

RUN_ID = re.compile(r"[0-9a-f]{16}")


def reader(request: Request) -> StoreReader:
    found: StoreReader = request.app.state.reader
    return found


def engine(request: Request) -> Engine:
    found: Engine = request.app.state.engine
    return found


ID = re.compile(r"[0-9a-f]{1,32}")
"""What a run, span or trace id looks like: only these are named back in a 404."""


def no_run(*ids: str) -> HTTPException:
    """404 for the run ``ids[0]`` (and its span ``ids[1]``). The ids are named only when
    they look like ids: any words in a link's path (``/runs/Your session expired: sign in
    again at ...``) were put on the page as the server's own notice to whoever opened it."""
    if all(ID.fullmatch(i) for i in ids):
        return HTTPException(404, f"no run {'/'.join(ids)!r} in this project")
    return HTTPException(404, "no such run in this project")


def project_run(request: Request, project: str, run_id: str) -> RunRecord:
    """The run ``run_id`` (a whole run id) of ``project``; 404 for any other (another
    project's included: its existence is not told)."""
    if not RUN_ID.fullmatch(run_id):
        raise no_run(run_id)
    r = tables.runs.c
    # By the primary key: the reader's get_run also matches prefixes of run and trace ids,
    # which reads the whole table and could name other projects' runs.
    stmt = select(tables.runs).where(r.run_id == run_id, r.project == project)
    try:
        with engine(request).connect() as conn:
            row = conn.execute(stmt).mappings().first()
    except SQLAlchemyError as exc:
        raise StoreError(f"reading runs failed: {driver_message(exc)}") from exc
    if row is None:
        raise no_run(run_id)
    return run_from_row(row)


def trace_of(
    request: Request, run: RunRecord, *, max_spans: int | None = None, max_events: int | None = None
) -> tuple[Trace, bool]:
    """The trace of a run found by ``project_run``, at most ``max_spans`` spans and
    ``max_events`` events (the first), and whether there were more (a run grown by OTLP
    batches may hold millions: read whole, one request would hold them all in memory)."""
    found = reader(request)
    spans = found.get_spans(run.run_id, limit=None if max_spans is None else max_spans + 1)
    events = found.get_events(run.run_id, limit=None if max_events is None else max_events + 1)
    more = (max_spans is not None and len(spans) > max_spans) or (
        max_events is not None and len(events) > max_events
    )
    return Trace(run, spans[:max_spans], events[:max_events]), more


def blocked_runs(db: Engine, run_ids: Sequence[str]) -> set[str]:
    """Which of these runs had a control decision that blocked."""
    if not run_ids:
        return set()
    ev = tables.events.c
    stmt = select(ev.run_id).where(
        ev.run_id.in_(list(run_ids)),
        ev.name == semconv.EVENT_CONTROL_DECISION,
        ev.attributes.like(f'%"{semconv.TETHER_DECISION}":"block"%'),
    )
    try:
        with db.connect() as conn:
            return set(conn.execute(stmt).scalars())
    except SQLAlchemyError as exc:
        raise StoreError(f"reading runs failed: {driver_message(exc)}") from exc


class AgentVersion(BaseModel):
    """One version of an agent, as its runs show it."""

    version: str | None
    """The spec's content hash; null for runs without an agent version."""
    runs: int
    """Runs of this version in the project."""
    first_ns: int
    """Start of its first run, nanoseconds since the epoch."""
    last_ns: int
    """Start of its latest run."""


class AgentView(BaseModel):
    """An agent of the project and its versions, newest first."""

    agent: str | None
    """The agent's name; null for runs without an agent (gateway requests)."""
    runs: int
    versions: list[AgentVersion]


_AGENT_NAMES_TTL_S = 30.0
_agent_names: dict[tuple[int, str], tuple[float, list[str]]] = {}


MAX_AGENT_SUGGESTIONS = 200
"""The most agent names the runs page suggests (those with the most runs): any agent key
names agents, and the page carried every name (20,000 names: 575 KB a page, growing)."""


def agent_names(db: Engine, project: str) -> list[str]:
    """The names of the project's agents with the most runs (``MAX_AGENT_SUGGESTIONS``), by
    name, for the runs page's suggestions: read at most every 30 s (the grouping reads every
    run of the project)."""
    key = (id(db), project)
    now = time.monotonic()
    cached = _agent_names.get(key)
    if cached is None or now - cached[0] > _AGENT_NAMES_TTL_S:
        named = sorted((a for a in agents(db, project) if a.agent), key=lambda a: -a.runs)
        names = sorted(str(a.agent) for a in named[:MAX_AGENT_SUGGESTIONS])
        cached = (now, names)
        _agent_names[key] = cached
    return cached[1]


def agents(db: Engine, project: str) -> list[AgentView]:
    """The agents that ran in ``project``, with their versions."""
    r = tables.runs.c
    stmt = (
        select(
            r.agent_name,
            r.agent_version,
            func.count(),
            func.min(r.started_ns),
            func.max(r.started_ns),
        )
        .where(r.project == project)
        .group_by(r.agent_name, r.agent_version)
    )
    try:
        with db.connect() as conn:
            rows = conn.execute(stmt).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"reading agents failed: {driver_message(exc)}") from exc
    by_agent: dict[str | None, list[AgentVersion]] = {}
    for name, version, count, first, last in rows:
        by_agent.setdefault(name, []).append(
            AgentVersion(version=version, runs=count, first_ns=first, last_ns=last)
        )
    out = [
        AgentView(
            agent=name,
            runs=sum(v.runs for v in versions),
            versions=sorted(versions, key=lambda v: -v.last_ns),
        )
        for name, versions in by_agent.items()
    ]
    return sorted(out, key=lambda a: (a.agent is None, a.agent or ""))
