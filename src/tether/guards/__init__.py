"""Guards: detectors that judge the text entering and leaving an agent — prompt injection
(direct on the ``user`` channel; indirect on ``tool_output`` and ``document``), personal data,
credentials —, the policy that says which runs where and what it does, redaction, and
spotlighting that marks untrusted text as data before it reaches a model. See
``docs/guards.md``.
"""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports

# Plain imports: ``normalize`` is also a submodule's name, which a lazy export would lose to.
from tether.guards.injection import (
    CHANNELS,
    Channel,
    Evidence,
    InjectionDetector,
    InjectionVerdict,
    default_detector,
    scan,
)
from tether.guards.normalize import Normalized, View, normalize
from tether.guards.spotlight import Spotlight, spotlight, spotlight_instruction

if TYPE_CHECKING:
    from tether.guards.findings import Detection, Detector, Finding
    from tether.guards.pii import PiiDetector
    from tether.guards.policy import GuardRule, GuardsPolicy, default_policy, load_policy
    from tether.guards.redaction import HashKey, redact, redact_each
    from tether.guards.registry import GuardType, register_guard
    from tether.guards.secrets import SecretsDetector
    from tether.guards.stack import GuardFinding, GuardStack, GuardVerdict

# Imported on first use: the detectors compile their patterns, load RE2 and the model.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        ".findings": ("Detection", "Detector", "Finding"),
        ".pii": ("PiiDetector",),
        ".policy": ("GuardRule", "GuardsPolicy", "default_policy", "load_policy"),
        ".redaction": ("HashKey", "redact", "redact_each"),
        ".registry": ("GuardType", "register_guard"),
        ".secrets": ("SecretsDetector",),
        ".stack": ("GuardFinding", "GuardStack", "GuardVerdict"),
    },
)

__all__ = [
    "CHANNELS",
    "Channel",
    "Detection",
    "Detector",
    "Evidence",
    "Finding",
    "GuardFinding",
    "GuardRule",
    "GuardStack",
    "GuardType",
    "GuardVerdict",
    "GuardsPolicy",
    "HashKey",
    "InjectionDetector",
    "InjectionVerdict",
    "Normalized",
    "PiiDetector",
    "SecretsDetector",
    "Spotlight",
    "View",
    "default_detector",
    "default_policy",
    "load_policy",
    "normalize",
    "redact",
    "redact_each",
    "register_guard",
    "scan",
    "spotlight",
    "spotlight_instruction",
]
