"""``RunState``: everything a run knows, as plain serializable data.

A run can be checkpointed at any hook and resumed from its ``RunState`` alone. The schema is
versioned; every version keeps golden fixtures in ``tests/fixtures/`` that must still load.

These are plain slotted dataclasses (the run sets their fields at every step); pydantic
serializes and validates them at the boundary (``to_json``, ``from_json``, ``model_validate``:
see ``tether.core.plain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic_core import PydanticSerializationError

from tether.core import Caller, EntryPoint, Outcome, RunKind, scrub_surrogates
from tether.core.plain import PlainData
from tether.providers import Message, ToolCall, Usage

RUN_STATE_SCHEMA_VERSION = 1

RunStatus = Literal["running", "completed", "paused", "failed"]


@dataclass(slots=True, kw_only=True)
class ToolRecord(PlainData):
    """One executed tool call, as the loop breaker and audits see it."""

    call_id: str
    name: str
    args_hash: str
    """Content hash of the arguments."""
    result_hash: str = ""
    """Content hash of the result text (empty while the call is running): equal hashes mean
    no new information."""
    is_error: bool = False


@dataclass(slots=True, kw_only=True)
class PendingApproval(PlainData):
    """The tool call a paused run waits on: a control escalated it at ``before_tool``, and a
    person approves or denies exactly this call (its id, tool and arguments)."""

    call_id: str
    tool: str
    args_hash: str
    """Content hash of the call's arguments."""
    control: str
    """The control that escalated it."""
    reason: str
    """Why it asked."""
    span_id: str = ""
    """The call's span in the paused run."""


@dataclass(slots=True, kw_only=True)
class RunState(PlainData):
    """The explicit state of one run."""

    schema_version: Literal[1] = 1
    """Version of this schema; bumped on any incompatible change (with a migration)."""
    trace_id: str
    """The W3C trace id; several runs may share one (a caller's upstream trace)."""
    run_id: str = ""
    """The run's own id, its root span's id (empty in checkpoints written before runs had
    their own ids)."""
    agent_name: str = ""
    """The agent's name (empty for a run that has no agent: a gateway request)."""
    agent_version: str = ""
    paradigm: Literal["react", "plan_execute"] = "react"
    input: str
    """The user's input, after on_input controls."""
    messages: list[Message] = field(default_factory=list)
    """The conversation so far, system prompt first."""
    status: RunStatus = "running"
    outcome: Outcome | None = None
    """How the run ended (``None`` while it runs); serialized as the outcome's string."""
    output: str | None = None
    """What the user is told."""
    stop_reason: str | None = None
    """Why the run stopped, when it did not end with a final answer."""
    error: str | None = None
    """What went wrong, when the run failed."""
    hint: str | None = None
    """What the operator can do about ``error`` (check the API key, the model name, ...)."""
    turns: int = 0
    """Model calls made."""
    tool_calls: int = 0
    """Tool calls executed."""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    """Cost of the priced model calls (see ``unpriced_calls``)."""
    unpriced_calls: int = 0
    """Model calls the pricing table has no price for: their cost is unknown, and not in
    ``cost_usd``."""
    unreported_tokens: int = 0
    """The worst case of the model calls whose provider reported no usage (their input
    estimate plus their ``max_tokens``): not in ``usage`` (nobody knows what they used), but
    counted against ``limits.max_total_tokens``."""
    unreported_usd: float = 0.0
    """That worst case, priced: not in ``cost_usd``, but counted against
    ``limits.max_cost_usd``."""
    tool_history: list[ToolRecord] = field(default_factory=list)
    plan: list[ToolCall] | None = None
    """``plan_execute``: the planned tool calls."""
    pending_tool_calls: list[ToolCall] = field(default_factory=list)
    """Tool calls the model asked for that did not run because the run stopped at them (an
    escalation awaiting approval, a limit): what a resumed run has to settle first."""
    risk_score: float = 0.0
    risk_categories: list[str] = field(default_factory=list)
    """What the run's guards had found when it was checkpointed (``RunRisk``: Cedar's
    ``context.risk``): a resumed run goes on from it, as it goes on from the conversation."""
    awaiting_approval: PendingApproval | None = None
    """The tool call a control escalated at ``before_tool``, when that paused the run: what a
    person approves or denies before the run is resumed."""
    started_ns: int = 0
    elapsed_s: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    caller: Caller = field(default_factory=Caller)
    """Who the run is for (project, API key id, end user, roles, scopes)."""
    entry_point: EntryPoint = EntryPoint.RUNTIME
    """How the run came in."""
    kind: RunKind = RunKind.AGENT_RUN
    """What the run is: a whole agent run, one model request, one tool call."""

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def end(self, outcome: Outcome) -> None:
        """End the run with ``outcome``; its status follows from the outcome."""
        self.outcome, self.status = outcome, outcome.status

    def to_json(self) -> str:
        """The state as JSON; a lone surrogate (free-form ``metadata`` may hold one: UTF-8
        cannot) is written as U+FFFD, as the store writes every text."""
        try:
            return self.model_dump_json()
        except PydanticSerializationError:
            scrubbed = _without_surrogates(self.model_dump())
            return type(self).model_validate(scrubbed).model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> RunState:
        """Load a serialized state of this or an older schema version."""
        return cls.model_validate_json(data)


def _without_surrogates(value: Any) -> Any:
    """``value`` (a state as ``model_dump`` gives it) with lone surrogates as U+FFFD in every
    string, keys included."""
    if isinstance(value, str):
        return scrub_surrogates(value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_without_surrogates(v) for v in value]
    return value
