"""The UI's pages: runs (filters, keyset pages), one trace (tree + waterfall, a span's
detail, subtrees loaded by htmx), the dashboard. Every URL holds its state (filters, project,
selected span, time range), so a link shows the same to anyone allowed to see it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import PlainTextResponse, Response

from tether.server import metrics_sql, traces
from tether.server.api.runs import MAX_NS, MAX_OFFSET, metrics_range
from tether.server.auth import Reader
from tether.server.filters import RunFilters, run_filters
from tether.server.http_deadline import MAX_HEADER_BYTES
from tether.server.roles import Permission
from tether.server.runs import agent_names, blocked_runs, engine, no_run, project_run, reader
from tether.server.ui.filters import pretty
from tether.server.ui.render import page
from tether.store.query import ERROR_CATEGORIES
from tether.trace.views import RunSummary

router = APIRouter()

STATUSES = ("running", "completed", "paused", "failed")
OUTCOMES = (
    "final_answer",
    "limit_exceeded",
    "budget_exceeded",
    "rate_limited",
    "loop_detected",
    "blocked",
    "escalated",
    "deferred",
    "control_error",
    "empty_answer",
    "error",
)
MAX_SHOWN_EVENTS = 200
"""The most events of one span a page shows (the first; the API has them all): one OTLP
request can give a span 200,000 events, and its page was 17.6 MB, 8 s to make."""
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}


@router.get("/runs")
def runs_page(
    request: Request, principal: Reader, filters: Annotated[RunFilters, Depends(run_filters)]
) -> Response:
    listing = reader(request).find_runs(filters.query(principal.project), text_chars=300)
    runs = [RunSummary.of(r) for r in listing.runs]
    blocked = blocked_runs(engine(request), [r.run_id for r in runs])
    context: dict[str, Any] = {
        "runs": runs,
        "blocked": blocked,
        "total": listing.total,
        "filters": filters,
        "next_link": None
        if listing.next_cursor is None
        else filters.link(cursor=listing.next_cursor, project=principal.project),
        "first_link": filters.link(cursor=None, project=principal.project),
        "statuses": STATUSES,
        "outcomes": OUTCOMES,
        "categories": ERROR_CATEGORIES,
        "agents": agent_names(engine(request), principal.project),
    }
    return page(request, "runs.html", context, principal)


@router.get("/runs/{run_id}")
def trace_page(
    request: Request,
    run_id: str,
    principal: Reader,
    span: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    run = project_run(request, principal.project, run_id)
    db = engine(request)
    first, last, count, blocked_count = traces.run_bounds(db, run.run_id)
    top, total = traces.children(db, run.run_id, None)
    start = min(first or run.started_ns, run.started_ns)
    end = max(last, run.ended_ns or 0, start + 1)
    selected = (
        traces.span_detail(db, run.run_id, span, max_events=MAX_SHOWN_EVENTS) if span else None
    )
    # The top spans open at once (the root's steps are what one looks for first).
    preloaded = {
        line.span_id: traces.children(db, run.run_id, line.span_id)
        for line in top[:3]
        if line.children
    }
    context = {
        "run": RunSummary.of(run),
        "lines": top,
        "total": total,
        "more_offset": len(top) if len(top) < total else None,
        "span_count": count,
        "blocked_count": blocked_count,
        "blocked_decisions": traces.blocked_decisions(db, run.run_id),
        "t0": start,
        "t_span": end - start,
        "selected": selected,
        "messages": traces.messages,
        "depth": 0,
        "parent_id": None,
        "preloaded": preloaded,
    }
    return page(request, "trace.html", context, principal)


@router.get("/runs/{run_id}/children")
def children_fragment(
    request: Request,
    run_id: str,
    principal: Reader,
    parent: Annotated[str | None, Query(max_length=16)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    depth: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 1,
    t0: Annotated[int, Query()] = 0,
    t_span: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    """Rows of one subtree (htmx): loaded when a span is opened, a page at a time. ``depth``
    only indents the rows (at most 24 levels are drawn): it was capped at 200, so the rows
    of a trace nested deeper could never be opened (422)."""
    run = project_run(request, principal.project, run_id)
    lines, total = traces.children(engine(request), run.run_id, parent, offset=offset)
    context = {
        "run": RunSummary.of(run),
        "lines": lines,
        "total": total,
        "more_offset": offset + len(lines) if offset + len(lines) < total else None,
        "t0": t0,
        "t_span": t_span,
        "depth": depth,
        "parent_id": parent,
    }
    return page(request, "span_rows.html", context, principal)


@router.get("/runs/{run_id}/spans/{span_id}")
def span_fragment(request: Request, run_id: str, span_id: str, principal: Reader) -> Response:
    """One span's detail (htmx target), or the whole trace page opened on it."""
    run = project_run(request, principal.project, run_id)
    detail = traces.span_detail(engine(request), run.run_id, span_id, max_events=MAX_SHOWN_EVENTS)
    if detail is None:
        raise no_run(run_id, span_id)
    if not request.headers.get("hx-request"):
        return trace_page(request, run_id, principal, span=span_id)
    context = {"run": RunSummary.of(run), "selected": detail, "messages": traces.messages}
    return page(request, "span_detail.html", context, principal)


