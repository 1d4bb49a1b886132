"""Reading ``gen_ai.input.messages`` / ``gen_ai.output.messages`` from stored spans.

Spans keep them as lists of OTel GenAI messages inside their attributes. Stores written by an
older Tether hold them as JSON text of such a list (escaped a second time in the attributes'
JSON); both shapes are read here, so that a reader of stored spans works on either. Where a
string is required (an OTLP attribute value), :func:`messages_json` gives one.
"""

from __future__ import annotations

import json
from typing import Any

from tether.core.jsontext import compact_json_encoder

_compact = compact_json_encoder(ensure_ascii=False)


def stored_messages(value: Any) -> list[dict[str, Any]] | None:
    """The messages of a span attribute as a list of dicts, from either stored shape (a list,
    or JSON text of one); None when the attribute is absent or holds something else (a damaged
    or foreign value is not a reason to fail reading the rest of a trace)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return value
    return None


def messages_json(value: Any) -> str:
    """The attribute as JSON text (for exporters whose attribute values must be strings):
    text already (an older store's) as it is, anything else serialized compactly."""
    return value if isinstance(value, str) else _compact(value)
