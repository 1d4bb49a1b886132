"""Long texts clipped where many are shown at once (a run's page, the API's trace document
and span list), each with a marker saying how much was left out and where the whole is: one
run with a 5 MB input made a 5-25 MB page and a 20 MB trace document (the input, its
messages, a tool's arguments and result, each whole)."""

from __future__ import annotations

from typing import Any

TEXT_CHARS = 10_000
"""The most characters of one text a run's page and the API's listings show by default."""


def _clipped(text: str, limit: int, where: str, *, read_whole: bool) -> str:
    """``text`` up to ``limit`` characters, and a marker naming what is left out (and
    ``where`` the whole is) if it is longer (unlike ``core.text.clip_text``, whose marker gives
    the size in all, for stored texts). ``read_whole`` False: the text was read only in part
    (how much is left out is not known)."""
    if not limit or len(text) <= limit:
        return text
    said = f"; whole: {where}" if where else ""
    more = f"{len(text) - limit:,} more" if read_whole else "more"
    return f"{text[:limit]}… [{more} characters{said}]"


def clip_values(
    value: Any, limit: int, where: str = "", *, read_whole: bool = True
) -> tuple[Any, int]:
    """``value`` (JSON: dicts, lists, texts) with each text clipped (``_clipped``), and how
    many were."""
    if not limit:
        return value, 0
    clipped = 0

    def clip(item: Any) -> Any:
        nonlocal clipped
        if isinstance(item, str):
            if len(item) > limit:
                clipped += 1
                return _clipped(item, limit, where, read_whole=read_whole)
            return item
        if isinstance(item, dict):
            return {k: clip(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clip(v) for v in item]
        return item

    try:
        return clip(value), clipped
    except RecursionError:  # nested past Python's stack: as it is
        return value, 0
