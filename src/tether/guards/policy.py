"""A guards policy: which guard runs on which channel, from what score it acts, and how.

The YAML maps one-to-one onto :class:`GuardsPolicy`; the same ``guards:`` list can sit in an
agent spec. Every mistake is found when the file loads and named by file, line and field: an
unknown guard, channel, action or kind, a threshold outside (0, 1], ``mask`` on a guard that
finds no spans::

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

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tether.guards.registry import guard_types

Channel = Literal["user", "tool_output", "document", "output"]
CHANNELS: tuple[Channel, ...] = ("user", "tool_output", "document", "output")
"""Where text comes from: the user's message, a tool's result, a fetched or retrieved document,
the agent's answer."""
Action = Literal["block", "mask", "hash", "escalate", "log"]
ACTIONS: tuple[Action, ...] = ("block", "mask", "hash", "escalate", "log")
DEFAULT_THRESHOLD = 0.5


class GuardRule(BaseModel):
    """One guard on some channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guard: str
    """Which detector: ``pii``, ``secrets`` (and any registered one, as ``injection``)."""
    channels: tuple[Channel, ...] = CHANNELS
    """The channels it runs on (default: all four)."""
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0, le=1)
    """Findings scoring at least this count (0 < threshold <= 1)."""
    action: Action = "block"
    """What happens to a text with such findings: ``block`` it, ``mask`` or ``hash`` the
    values (``hash`` needs ``TETHER_GUARD_HASH_KEY``), ``escalate`` to a person, or only
    ``log`` the verdict."""
    kinds: tuple[str, ...] | None = None
    """Only these kinds of findings (``[EMAIL_ADDRESS, CREDIT_CARD]``); default: all."""
    fail_open: bool = False
    """If the guard itself fails, let the text through (default: block it)."""

    @field_validator("guard")
    @classmethod
    def _known_guard(cls, guard: str) -> str:
        known = guard_types()
        if guard not in known:
            raise ValueError(f"unknown guard {guard!r}; known guards: {', '.join(known)}")
        return guard

    @field_validator("channels")
    @classmethod
    def _channels(cls, channels: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if not channels:
            raise ValueError(f"name at least one channel ({', '.join(CHANNELS)})")
        if len(set(channels)) != len(channels):
            raise ValueError("a channel is named twice")
        return channels

    @field_validator("action")
    @classmethod
    def _action_fits(cls, action: Action, info: ValidationInfo) -> Action:
        guard = guard_types().get(info.data.get("guard", ""))
        if guard is not None and action in ("mask", "hash") and not guard.redactable:
            raise ValueError(
                f"guard {guard.name!r} scores whole texts and finds no values to {action}; "
                "use block, escalate or log"
            )
        return action

    @field_validator("kinds")
    @classmethod
    def _kinds_known(
        cls, kinds: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        guard = guard_types().get(info.data.get("guard", ""))
        if kinds is None or guard is None:
            return kinds
        if not kinds:
            raise ValueError("name at least one kind, or leave kinds out for all of them")
        if guard.kinds is None:
            return kinds  # checked when the guard is built
        unknown = [k for k in kinds if k not in guard.kinds]
        if unknown:
            known = ", ".join(guard.kinds)
            raise ValueError(f"unknown {guard.name} kind(s) {', '.join(unknown)}; known: {known}")
        return kinds


class GuardsPolicy(BaseModel):
    """The guards of an agent, a gateway or a ``tether scan``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guards: tuple[GuardRule, ...] = ()
    """The rules, each applied independently; a text is blocked if any blocking rule fires."""

    def rules_for(self, channel: Channel) -> tuple[GuardRule, ...]:
        """The rules that run on ``channel``."""
        return tuple(r for r in self.guards if channel in r.channels)


def default_policy() -> GuardsPolicy:
    """Every registered guard on every channel at the default threshold, with its default
    action (``pii`` and ``secrets``: mask)."""
    rules = [
        GuardRule.model_validate({"guard": g.name, "action": g.default_action})
        for g in guard_types().values()
        if g.in_default_policy
    ]
    return GuardsPolicy(guards=tuple(rules))


def load_policy(path: str | Path) -> GuardsPolicy:
    """Read and validate a guards policy file; ``SpecError`` naming file, line and field."""
    from tether.spec.loader import load_with_tree, remember_origin

    policy, node = load_with_tree(GuardsPolicy, path)
    for i, rule in enumerate(policy.guards):  # so later errors (a missing key) name the line
        remember_origin(rule, path, node, ("guards", i))
    return policy
