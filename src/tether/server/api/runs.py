"""``/api/v1``: runs, one run's trace and its spans, agents, metrics. Always within the
caller's project (``?project=`` for a key that may see all)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from tether.server import metrics, metrics_sql, traces
from tether.server.auth import Reader
from tether.server.clip import TEXT_CHARS, clip_values
from tether.server.filters import RunFilters, run_filters
from tether.server.roles import Permission
from tether.server.runs import (
    AgentView,
    agents,
    engine,
    no_run,
    project_run,
    reader,
    trace_of,
)
from tether.store.records import RunRecord, SpanRecord
from tether.trace.views import EventView, RunDetail, RunPage, RunSummary, SpanView

router = APIRouter(tags=["runs"])
DAY_NS = 86_400 * 1_000_000_000
MAX_NS = 2**63 - 1
"""The latest time the store's columns hold (April 2262)."""
MAX_OFFSET = 2**63 - 1
"""The largest offset a database takes (a larger one is a 422, not the database's error)."""


@router.get("/runs")
def list_runs(
    request: Request,
    principal: Reader,
    filters: Annotated[RunFilters, Depends(run_filters)],
    text_chars: TextChars = TEXT_CHARS,
) -> RunPage:
    """Runs of the project, newest first, a page at a time (keyset: pass ``next_cursor``
    back as ``cursor``); each text up to ``text_chars`` characters (0: whole)."""
    listing = reader(request).find_runs(
        filters.query(principal.project), text_chars=text_chars + 1 if text_chars else None
    )
    page = RunPage.of(listing)
    runs = [_clipped_run(r, text_chars, read_whole=False)[0] for r in page.runs]
    return page.model_copy(update={"runs": runs})


TextChars = Annotated[int, Query(ge=0, le=2**31 - 1)]
"""``text_chars``: the most characters of each text (a run's input, output and error, an
attribute's value) an answer holds, then a marker; 0: whole."""


def _clipped_run(run: RunSummary, limit: int, *, read_whole: bool = True) -> tuple[RunSummary, int]:
    """``run`` with its input, output and error clipped to ``limit`` characters (its input
    and output read only that far: ``read_whole`` False)."""
    where = f"GET /api/v1/runs/{run.run_id}?text_chars=0&max_spans=1&max_events=1"
    texts = {"input": run.input, "output": run.output, "error": run.error}
    found, clipped = clip_values(texts, limit, where, read_whole=read_whole)
    return run.model_copy(update=found), clipped


def _clipped_attributes(
    run_id: str, span_id: str | None, attributes: dict[str, Any], limit: int
) -> tuple[dict[str, Any], int]:
    where = f"GET /api/v1/runs/{run_id}/spans/{span_id}"
    found: tuple[dict[str, Any], int] = clip_values(attributes, limit, where)
    return found


DEFAULT_TRACE_SPANS = 10_000
MAX_TRACE_SPANS = 100_000
DEFAULT_TRACE_EVENTS = 50_000
MAX_TRACE_EVENTS = 500_000
"""How much of a run one request reads whole (a run may be grown without end by OTLP)."""


@router.get("/runs/{run_id}")
def get_run(
    request: Request,
    run_id: str,
    principal: Reader,
    max_spans: Annotated[int, Query(ge=1, le=MAX_TRACE_SPANS)] = DEFAULT_TRACE_SPANS,
    max_events: Annotated[int, Query(ge=1, le=MAX_TRACE_EVENTS)] = DEFAULT_TRACE_EVENTS,
    text_chars: TextChars = TEXT_CHARS,
) -> RunDetail:
    """One run's trace: the run, its first ``max_spans`` spans in start order and first
    ``max_events`` events in time order; ``truncated`` when it has more (page through
    ``/runs/{run_id}/spans`` for the rest). Each text (input, output, an attribute's value)
    up to ``text_chars`` characters, then a marker naming where it is whole; ``clipped``
    counts them (0: whole: a 5 MB input made a 20 MB document)."""
    run = project_run(request, principal.project, run_id)
    trace, more = trace_of(request, run, max_spans=max_spans, max_events=max_events)
    detail = RunDetail.of(trace, truncated=more)
    if not text_chars:
        return detail
    summary, clipped = _clipped_run(detail.run, text_chars)
    spans, events = [], []
    for span in detail.spans:
        attributes, n = _clipped_attributes(run_id, span.span_id, span.attributes, text_chars)
        spans.append(span.model_copy(update={"attributes": attributes}) if n else span)
        clipped += n
    for event in detail.events:
        attributes, n = _clipped_attributes(run_id, event.span_id, event.attributes, text_chars)
        events.append(event.model_copy(update={"attributes": attributes}) if n else event)
        clipped += n
    update = {"run": summary, "spans": spans, "events": events, "clipped": clipped}
    return detail.model_copy(update=update)


class SpanPage(BaseModel):
    """Spans under one parent, a page at a time (for traces too large to read at once)."""

    spans: list[SpanView]
    total: int
    """Spans under that parent in all."""
    next_offset: int | None
    """Pass as ``offset`` for the next page; null on the last."""
    clipped: int = 0
    """How many attribute values were clipped (``text_chars``)."""


def _span_view(run: RunRecord, line: traces.SpanLine, attributes: dict[str, Any]) -> SpanView:
    """The API's view of a span the trace page's queries read."""
    record = SpanRecord(
        trace_id=run.trace_id,
        run_id=run.run_id,
        span_id=line.span_id,
        parent_id=line.parent_id,
        name=line.name,
        kind=line.kind,
        start_ns=line.start_ns,
        end_ns=line.end_ns,
        status=line.status,
        attributes=attributes,
    )
    return SpanView.of(record)


