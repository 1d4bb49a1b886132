"""Text hygiene at the boundaries where outside text enters a run."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub_surrogates(text: str) -> str:
    """``text`` with lone surrogates (which ``json.loads`` can produce from ``"\\udc00"``, and
    which UTF-8 cannot encode) replaced by U+FFFD; unchanged, and cheap, in the usual case."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
