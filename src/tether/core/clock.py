"""Time sources. Wall-clock nanoseconds for timestamps, a monotonic clock for durations."""

from __future__ import annotations

import time


def now_ns() -> int:
    """Wall-clock time in nanoseconds since the epoch (what OTel spans carry)."""
    return time.time_ns()


def monotonic() -> float:
    """Seconds on a monotonic clock, for deadlines and durations."""
    return time.monotonic()
