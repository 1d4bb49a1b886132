"""What a reader of runs asks for (``RunQuery``) and where a page ends (its cursor)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tether.core import EntryPoint, InvalidQuery, Outcome, RunKind

MAX_PAGE = 10_000
"""Most runs one page holds."""
MAX_VALUES = 100
"""Most values one filter takes (each is a parameter of the query: databases cap them)."""
MAX_CURSOR_CHARS = 200
MAX_LATENCY_MS = 9e12
"""The longest latency a filter may ask for (292 years: in nanoseconds, what the store's
64-bit columns hold)."""
"""Longer text is no cursor this store made (and is not decoded)."""

RunStatus = Literal["running", "completed", "paused", "failed"]

ERROR_EVENTS = {
    "tool_error": "tether.tool.error",
    "model_error": "tether.model.error",
    "limit": "tether.run.limit",
    "run_error": "tether.run.error",
    "fallback": "tether.model.fallback",
}
"""Error categories and the event that puts a run in each (``tether.trace.semconv`` names)."""
BLOCKED = "blocked"
"""The category of a run in which a control decision blocked a step."""
DECISION_EVENT = "tether.control.decision"
BLOCK_MARK = '"tether.decision":"block"'
"""How a blocking decision reads in an event's stored (compact JSON) attributes."""
ErrorCategory = Literal["tool_error", "model_error", "limit", "run_error", "fallback", "blocked"]
ERROR_CATEGORIES: tuple[str, ...] = (*ERROR_EVENTS, BLOCKED)
MAX_TEXT = 200
"""Longest free-text search."""


_FILTERS = (
    "status",
    "outcome",
    "agent",
    "version",
    "model",
    "project",
    "kind",
    "entry_point",
    "error_category",
    "tag",
)
"""The fields that filter on a value of a run (one value, or several to match any of)."""


class RunQuery(BaseModel):
    """Which runs to read, newest first: every filter given must hold (a filter with several
    values holds for any of them), and a page starts after ``cursor``.

    New filters (a least cost or latency, free text) are new fields: a query that does not set
    them reads what it read before."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: tuple[RunStatus, ...] = ()
    """Runs in one of these statuses (``running``, ``completed``, ``paused``, ``failed``)."""
    outcome: tuple[Outcome, ...] = ()
    """Runs that ended with one of these outcomes."""
    agent: tuple[str, ...] = ()
    """Runs of one of these agents (by name)."""
    version: tuple[str, ...] = ()
    """Runs of an agent version starting with one of these (a version is a content hash:
    its first characters name it, as ``traces show`` prints them)."""
    model: tuple[str, ...] = ()
    """Runs that requested one of these models (``gen_ai.request.model``, fallbacks too)."""
    project: tuple[str, ...] = ()
    """Runs of one of these projects."""
    kind: tuple[RunKind, ...] = ()
    """Runs of one of these kinds (``agent_run``, ``model_request``, ``tool_call``)."""
    entry_point: tuple[EntryPoint, ...] = ()
    """Runs that came in through one of these entry points."""
    since: datetime | None = None
    """Runs started at this time or later (a time without a zone is UTC)."""
    until: datetime | None = None
    """Runs started before this time (a time without a zone is UTC)."""
    limit: int = Field(default=20, ge=1, le=MAX_PAGE)
    """Most runs in the page."""
    cursor: str | None = None
    """Where the page starts: ``next_cursor`` of the page before it (None: the newest run)."""
    min_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Runs that cost at least this much (US dollars; runs of unknown cost never match)."""
    min_latency_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    """Runs that ended and took at least this long."""
    error_category: tuple[ErrorCategory, ...] = ()
    """Runs with an error of one of these categories (``tool_error``, ``model_error``,
    ``limit``, ``run_error``, ``fallback``, ``blocked``)."""
    tag: tuple[str, ...] = ()
    """``key=value``: runs whose attributes have that key with that (string) value."""
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    """Runs whose input or output holds this text (case-insensitive for ASCII letters)."""

    @field_validator("tag")
    @classmethod
    def _key_value(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if "=" not in value or not value.split("=", 1)[0]:
                raise ValueError(f"a tag filter is key=value, got {value!r}")
        return values

    @field_validator(*_FILTERS, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """One value where a tuple of them is expected (``status="failed"``): a tuple of one."""
        values = (value,) if isinstance(value, str) else value
        if isinstance(values, list | tuple | set | frozenset) and len(values) > MAX_VALUES:
            raise ValueError(f"at most {MAX_VALUES} values, not {len(values)}")
        return values

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def since_ns(self) -> int | None:
        return None if self.since is None else _ns(self.since)

    @property
    def until_ns(self) -> int | None:
        return None if self.until is None else _ns(self.until)


_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1
"""What the store's time columns hold (64-bit): a moment beyond them (year 1 or 9999) is read
as their end, which every stored time is on the right side of."""


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (a float would lose the microseconds)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return min(max(ns, _NS_MIN), _NS_MAX)


_CURSOR_VERSION = 1


def encode_cursor(started_ns: int, run_id: str) -> str:
    """The cursor of the page after the run with this key: opaque text, safe in a URL."""
    raw = json.dumps([_CURSOR_VERSION, started_ns, run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The key ``(started_ns, run_id)`` a cursor holds; ``InvalidQuery`` for text that is not
    a cursor ``encode_cursor`` made."""
    problem = InvalidQuery(
        f"{_shown(cursor)} is not a page cursor of this store",
        hint="pass the next_cursor of a page unchanged, or leave it out for the first page",
    )
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise problem
    try:
        # validate: a character outside the alphabet is an error, not skipped.
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        version, started_ns, run_id = json.loads(raw.decode())
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise problem from None
    if (
        version != _CURSOR_VERSION
        or type(started_ns) is not int
        or not _NS_MIN <= started_ns <= _NS_MAX
        or not isinstance(run_id, str)
        or not 0 < len(run_id) <= 64
        # A run id is ASCII (hex): a NUL (which PostgreSQL refuses, so the forged cursor read
        # as the store being down) or a lone surrogate (a crash) is no cursor of ours.
        or not (run_id.isascii() and run_id.isprintable())
    ):
        raise problem
    return started_ns, run_id


def _shown(text: str) -> str:
    """A cursor in a message: quoted, and cut short (the user may have pasted anything)."""
    return repr(text if len(text) <= 40 else text[:40] + "…")
