"""``Outcome``: how a run ended, and the status each ending gives the run.

One type for every place that names an outcome (the loop, the controls, the result, the CLI).
It is a ``StrEnum``: a member equals its string (``Outcome.FINAL_ANSWER == "final_answer"``),
and the store, the journal and checkpoints write that plain string.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

EndStatus = Literal["completed", "paused", "failed"]
"""The status of a run that has ended (a running run has none of these)."""


class Outcome(StrEnum):
    """How a run ended."""

    FINAL_ANSWER = "final_answer"
    """The model answered and ``on_output`` let the answer through."""
    LIMIT_EXCEEDED = "limit_exceeded"
    """A limit of the spec tripped (turns, tool calls, tokens, cost, timeout)."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """A budget of the spec's ``budgets`` section (tokens or US dollars of a project, an agent,
    an end user or the run, over a run, a day or a month) has no room for the next model call."""
    RATE_LIMITED = "rate_limited"
    """A rate limit of the spec's ``budgets`` section (model calls or tokens per minute) has no
    room for the next model call; trying again after the minute may work."""
    LOOP_DETECTED = "loop_detected"
    """The loop breaker stopped a repeated tool call that brought no new information."""
    BLOCKED = "blocked"
    """A control blocked the run."""
    ESCALATED = "escalated"
    """A control asked for a person's approval: the run is paused."""
    DEFERRED = "deferred"
    """A control deferred the run for a later review: the run is paused."""
    CONTROL_ERROR = "control_error"
    """A control raised or answered nonsense: the run failed closed."""
    EMPTY_ANSWER = "empty_answer"
    """The model gave no answer text."""
    ERROR = "error"
    """The model provider failed, or the run crashed."""

    @property
    def status(self) -> EndStatus:
        """The run status this outcome gives: ``completed``, ``paused`` or ``failed``."""
        return _STATUS[self]


_STATUS: dict[Outcome, EndStatus] = {
    Outcome.FINAL_ANSWER: "completed",
    Outcome.LIMIT_EXCEEDED: "completed",
    Outcome.BUDGET_EXCEEDED: "completed",
    Outcome.RATE_LIMITED: "completed",
    Outcome.LOOP_DETECTED: "completed",
    Outcome.BLOCKED: "completed",
    Outcome.ESCALATED: "paused",
    Outcome.DEFERRED: "paused",
    Outcome.CONTROL_ERROR: "failed",
    Outcome.EMPTY_ANSWER: "failed",
    Outcome.ERROR: "failed",
}
