"""A run's spans as the trace page reads them: a light outline (no attributes) of one level
of the tree at a time, so a trace of tens of thousands of spans opens at once and its
subtrees load when opened; one span whole (attributes, events) when it is selected."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from tether.core import StoreError
from tether.store import tables
from tether.store.db import driver_message
from tether.trace import semconv

CHILDREN_PAGE = 200
"""Children of one span listed at a time; more load on demand."""


@dataclass(slots=True)
class SpanLine:
    """One row of the trace tree."""

    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    children: int = 0
    """How many spans have this one as parent."""
    decisions: list[str] = field(default_factory=list)
    """Verdicts of the control decisions on it (``block``, ``modify``...)."""
    attributes: dict[str, Any] | None = None
    """Its attributes, when they were asked for."""

    @property
    def blocked(self) -> bool:
        return "block" in self.decisions

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(slots=True)
class Decision:
    """A control's decision on a span, as the page shows it."""

    control: str
    hook: str
    verdict: str
    reason: str


@dataclass(slots=True)
class SpanDetail:
    """One span whole, with its events."""

    line: SpanLine
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    decisions: list[Decision]
    event_count: int = 0
    """How many events the span has (``events`` may hold the first of them only)."""


def _failed(exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"reading the trace failed: {driver_message(exc)}")


def _line(row: Any, attributes: bool = False) -> SpanLine:
    return SpanLine(
        span_id=row[0],
        parent_id=row[1],
        name=row[2],
        kind=row[3],
        start_ns=row[4],
        end_ns=row[5],
        status=row[6],
        attributes=json.loads(row[7]) if attributes else None,
    )


def _decision_verdicts(
    engine: Engine, run_id: str, span_ids: Sequence[str]
) -> dict[str | None, list[str]]:
    """The verdicts of the control decisions on ``span_ids`` (a page of the tree): each page
    read every decision of the run and parsed it (0.3 s a subtree opened in a run of 30,000
    decided spans)."""
    ev = tables.events.c
    if not span_ids:
        return {}
    stmt = select(ev.span_id, ev.attributes).where(
        ev.run_id == run_id,
        ev.name == semconv.EVENT_CONTROL_DECISION,
        ev.span_id.in_(list(span_ids)),
    )
    out: dict[str | None, list[str]] = defaultdict(list)
    with engine.connect() as conn:
        for span_id, attributes in conn.execute(stmt):
            try:
                verdict = json.loads(attributes).get(semconv.TETHER_DECISION)
            except (ValueError, AttributeError):
                continue
            if isinstance(verdict, str):
                out[span_id].append(verdict)
    return out


def storable(span_id: str) -> bool:
    """An id a stored span may have: text with a NUL in it (a URL's ``%00``) is none, and is
    not sent to the database (PostgreSQL refuses it, which would read as the store failing)."""
    return "\x00" not in span_id


def children(
    engine: Engine,
    run_id: str,
    parent_id: str | None,
    *,
    offset: int = 0,
    limit: int = CHILDREN_PAGE,
    attributes: bool = False,
) -> tuple[list[SpanLine], int]:
    """The spans under ``parent_id`` (None: the run's top spans, ``_top``) in start order, a
    page at a time, and how many there are in all; with ``attributes``, each span's
    attributes too."""
    if parent_id is not None and not storable(parent_id):
        return [], 0
    sp = tables.spans.c
    # (A span its own parent is not its own child: it would open into itself for ever.)
    under = _top(run_id) if parent_id is None else sp.parent_id == parent_id
    under = and_(under, sp.span_id != sp.parent_id) if parent_id is not None else under
    columns: tuple[Any, ...] = (
        sp.span_id,
        sp.parent_id,
        sp.name,
        sp.kind,
        sp.start_ns,
        sp.end_ns,
        sp.status,
    )
    if attributes:
        columns += (sp.attributes,)
    try:
        with engine.connect() as conn:
            total = conn.execute(
                select(func.count())
                .select_from(tables.spans)
                .where(tables.spans_of_run(run_id), under)
            ).scalar_one()
            rows = conn.execute(
                select(*columns)
                .where(tables.spans_of_run(run_id), under)
                .order_by(sp.start_ns, sp.span_id)
                .offset(offset)
                .limit(limit)
            ).all()
            lines = [_line(row, attributes) for row in rows]
            ids = [line.span_id for line in lines]
            if ids:
                counts = conn.execute(
                    select(sp.parent_id, func.count())
                    .where(
                        tables.spans_of_run(run_id),
                        sp.parent_id.in_(ids),
                        sp.span_id != sp.parent_id,
                    )
                    .group_by(sp.parent_id)
                ).all()
                by_parent: dict[str, int] = {p: int(n) for p, n in counts}
                for line in lines:
                    line.children = int(by_parent.get(line.span_id, 0))
        verdicts = _decision_verdicts(engine, run_id, ids)
    except SQLAlchemyError as exc:
        raise _failed(exc) from exc
    for line in lines:
        line.decisions = verdicts.get(line.span_id, [])
    return lines, int(total)


