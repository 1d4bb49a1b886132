"""Plain records the store reads and writes. The trace layer builds them; the UI reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The values of ``tether.core.DEFAULT_PROJECT``, ``RunKind.AGENT_RUN`` and
# ``EntryPoint.RUNTIME``, spelled out: records load without pydantic (which those come with).
DEFAULT_PROJECT = "default"
AGENT_RUN = "agent_run"
RUNTIME = "runtime"


@dataclass(slots=True)
class RunRecord:
    """One agent execution (or one gateway request).

    ``run_id`` is its id, equal to the id of its root (``invoke_agent``) span: a run is the
    subtree under that span. ``trace_id`` may be shared with other runs (a caller passing
    one upstream OpenTelemetry trace id to several operations).

    Every record carries the ``run_id`` of the run it belongs to. Records read from a crash
    journal written before runs had ids have an empty one: the store gives them the run of
    their trace (see ``Store.write``).
    """

    trace_id: str
    run_id: str = field(kw_only=True)
    agent_name: str | None
    """The agent's name; None for a run that is not an agent's (a gateway request)."""
    agent_version: str | None
    """The content hash of the agent's spec; None when there is no agent."""
    started_ns: int
    status: str = "running"
    """``running`` until the run ends; then ``completed``, ``paused`` or ``failed``."""
    outcome: str | None = None
    """How it ended: ``final_answer``, ``limit_exceeded``, ``loop_detected``, ``blocked``, ..."""
    input: str = ""
    output: str | None = None
    ended_ns: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = 0
    tool_calls: int = 0
    error: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    project: str = field(default=DEFAULT_PROJECT, kw_only=True)
    """The project (tenant) the run belongs to."""
    kind: str = field(default=AGENT_RUN, kw_only=True)
    """What the run is (``tether.core.RunKind``): ``agent_run``, ``model_request``,
    ``tool_call``."""
    entry_point: str = field(default=RUNTIME, kw_only=True)
    """How it came in (``tether.core.EntryPoint``): ``runtime``, ``model_gateway``,
    ``tool_gateway``, ``sdk``."""
    caller: dict[str, Any] | None = field(default=None, kw_only=True)
    """Who it ran for, as ``Caller.stored()`` gives it; None when not known."""

    @property
    def latency_ms(self) -> float | None:
        return None if self.ended_ns is None else (self.ended_ns - self.started_ns) / 1e6


@dataclass(slots=True)
class SpanRecord:
    """One step of a run, with OTel GenAI attribute names."""

    trace_id: str
    run_id: str = field(kw_only=True)
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    """``agent``, ``model``, ``tool``, ``control`` or ``plan``."""
    start_ns: int
    end_ns: int = 0
    status: str = "ok"
    """``ok`` or ``error``."""
    status_message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(slots=True)
class EventRecord:
    """A decision or signal on a span (guard verdict, limit trip, tool error, fallback)."""

    trace_id: str
    run_id: str = field(kw_only=True)
    span_id: str | None
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CheckpointRecord:
    """A serialized ``RunState`` at a pause or end point."""

    trace_id: str
    run_id: str = field(kw_only=True)
    schema_version: int
    created_ns: int
    state_json: str
    reason: str = ""


@dataclass(slots=True)
class AuditRecord:
    """One audit entry as it is accepted (seq and hashes are given when it is written)."""

    entry_id: str
    """A random id made when the entry is accepted (a replayed journal writes it once)."""
    time_ns: int
    """When it happened (ns since the epoch)."""
    kind: str
    """What happened: ``decision``, ``policy_load``, ``key_created``, ``key_revoked``..."""
    actor: dict[str, Any]
    """Who: project, key id, end user, agent (whichever are known)."""
    details: dict[str, Any] = field(default_factory=dict)
    """What: the control, hook, verdict and reason of a decision; a policy's content hash."""
    trace_id: str | None = None
    """The trace it belongs to, if any."""
    run_id: str | None = None
    """The run it belongs to, if any."""
    span_id: str | None = None
    """The span it was taken on, if any."""


@dataclass(slots=True)
class TraceBatch:
    """What one store transaction writes, in dependency order."""

    runs_started: list[RunRecord] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    runs_ended: list[RunRecord] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    """Audit entries, appended to the audit chain last (``tether.store.audit``)."""
    attributes_json: dict[int, str] = field(default_factory=dict)
    """Spans' and events' attributes already serialized (by ``dumps_attributes``), keyed by
    ``id(record)``: the trace writer serializes them once, for its journal, and the store
    reuses the text. Records not in it are serialized by the store."""
