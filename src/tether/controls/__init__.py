"""Controls: the policy pipeline and the controls that run on it: limits, the loop breaker,
budgets and rate limits (``BudgetControl``, from a spec's ``budgets`` section), and the guards
(prompt injection, personal data and secrets, deny lists, allowed topics, Python functions, an
LLM judge, spotlighting), built from a spec's ``guards`` section by ``build_guards``."""

from tether.controls.approvals import Approval
from tether.controls.authz import Authorizer, AuthzRequest, AuthzVerdict, CedarAuthorization
from tether.controls.budgets import BudgetControl
from tether.controls.guard_base import CHANNELS, GuardControl, GuardResult
from tether.controls.guard_build import build_guards
from tether.controls.guard_deny import DenyListGuard
from tether.controls.guard_injection import InjectionGuard
from tether.controls.guard_judge import JudgeGuard
from tether.controls.guard_pii import PiiGuard
from tether.controls.guard_python import FunctionGuard
from tether.controls.guard_spotlight import SpotlightControl
from tether.controls.guard_topics import TopicsGuard
from tether.controls.limits import LimitsControl, LoopBreaker
from tether.controls.pipeline import (
    ALLOW,
    Control,
    Decision,
    Hook,
    HookContext,
    LimitReached,
    ModelCaller,
    Pipeline,
    RunView,
    Verdict,
)

__all__ = [
    "ALLOW",
    "CHANNELS",
    "Approval",
    "Authorizer",
    "AuthzRequest",
    "AuthzVerdict",
    "BudgetControl",
    "CedarAuthorization",
    "Control",
    "Decision",
    "DenyListGuard",
    "FunctionGuard",
    "GuardControl",
    "GuardResult",
    "Hook",
    "HookContext",
    "InjectionGuard",
    "JudgeGuard",
    "LimitReached",
    "LimitsControl",
    "LoopBreaker",
    "ModelCaller",
    "PiiGuard",
    "Pipeline",
    "RunView",
    "SpotlightControl",
    "TopicsGuard",
    "Verdict",
    "build_guards",
]