def _top(run_id: str) -> Any:
    """The run's top spans: its roots, its run's own span (the root, even when it names a
    parent: OTLP makes the first span of a parent cycle, or a span its own parent, the root
    of its run), and the spans whose parent is not among its spans:
    never recorded (a crash), not arrived yet (OTLP children come before their root: a run
    waiting for its root holds its root's children), or stored in another run (another
    project's root a span of this one named as its parent: ``otlp_store._move_pending_run``).
    Counted and paged with the roots: read apart, at most 200 were shown with no way to the
    rest, and a parent looked for in the whole store hid the spans under it."""
    sp = tables.spans.c
    parent = tables.spans.alias("parent")
    in_run = (
        select(parent.c.span_id)
        .where(parent.c.span_id == sp.parent_id, parent.c.run_id == sp.run_id)
        .exists()
    )
    return or_(sp.parent_id.is_(None), sp.span_id == run_id, ~in_run)


def run_bounds(engine: Engine, run_id: str) -> tuple[int, int, int, int]:
    """``(first start, last end, span count, blocked decisions)`` of a run's spans."""
    sp = tables.spans.c
    ev = tables.events.c
    try:
        with engine.connect() as conn:
            first, last, count = conn.execute(
                select(func.min(sp.start_ns), func.max(sp.end_ns), func.count()).where(
                    tables.spans_of_run(run_id)
                )
            ).one()
            blocked = conn.execute(
                select(func.count()).where(
                    ev.run_id == run_id,
                    ev.name == semconv.EVENT_CONTROL_DECISION,
                    ev.attributes.like(f'%"{semconv.TETHER_DECISION}":"block"%'),
                )
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise _failed(exc) from exc
    return int(first or 0), int(last or 0), int(count), int(blocked)


@dataclass(slots=True)
class BlockedDecision:
    """A decision that blocked, and the span it was on (the list at the top of a run's page)."""

    span_id: str
    span_name: str
    decision: Decision


MAX_BLOCKED_SHOWN = 20
"""The most blocked decisions a run's page lists (its badge counts them all)."""


def _decision(attributes: str) -> Decision:
    attrs = json.loads(attributes)
    return Decision(
        control=str(attrs.get(semconv.TETHER_CONTROL_NAME, "?")),
        hook=str(attrs.get(semconv.TETHER_CONTROL_HOOK, "?")),
        verdict=str(attrs.get(semconv.TETHER_DECISION, "?")),
        reason=str(attrs.get(semconv.TETHER_DECISION_REASON, "")),
    )


def blocked_decisions(engine: Engine, run_id: str) -> list[BlockedDecision]:
    """The run's first ``MAX_BLOCKED_SHOWN`` decisions that blocked, with their spans' names:
    the decision events and the names only. Each span was read whole (its attributes, up to
    the store's limit a value, and its first 200 events): 1.2-1.5 s a page for a run whose
    blocked spans held large attributes."""
    ev = tables.events.c
    sp = tables.spans.c
    stmt = (
        select(ev.span_id, sp.name, ev.attributes)
        .join_from(
            tables.events,
            tables.spans,
            and_(sp.span_id == ev.span_id, sp.run_id == ev.run_id),
        )
        .where(
            ev.run_id == run_id,
            ev.name == semconv.EVENT_CONTROL_DECISION,
            ev.attributes.like(f'%"{semconv.TETHER_DECISION}":"block"%'),
        )
        .order_by(ev.time_ns, ev.id)
        .limit(MAX_BLOCKED_SHOWN)
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
    except SQLAlchemyError as exc:
        raise _failed(exc) from exc
    found = [BlockedDecision(s, name, _decision(a)) for s, name, a in rows]
    return [b for b in found if b.decision.verdict == "block"]


def span_detail(
    engine: Engine,
    run_id: str,
    span_id: str,
    *,
    max_events: int | None = None,
    events_from: int = 0,
) -> SpanDetail | None:
    """One span of the run with its attributes and events (``max_events`` of them from the
    ``events_from``-th, and its control decisions among the first ``max_events`` of those);
    None if the run has no such span."""
    if not storable(span_id):
        return None
    sp = tables.spans.c
    ev = tables.events.c
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(select(tables.spans).where(sp.span_id == span_id, sp.run_id == run_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            of_span = select(ev.name, ev.time_ns, ev.attributes).where(
                ev.run_id == run_id, ev.span_id == span_id
            )
            in_order = of_span.order_by(ev.time_ns, ev.id)
            events = conn.execute(in_order.offset(events_from).limit(max_events)).all()
            event_count = events_from + len(events)
            decided: Sequence[Any] = [e for e in events if e[0] == semconv.EVENT_CONTROL_DECISION]
            if max_events is not None and (
                len(events) == max_events or (events_from and not events)
            ):
                event_count = conn.execute(
                    select(func.count()).select_from(of_span.subquery())
                ).scalar_one()
                decided = conn.execute(
                    of_span.where(ev.name == semconv.EVENT_CONTROL_DECISION)
                    .order_by(ev.time_ns, ev.id)
                    .limit(max_events)
                ).all()
            count = conn.execute(
                select(func.count()).where(
                    tables.spans_of_run(run_id), sp.parent_id == span_id, sp.span_id != span_id
                )
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise _failed(exc) from exc
    shown_events = [
        {"name": name, "time_ns": time_ns, "attributes": json.loads(attributes)}
        for name, time_ns, attributes in events
    ]
    decisions = [_decision(attributes) for _, _, attributes in decided]
    line = SpanLine(
        span_id=row["span_id"],
        parent_id=row["parent_id"],
        name=row["name"],
        kind=row["kind"],
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        status=row["status"],
        children=int(count),
        decisions=[d.verdict for d in decisions],
    )
    return SpanDetail(
        line=line,
        attributes=json.loads(row["attributes"]),
        events=shown_events,
        decisions=decisions,
        event_count=int(event_count),
    )


def messages(value: Any) -> list[dict[str, Any]]:
    """OTel GenAI messages (``gen_ai.input.messages``) as ``[{role, parts: [text]}]`` for the
    page; anything else as one part. Text nested deeper than Python's stack reads is that one
    part as it is (``[[[...]]]`` 10,000 deep raised RecursionError: the span's page was a 500)."""
    try:
        return _messages(value)
    except RecursionError:
        shown = value if isinstance(value, str) else "(nested too deeply to show)"
        return [{"role": "", "parts": [shown]}]


def _messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [{"role": "", "parts": [value]}]
    if not isinstance(value, list):
        return [{"role": "", "parts": [json.dumps(value, ensure_ascii=False)]}]
    out = []
    for message in value:
        if not isinstance(message, dict):
            out.append({"role": "", "parts": [str(message)]})
            continue
        parts: list[str] = []
        for part in message.get("parts") or []:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("content", "")))
            else:
                parts.append(json.dumps(part, ensure_ascii=False, indent=1))
        out.append({"role": str(message.get("role", "")), "parts": parts})
    return out


def decided_spans(lines: Sequence[SpanLine]) -> list[SpanLine]:
    """The spans of ``lines`` a control blocked."""
    return [line for line in lines if line.blocked]
