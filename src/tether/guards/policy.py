"""A guards policy: which guard runs on which channel, from what score it acts, and how.

The YAML maps one-to-one onto :class:`GuardsPolicy` (the agent spec's schema, in
``tether.spec.guards``); the same rules sit in an agent spec under ``guards.rules``. Every
mistake is found when the file loads and named by file, line and field: an unknown guard,
channel, action or kind, a threshold outside (0, 1], ``mask`` on a guard that finds no
spans::

    guards:
      - guard: secrets
        channels: [user, tool_output, document, output]
        threshold: 0.5
        action: block
      - guard: pii
        channels: [output]
        kinds: [EMAIL_ADDRESS, CREDIT_CARD]
        action: mask
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tether.guards.registry import guard_types
from tether.spec.guards import DEFAULT_DETECTOR_THRESHOLD, DetectorRule, GuardsPolicy

Channel = Literal["user", "tool_output", "document", "output", "tool_args"]
CHANNELS: tuple[Channel, ...] = ("user", "tool_output", "document", "output", "tool_args")
"""Where text comes from: the user's message, a tool's result, a fetched or retrieved document,
the agent's answer, the arguments the model writes for a tool call (their values, judged one
by one: ``tether.guards.arguments``)."""
Action = Literal["block", "mask", "hash", "escalate", "log"]
ACTIONS: tuple[Action, ...] = ("block", "mask", "hash", "escalate", "log")
DEFAULT_THRESHOLD = DEFAULT_DETECTOR_THRESHOLD

GuardRule = DetectorRule
"""A rule of a detector guard (``pii``, ``secrets``...). The schema is the agent spec's
(``tether.spec.guards``): a policy file may hold every kind of rule (``injection``,
``deny_list``...); the detectors' rules are this one."""

__all__ = [
    "ACTIONS",
    "CHANNELS",
    "DEFAULT_THRESHOLD",
    "Action",
    "Channel",
    "GuardRule",
    "GuardsPolicy",
    "default_policy",
    "load_policy",
]


def default_policy() -> GuardsPolicy:
    """Every registered guard on every channel at the default threshold, with its default
    action (``pii`` and ``secrets``: mask)."""
    rules = [
        DetectorRule.model_validate({"guard": g.name, "action": g.default_action})
        for g in guard_types().values()
        if g.in_default_policy
    ]
    return GuardsPolicy(guards=rules)


def load_policy(path: str | Path) -> GuardsPolicy:
    """Read and validate a guards policy file; ``SpecError`` naming file, line and field."""
    from tether.spec import load_guards_policy

    return load_guards_policy(path)
