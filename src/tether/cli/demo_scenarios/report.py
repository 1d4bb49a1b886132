"""What a demo scenario gives back to ``tether demo``: its runs, whether it went as it should,
how to show it in a terminal, and its JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from rich.console import Console

from tether.runtime import RunResult
from tether.runtime.scope import TraceTarget


@dataclass
class ScenarioReport:
    """One scenario of ``tether demo`` besides the support agent's, as it went."""

    name: str
    """What it shows, in a few words (``refund denied by policy``)."""
    agent: str
    """The agent it runs (shown after the name)."""
    as_expected: bool
    """Whether it ended as it should (a skipped scenario did: it says why)."""
    show: Callable[[Console], None]
    """Prints what happened, a few lines."""
    data: dict[str, Any] = field(default_factory=dict)
    """What ``tether demo --json`` gives besides the name (run ids, decisions, results)."""
    runs: list[RunResult] = field(default_factory=list)
    """Its runs in order (the summary adds them up; ``traces show`` opens one)."""
    main: int = -1
    """The run most worth opening with ``traces show`` (an index of ``runs``)."""
    skipped: str | None = None
    """Why it did not run, when it could not here (no bubblewrap for the sandbox)."""

    @property
    def main_run(self) -> RunResult | None:
        return self.runs[self.main] if self.runs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "agent": self.agent,
            "as_expected": self.as_expected,
            "skipped": self.skipped,
            **self.data,
        }


Scenario: TypeAlias = Callable[[TraceTarget, Path], Awaitable[ScenarioReport]]
"""A scenario: given the demo's trace target and the examples folder, runs offline and
reports."""
