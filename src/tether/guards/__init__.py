"""Guards: prompt-injection detection and mitigation for untrusted text.

``InjectionDetector().scan(text, channel)`` scores a text for prompt injection (direct, on the
``user`` channel; indirect, on ``tool_output`` and ``document``); ``spotlight`` marks untrusted
text as data before it reaches a model. See ``docs/guards.md``.
"""

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

__all__ = [
    "CHANNELS",
    "Channel",
    "Evidence",
    "InjectionDetector",
    "InjectionVerdict",
    "Normalized",
    "View",
    "default_detector",
    "normalize",
    "scan",
]
