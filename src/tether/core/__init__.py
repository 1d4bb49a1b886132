"""Core: errors, outcomes, ids, clocks, hashing, settings. Depends on nothing else in Tether."""

from tether.core.caller import DEFAULT_PROJECT, AgentRef, Caller, EntryPoint, RunKind
from tether.core.clock import monotonic, now_ns
from tether.core.errors import (
    Conflict,
    CorruptRecord,
    InvalidQuery,
    NotFound,
    ProviderError,
    SpecError,
    StoreError,
    TetherError,
    ToolArgumentsError,
    ToolError,
    describe_exception,
)
from tether.core.hashing import canonical_json, content_hash
from tether.core.ids import new_span_id, new_trace_id
from tether.core.outcome import Outcome
from tether.core.settings import Settings
from tether.core.text import scrub_surrogates

__all__ = [
    "DEFAULT_PROJECT",
    "AgentRef",
    "Caller",
    "Conflict",
    "CorruptRecord",
    "EntryPoint",
    "InvalidQuery",
    "NotFound",
    "Outcome",
    "ProviderError",
    "RunKind",
    "Settings",
    "SpecError",
    "StoreError",
    "TetherError",
    "ToolArgumentsError",
    "ToolError",
    "canonical_json",
    "content_hash",
    "describe_exception",
    "monotonic",
    "new_span_id",
    "new_trace_id",
    "now_ns",
    "scrub_surrogates",
]
