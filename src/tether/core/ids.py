"""Identifiers in the OpenTelemetry formats: 32 hex chars for traces, 16 for spans.

Like the OpenTelemetry SDK's ``RandomIdGenerator``, ids come from ``getrandbits`` of a
generator seeded from the OS at start and reseeded in forked children, so ids stay unique
across processes, at a fraction of the cost of ``os.urandom`` (a system call per id). Ids
identify; they are not secrets.
"""

from __future__ import annotations

import os
import random

_random = random.Random()  # our own instance: a user's random.seed() cannot make ids repeat
_getrandbits = _random.getrandbits
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's ids
    os.register_at_fork(after_in_child=_random.seed)


def new_trace_id() -> str:
    """A random 128-bit trace id as 32 lowercase hex characters (W3C trace-context format)."""
    value = 0
    while not value:  # all zeros is invalid in W3C trace context
        value = _getrandbits(128)
    return f"{value:032x}"


def new_span_id() -> str:
    """A random 64-bit span id as 16 lowercase hex characters."""
    value = 0
    while not value:
        value = _getrandbits(64)
    return f"{value:016x}"
