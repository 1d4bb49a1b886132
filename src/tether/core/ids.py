"""Identifiers in the OpenTelemetry formats: 32 hex chars for traces, 16 for spans."""

from __future__ import annotations

import os


def new_trace_id() -> str:
    """A random 128-bit trace id as 32 lowercase hex characters (W3C trace-context format)."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """A random 64-bit span id as 16 lowercase hex characters."""
    return os.urandom(8).hex()
