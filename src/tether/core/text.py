"""Text hygiene at the boundaries where outside text enters a run."""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub_surrogates(text: str) -> str:
    """``text`` with lone surrogates (which ``json.loads`` can produce from ``"\\udc00"``, and
    which UTF-8 cannot encode) replaced by U+FFFD; unchanged, and cheap, in the usual case."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


_CLIPPED = re.compile(r"… \[clipped: ([0-9,]+) characters in all\]\Z")


def clip_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` characters and
    a marker with the full size (``… [clipped: 52,428,800 characters in all]``). Text clipped
    before (a stored output clipped again for the terminal) keeps the size it first had."""
    if len(text) <= limit:
        return text
    total = len(text)
    earlier = _CLIPPED.search(text, max(len(text) - 64, 0))
    if earlier:
        total = int(earlier.group(1).replace(",", ""))
    return f"{text[:limit]}… [clipped: {total:,} characters in all]"


def one_line(text: str) -> str:
    """``text`` (free text from outside: a key's name, a user agent) as it can be shown on one
    line: stripped, each control character (a newline included) as U+FFFD."""
    text = text.strip()
    if text.isprintable():
        return text
    return "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in text)


def clip_between_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a space, tab or line break (nothing
    when it has none there): a quote cut inside a value (half a key) would no longer look
    like what a masking guard masks, and the trace would keep that half."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
    return text[:space] if space > 0 else ""
