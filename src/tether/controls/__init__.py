"""Controls: the policy pipeline and the controls that run on it."""

from tether.controls.authz import Authorizer, AuthzRequest, AuthzVerdict, CedarAuthorization
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
    "Authorizer",
    "AuthzRequest",
    "AuthzVerdict",
    "CedarAuthorization",
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
