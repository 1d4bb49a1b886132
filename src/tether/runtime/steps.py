"""What each step of a run scope returns, and the signals steps use inside the scope.

A step never lets a control-flow exception escape to its caller: a block, a tripped limit, a
model provider that failed, a run timeout all end the run inside the scope and come back as a
``Step`` whose ``stopped`` is true. Only crashes (bugs, cancellation) propagate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from tether.controls import Decision
from tether.core import Outcome

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    """The result of one step of a run: its value, or how the run ended there."""

    value: T | None = None
    """What the step produced (the checked input or output text, the model's response, the
    tool messages), ``None`` when the run ended at this step."""
    outcome: Outcome | None = None
    """Set when the run ended at (or before) this step: how it ended."""
    decision: Decision | None = None
    """The control decision that shaped the step, if one did: the stop, a ``Respond`` that
    answered in place of the call, or the last ``Modify``."""

    @property
    def stopped(self) -> bool:
        """True when the run has ended: the caller's loop should stop and return."""
        return self.outcome is not None

    @property
    def responded(self) -> bool:
        """True when a control answered in place of the call (``Decision.respond``)."""
        return self.decision is not None and self.decision.verdict == "respond"


class Stop(Exception):
    """Inside the scope: a decision ends the run. Never escapes a step."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision
