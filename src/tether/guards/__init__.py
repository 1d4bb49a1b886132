"""Guards: detectors that judge the text entering and leaving an agent (personal data,
credentials), the policy that says which runs where and what it does, and redaction."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports

if TYPE_CHECKING:
    from tether.guards.findings import Detection, Detector, Finding
    from tether.guards.pii import PiiDetector
    from tether.guards.policy import GuardRule, GuardsPolicy, default_policy, load_policy
    from tether.guards.redaction import HashKey, redact, redact_each
    from tether.guards.registry import GuardType, register_guard
    from tether.guards.secrets import SecretsDetector
    from tether.guards.stack import GuardFinding, GuardStack, GuardVerdict

# Imported on first use: the detectors compile their patterns and load RE2.
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
    "Detection",
    "Detector",
    "Finding",
    "GuardFinding",
    "GuardRule",
    "GuardStack",
    "GuardType",
    "GuardVerdict",
    "GuardsPolicy",
    "HashKey",
    "PiiDetector",
    "SecretsDetector",
    "default_policy",
    "load_policy",
    "redact",
    "redact_each",
    "register_guard",
]
