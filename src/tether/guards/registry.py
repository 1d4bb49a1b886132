"""The guards a policy can name (``guard: pii``), and how to build each.

``pii`` and ``secrets`` are built in. Other detectors (prompt injection, a team's own) join with
:func:`register_guard`; a policy naming a guard nobody registered fails when it loads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from tether.guards.findings import Detector

Factory = Callable[[Collection[str] | None], Detector]
"""Builds a detector reporting only the given kinds (``None``: all of them)."""


@dataclass(frozen=True, slots=True)
class GuardType:
    """A guard a policy can name."""

    name: str
    """What policies call it (``pii``)."""
    factory: Factory
    """Builds its detector."""
    kinds: tuple[str, ...] | None
    """The kinds its findings have, for checking a policy's ``kinds:`` when it loads;
    ``None``: no fixed list (the factory checks them when the guard is built)."""
    redactable: bool
    """Its findings are spans of sensitive values that ``mask`` and ``hash`` can replace."""
    default_action: str
    """What the default policy does with it."""
    in_default_policy: bool = True
    """Part of the policy used when none is given."""


_GUARDS: dict[str, GuardType] = {}


def register_guard(guard: GuardType) -> None:
    """Make ``guard`` available to policies (replacing one of the same name)."""
    _GUARDS[guard.name] = guard


def guard_types() -> dict[str, GuardType]:
    """The registered guards by name, the built-in ones first."""
    return dict(_GUARDS)


def _pii(kinds: Collection[str] | None) -> Detector:
    from tether.guards.pii import PiiDetector

    return PiiDetector(kinds)


def _secrets(kinds: Collection[str] | None) -> Detector:
    from tether.guards.secrets import SecretsDetector

    return SecretsDetector(kinds)


def _presidio(kinds: Collection[str] | None) -> Detector:
    from tether.guards.presidio import PresidioPiiDetector

    return PresidioPiiDetector(kinds)


def _register_builtins() -> None:
    from tether.guards.pii import PII_KINDS
    from tether.guards.secrets import SECRET_KINDS

    register_guard(GuardType("pii", _pii, PII_KINDS, redactable=True, default_action="mask"))
    register_guard(
        GuardType("secrets", _secrets, SECRET_KINDS, redactable=True, default_action="mask")
    )
    # Presidio's analyzer (the ``presidio`` extra): broader, some 300x slower; opt-in.
    register_guard(
        GuardType(
            "presidio",
            _presidio,
            None,
            redactable=True,
            default_action="mask",
            in_default_policy=False,
        )
    )


_register_builtins()
