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
from tether.guards.spotlight import Spotlight, spotlight, spotlight_instruction

__all__ = [
    "CHANNELS",
    "Channel",
    "Evidence",
    "InjectionDetector",
    "InjectionVerdict",
    "Normalized",
    "Spotlight",
    "View",
    "default_detector",
    "normalize",
    "scan",
    "spotlight",
    "spotlight_instruction",
]
