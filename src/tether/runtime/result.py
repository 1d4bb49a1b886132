"""``RunResult``: what ``Agent.run`` returns."""

from __future__ import annotations

from dataclasses import dataclass

from tether.core import Outcome
from tether.providers import Usage
from tether.runtime.state import RunState


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run. Control-flow stops (limits, loops, blocks) are outcomes here,
    not exceptions."""

    output: str
    """What the user is told (the final answer, or the apology/limit message)."""
    outcome: Outcome
    """How the run ended (an ``Outcome``, equal to its string: ``result.outcome ==
    "final_answer"`` holds for a final answer)."""
    status: str
    """``completed``, ``paused`` or ``failed``: ``outcome.status``."""
    trace_id: str
    """The W3C trace id (the caller's, when ``Agent.run`` was given one)."""
    run_id: str
    """This run's id within the trace (its root span's id): what ``tether traces show``
    takes when several runs share a trace id."""
    usage: Usage
    cost_usd: float | None
    """Cost in USD; ``None`` when a model call could not be priced (the cost is unknown, not
    zero; ``state.cost_usd`` has the priced part)."""
    latency_s: float
    stop_reason: str | None
    state: RunState
    """The full final state (messages, tool history, plan): partial results live here."""
    error: str | None = None
    """What went wrong, when the run failed (``status == "failed"``)."""
    hint: str | None = None
    """What the operator can do about ``error`` (for example: check the API key)."""

    @property
    def ok(self) -> bool:
        """True when the run ended with a final answer."""
        return self.outcome is Outcome.FINAL_ANSWER

    @classmethod
    def from_state(cls, state: RunState) -> RunResult:
        # Every run makes one: its fields go into the instance's dict in one update rather
        # than through the frozen dataclass's __init__, which sets each with
        # object.__setattr__ (about 3 us for these twelve). Same fields, same object.
        result = object.__new__(cls)
        result.__dict__.update(
            output=state.output or "",
            outcome=state.outcome or Outcome.ERROR,
            status=state.status,
            trace_id=state.trace_id,
            run_id=state.run_id,
            usage=state.usage,
            cost_usd=None if state.unpriced_calls else state.cost_usd,
            latency_s=state.elapsed_s,
            stop_reason=state.stop_reason,
            state=state,
            error=state.error,
            hint=state.hint,
        )
        return result
