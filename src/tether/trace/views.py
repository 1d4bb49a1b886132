"""Runs and traces as readers see them: the JSON that ``tether traces list/show --json`` and
the HTTP API print, one shape for both.

Views are built from the store's records (``tether.store.StoreReader``) and add what a reader
needs and the records do not say outright: a cost that is unknown (``None``) rather than zero
when a model call could not be priced, latencies, a readable start time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from tether.store import EventRecord, RunRecord, SpanRecord
from tether.trace.readout import fmt_ns, json_cost, run_cost

if TYPE_CHECKING:  # the reader loads SQLAlchemy: views are built without it
    from tether.store import RunListing, Trace


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunSummary(_View):
    """One run: who and what it was, how it went, what it cost."""

    trace_id: str
    """The OpenTelemetry trace the run is part of (several runs may share one)."""
    run_id: str
    """The run's own id (its root span's): what ``traces show`` takes."""
    project: str
    """The project (tenant) the run belongs to."""
    kind: str
    """``agent_run``, ``model_request`` or ``tool_call``."""
    entry_point: str
    """How the run came in: ``runtime``, ``model_gateway``, ``tool_gateway`` or ``sdk``."""
    agent: str | None
    """The agent's name; null for a run that is not an agent's (a gateway request)."""
    agent_version: str | None
    """The content hash of the agent's spec; null when there is no agent."""
    caller: dict[str, Any] | None
    """Who the run was for (project, key id, end user, roles, scopes); null when not known."""
    status: str
    """``running``, ``completed``, ``paused`` or ``failed``."""
    outcome: str | None
    """How it ended (``final_answer``, ``limit_exceeded``, ``blocked``, ...); null while it
    runs."""
    input: str
    """The input the run was given, as stored."""
    output: str | None
    """The run's answer, as stored; null if it gave none."""
    started: str
    """When it started, ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    started_ns: int
    """When it started, in nanoseconds since the epoch."""
    ended_ns: int | None
    """When it ended, in nanoseconds since the epoch; null while it runs."""
    latency_ms: float | None
    """How long it took, in milliseconds; null while it runs."""
    input_tokens: int
    """Input tokens of its model calls."""
    output_tokens: int
    """Output tokens of its model calls."""
    cached_input_tokens: int
    """Input tokens served from the provider's prompt cache."""
    cost_usd: float | None
    """What its model calls cost, in US dollars; null when a call could not be priced."""
    turns: int
    """Model turns taken."""
    tool_calls: int
    """Tool calls made."""
    error: str | None
    """Why it failed, if it did."""
    attributes: dict[str, Any]
    """The run's other attributes (paradigm, stop reason, ...)."""

    @classmethod
    def of(cls, run: RunRecord, spans: Sequence[SpanRecord] = ()) -> RunSummary:
        """The view of a run; with its ``spans``, an unpriced model call among them makes
        its cost unknown."""
        return cls(
            trace_id=run.trace_id,
            run_id=run.run_id,
            project=run.project,
            kind=run.kind,
            entry_point=run.entry_point,
            agent=run.agent_name,
            agent_version=run.agent_version,
            caller=run.caller,
            status=run.status,
            outcome=run.outcome,
            input=run.input,
            output=run.output,
            started=fmt_ns(run.started_ns),
            started_ns=run.started_ns,
            ended_ns=run.ended_ns,
            latency_ms=run.latency_ms,
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            cached_input_tokens=run.cached_input_tokens,
            cost_usd=json_cost(run_cost(run, spans)),
            turns=run.turns,
            tool_calls=run.tool_calls,
            error=run.error,
            attributes=run.attributes,
        )


class SpanView(_View):
    """One step of a run (OTel GenAI names in its attributes)."""

    span_id: str
    """The span's id."""
    parent_id: str | None
    """The span it is a step of; null for the run's root span."""
    name: str
    """OTel name: ``invoke_agent <agent>``, ``chat <model>``, ``execute_tool <tool>``, ..."""
    kind: str
    """``agent``, ``model``, ``tool``, ``control`` or ``plan``."""
    start_ns: int
    """When it started, in nanoseconds since the epoch."""
    end_ns: int
    """When it ended, in nanoseconds since the epoch."""
    duration_ms: float
    """How long it took, in milliseconds."""
    status: str
    """``ok`` or ``error``."""
    status_message: str | None
    """What went wrong, for a span in error."""
    attributes: dict[str, Any]
    """Its attributes (``gen_ai.*`` and ``tether.*``)."""

    @classmethod
    def of(cls, span: SpanRecord) -> SpanView:
        return cls(
            span_id=span.span_id,
            parent_id=span.parent_id,
            name=span.name,
            kind=span.kind,
            start_ns=span.start_ns,
            end_ns=span.end_ns,
            duration_ms=span.duration_ms,
            status=span.status,
            status_message=span.status_message,
            attributes=span.attributes,
        )


class EventView(_View):
    """A decision or signal on a span (a control's verdict, a limit tripped, a tool error)."""

    span_id: str | None
    """The span it happened on; null if that span was never recorded (a crash)."""
    name: str
    """What happened (``tether.control.decision``, ...)."""
    time_ns: int
    """When, in nanoseconds since the epoch."""
    attributes: dict[str, Any]
    """What it says (the control, its verdict and reason, ...)."""

    @classmethod
    def of(cls, event: EventRecord) -> EventView:
        return cls(
            span_id=event.span_id,
            name=event.name,
            time_ns=event.time_ns,
            attributes=event.attributes,
        )


class RunDetail(_View):
    """One run's trace: the run, its spans in start order, its events in time order."""

    run: RunSummary
    """The run (its cost unknown if any of its model calls could not be priced)."""
    spans: list[SpanView]
    """Its spans, in start order."""
    events: list[EventView]
    """Its events, in time order."""
    truncated: bool = False
    """The run has more spans or events than were read (the API's ``max_spans`` and
    ``max_events``): these are the first; page through ``/runs/{run_id}/spans`` for the rest."""
    clipped: int = 0
    """How many of its texts (input, output, attribute values) were clipped (the API's
    ``text_chars``): each ends in a marker saying how much is left out and where it is whole."""

    @classmethod
    def of(cls, trace: Trace, *, truncated: bool = False) -> RunDetail:
        return cls(
            run=RunSummary.of(trace.run, trace.spans),
            spans=[SpanView.of(s) for s in trace.spans],
            events=[EventView.of(e) for e in trace.events],
            truncated=truncated,
        )


class RunPage(_View):
    """One page of runs, newest first."""

    runs: list[RunSummary]
    """The runs of this page."""
    total: int | None
    """How many runs match the filters, on all pages; null when not counted."""
    next_cursor: str | None
    """Pass it as the cursor to read the next page; null on the last page."""

    @classmethod
    def of(cls, listing: RunListing[Any]) -> RunPage:
        runs: Iterable[RunRecord] = listing.runs
        return cls(
            runs=[RunSummary.of(r) for r in runs],
            total=listing.total,
            next_cursor=listing.next_cursor,
        )
