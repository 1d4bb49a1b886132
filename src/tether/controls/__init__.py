"""Controls: the policy pipeline and the controls that run on it."""

from tether.controls.limits import LimitsControl, LoopBreaker
from tether.controls.pipeline import (
    ALLOW,
    Control,
    Decision,
    Hook,
    HookContext,
    Pipeline,
    RunView,
    Verdict,
)

__all__ = [
    "ALLOW",
    "Control",
    "Decision",
    "Hook",
    "HookContext",
    "LimitsControl",
    "LoopBreaker",
    "Pipeline",
    "RunView",
    "Verdict",
]
