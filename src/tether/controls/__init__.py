"""Controls: the policy pipeline and the controls that run on it."""

from tether.controls.limits import LIMIT_EXCEEDED, LOOP_DETECTED, LimitsControl, LoopBreaker
from tether.controls.pipeline import (
    ALLOW,
    CONTROL_ERROR,
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
    "CONTROL_ERROR",
    "LIMIT_EXCEEDED",
    "LOOP_DETECTED",
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
