"""Values as the store writes them: text any database accepts, clipped to its column."""

from __future__ import annotations

from typing import Any

from tether.core import scrub_surrogates
from tether.core.jsontext import json_text
from tether.store import tables


def dumps_attributes(value: dict[str, Any]) -> str:
    """Attributes as the store keeps them: compact JSON, anything unserializable as ``str``,
    lone surrogates as U+FFFD, as in the text columns (see ``tether.core.jsontext``)."""
    return json_text(value)


def clean_text(value: str | None) -> str | None:
    """Text any database accepts: no NUL (PostgreSQL refuses it) and no lone surrogates (not
    encodable as UTF-8). One stray character in user input must not lose a trace."""
    if not value:
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value if value.isascii() else scrub_surrogates(value)


def column_text(value: str | None, length: int) -> str | None:
    """``clean_text(fit(value, length))`` in one call, with a fast path for the usual short
    ASCII text: the write path runs it on every text column of every record."""
    if not value:
        return value
    if len(value) > length:
        value = value[:length]
    if value.isascii():
        return value if "\x00" not in value else value.replace("\x00", "\ufffd")
    return clean_text(value)


def fit(value: str | None, length: int) -> str | None:
    """Clip to the column's length: PostgreSQL refuses longer values, and one long tool name
    from a model must not cost the whole span."""
    return value[:length] if value is not None and len(value) > length else value


def _length(column: Any) -> int:
    return int(column.type.length)


# Column lengths, read once (the write path runs per record).
RUN_AGENT, RUN_VERSION = _length(tables.runs.c.agent_name), _length(tables.runs.c.agent_version)
RUN_STATUS, RUN_OUTCOME = _length(tables.runs.c.status), _length(tables.runs.c.outcome)
RUN_PROJECT, RUN_KIND = _length(tables.runs.c.project), _length(tables.runs.c.kind)
RUN_ENTRY_POINT = _length(tables.runs.c.entry_point)
RUN_MODEL = _length(tables.run_models.c.model)
SPAN_NAME, SPAN_KIND = _length(tables.spans.c.name), _length(tables.spans.c.kind)
SPAN_STATUS = _length(tables.spans.c.status)
EVENT_NAME = _length(tables.events.c.name)
CHECKPOINT_REASON = _length(tables.checkpoints.c.reason)
AUDIT_KIND, AUDIT_TRACE = _length(tables.audit.c.kind), _length(tables.audit.c.trace_id)
AUDIT_RUN, AUDIT_SPAN = _length(tables.audit.c.run_id), _length(tables.audit.c.span_id)