@router.get("/runs/{run_id}/text")
def run_text(
    request: Request,
    run_id: str,
    principal: Reader,
    field: Annotated[str, Query(pattern="^(input|output|error)$")],
) -> Response:
    """A run's whole input, output or error, as text: its page shows the first
    ``clip.TEXT_CHARS`` characters of each."""
    run = project_run(request, principal.project, run_id)
    return _text(getattr(run, field) or "")


@router.get("/runs/{run_id}/spans/{span_id}/text")
def span_text(
    request: Request,
    run_id: str,
    span_id: str,
    principal: Reader,
    # Any key a span may have (OTLP does not bound them): a key past 1,024 characters was
    # linked from its span's page and answered 422. The request line bounds it.
    attribute: Annotated[str, Query(max_length=MAX_HEADER_BYTES)],
) -> Response:
    """One attribute of a span whole, as text: the span's detail shows the first
    ``clip.TEXT_CHARS`` characters of each. A text as it is stored, not read as JSON and
    written again (as the page shows it): that hid the first of two equal keys
    (``{"cmd": "rm -rf /", "cmd": "ls"}`` read ``"ls"``) and changed numbers (``1e999``
    read ``Infinity``), so what a tool was called with could not be seen. A value that is
    not text (a list, a number) as JSON indented."""
    run = project_run(request, principal.project, run_id)
    detail = traces.span_detail(engine(request), run.run_id, span_id, max_events=1)
    if detail is None:
        raise no_run(run_id, span_id)
    if attribute not in detail.attributes:  # not named back (no_run)
        raise HTTPException(404, "the span has no attribute of that name")
    value = detail.attributes[attribute]
    return _text(value if isinstance(value, str) else pretty(value))


def _text(text: str) -> Response:
    # Plain text, never sniffed as HTML: a run's text is anyone's (an agent key's input).
    return PlainTextResponse(
        text, headers={"cache-control": "no-store", "x-content-type-options": "nosniff"}
    )


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": f"not a date and time: {text!r}", "type": "value"}]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/dashboard")
def dashboard(
    request: Request,
    principal: Reader,
    range: Annotated[str | None, Query(pattern="^(1h|6h|24h|7d|30d)?$")] = None,
    since_text: Annotated[str | None, Query(alias="since")] = None,
    until_text: Annotated[str | None, Query(alias="until")] = None,
    all_projects_text: Annotated[str | None, Query(alias="all_projects")] = None,
) -> Response:
    # A form's empty fields are no value.
    since, until = _moment("since", since_text), _moment("until", until_text)
    all_projects = (all_projects_text or "").lower() in ("1", "true", "on", "yes")
    chosen = None
    if since is None and until is None:
        chosen = range if range in RANGES else "24h"
        since = datetime.now(UTC) - timedelta(seconds=RANGES[chosen])
    projects: list[str] | None = [principal.project]
    every = all_projects and principal.may(Permission.ALL_PROJECTS)
    if every:
        projects = None
    newest = None if until is not None else metrics_sql.newest_start(engine(request), projects)
    start, end = metrics_range(since, until, newest_ns=newest)
    # Runs stamped ahead of this server's clock stretch the range past now; said on the page.
    stretched = newest is not None and until is None and end == min(newest + 1, MAX_NS)
    ahead = datetime.fromtimestamp(end / 1e9, UTC) if stretched else None
    until = until or datetime.fromtimestamp(end / 1e9, UTC)
    figures = metrics_sql.compute(engine(request), projects, start, end)
    context = {
        "m": figures,
        "range": chosen,
        "ranges": list(RANGES),
        "since": since,
        "until": until,
        "ahead": ahead,
        "all_projects": every,
        "chart_data": {
            "times": figures.times,
            "charts": {k: v.model_dump() for k, v in figures.charts.items()},
        },
    }
    return page(request, "dashboard.html", context, principal)