@router.get("/runs/{run_id}/spans")
def list_spans(
    request: Request,
    run_id: str,
    principal: Reader,
    parent_id: Annotated[str | None, Query(max_length=16)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = traces.CHILDREN_PAGE,
    text_chars: TextChars = TEXT_CHARS,
) -> SpanPage:
    """The spans under ``parent_id`` (none given: the run's top spans), with attributes,
    each value up to ``text_chars`` characters (0: whole; one span whole:
    ``/runs/{run_id}/spans/{span_id}``)."""
    run = project_run(request, principal.project, run_id)
    lines, total = traces.children(
        engine(request), run.run_id, parent_id, offset=offset, limit=limit, attributes=True
    )
    spans, clipped = [], 0
    for line in lines:
        attributes, n = _clipped_attributes(
            run.run_id, line.span_id, line.attributes or {}, text_chars
        )
        spans.append(_span_view(run, line, attributes))
        clipped += n
    more = offset + len(lines)
    return SpanPage(
        spans=spans, total=total, next_offset=more if more < total else None, clipped=clipped
    )


class SpanWithEvents(BaseModel):
    """One span with its events."""

    span: SpanView
    """The span (status message left out)."""
    children: int
    """How many spans are under it."""
    events: list[EventView]
    """Its events, in time order (control decisions among them): ``events_limit`` of them
    from ``events_offset``."""
    events_total: int
    """How many events it has."""
    next_events_offset: int | None
    """The ``events_offset`` of the next page of its events; None when this is the last."""


MAX_EVENTS_PAGE = 10_000
"""Most events one answer holds: a span can hold any number (one OTLP request gave one
200,000, and its answer was 17 MB)."""


@router.get("/runs/{run_id}/spans/{span_id}")
def get_span(
    request: Request,
    run_id: str,
    span_id: str,
    principal: Reader,
    events_offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    events_limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 1000,
) -> SpanWithEvents:
    """One span whole, with its events (a page of them: ``events_limit`` from
    ``events_offset``) and control decisions."""
    run = project_run(request, principal.project, run_id)
    detail = traces.span_detail(
        engine(request),
        run.run_id,
        span_id,
        max_events=events_limit,
        events_from=events_offset,
    )
    if detail is None:
        raise no_run(run_id, span_id)
    line = detail.line
    events = [
        EventView(
            span_id=line.span_id, name=e["name"], time_ns=e["time_ns"], attributes=e["attributes"]
        )
        for e in detail.events
    ]
    more = events_offset + len(events)
    return SpanWithEvents(
        span=_span_view(run, line, detail.attributes),
        children=line.children,
        events=events,
        events_total=detail.event_count,
        next_events_offset=more if events and more < detail.event_count else None,
    )


MAX_AGENTS_PAGE = 10_000
"""Most agents one answer holds: an agent key names any agent it likes (20,000 names made the
whole list 2.6 MB)."""


@router.get("/agents")
def list_agents(
    request: Request,
    response: Response,
    principal: Reader,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_AGENTS_PAGE)] = 1000,
) -> list[AgentView]:
    """The project's agents and their versions, with run counts, by name: ``limit`` of them
    from ``offset``; the ``X-Total-Count`` header says how many there are."""
    found = agents(engine(request), principal.project)
    response.headers["x-total-count"] = str(len(found))
    return found[offset : offset + limit]


def _within_columns(moment: datetime) -> int:
    return min(max(int(moment.timestamp() * 1e9), 0), MAX_NS)


def metrics_range(
    since: datetime | None,
    until: datetime | None,
    default_ns: int = DAY_NS,
    *,
    newest_ns: int | None = None,
) -> tuple[int, int]:
    """``[since, until)`` in nanoseconds; the last day by default. A time without a zone
    is UTC. Without ``until`` the range ends now, or past ``newest_ns`` (the newest run's
    start) when that is later: runs stamped ahead of this clock (a client's clock ahead,
    OTLP spans timestamped ahead) were in no default range, so never on the dashboard."""
    since, until = (
        None if t is None else t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until)
    )
    # Within what the store's time columns hold (64-bit nanoseconds, no run before 1970): a
    # range from year 1 to 9999 is every run, not an integer the database cannot take.
    now = time.time_ns()
    end = _within_columns(until) if until is not None else now
    if until is None and newest_ns is not None and newest_ns >= now:
        end = min(newest_ns + 1, MAX_NS)
    start = now - default_ns if since is None else _within_columns(since)
    if since is None and until is not None:
        start = end - default_ns
    if start >= end:
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError(
            [{"loc": ("query", "since"), "msg": "since must be before until", "type": "value"}]
        )
    return start, end


@router.get("/metrics")
def get_metrics(
    request: Request,
    principal: Reader,
    since: datetime | None = None,
    until: datetime | None = None,
    all_projects: bool = False,
) -> metrics.Metrics:
    """Requests, latency percentiles, errors by outcome and category, tokens and cost over
    time (the last day by default), and the same by project, agent, version and model.
    ``all_projects``: every project (a key that may see all)."""
    projects: list[str] | None = [principal.project]
    if all_projects and principal.may(Permission.ALL_PROJECTS):
        projects = None
    newest = None if until is not None else metrics_sql.newest_start(engine(request), projects)
    start, end = metrics_range(since, until, newest_ns=newest)
    return metrics_sql.compute(engine(request), projects, start, end)
