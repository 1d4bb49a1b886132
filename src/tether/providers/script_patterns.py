"""The ``when`` patterns of script rules: compiled with the ``regex`` engine, refused when
their nesting makes them take exponential time, and matched with a time limit, off the event
loop, so no input can stall a run (or every other run in the process)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tether.core import ProviderError
from tether.core.patterns import compile_checked

if TYPE_CHECKING:
    import regex

MATCH_TIMEOUT_S = 1.0
"""Longest a rule's pattern may search one input."""


def compile_when(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern (case-insensitive); ``ValueError`` saying what is wrong with it."""
    return compile_checked(pattern, what="'when'")


def _excerpt(pattern: str) -> str:
    return pattern if len(pattern) <= 60 else pattern[:57] + "..."


async def search(
    patterns: list[regex.Pattern[str]], text: str, *, timeout_s: float = MATCH_TIMEOUT_S
) -> tuple[int, regex.Match[str]] | None:
    """The index of the first pattern found in ``text`` and its match, or ``None``. Runs in
    a worker thread (``regex`` lets go of the GIL while it matches), each pattern limited
    to ``timeout_s``: a pattern that takes longer is a non-retryable ``ProviderError``."""
    if not patterns:
        return None
    return await asyncio.to_thread(_search_all, patterns, text, timeout_s)


def _search_all(
    patterns: list[regex.Pattern[str]], text: str, timeout_s: float
) -> tuple[int, regex.Match[str]] | None:
    for i, pattern in enumerate(patterns):
        try:
            match = pattern.search(text, timeout=timeout_s)
        except TimeoutError:
            raise ProviderError(
                f"scripted model: the 'when' pattern of rules[{i}] ({_excerpt(pattern.pattern)})"
                f" took more than {timeout_s:g}s on this input, so the run stops here",
                hint="simplify the pattern: nested or overlapping repetitions such as (a|aa)+ "
                "backtrack exponentially on inputs that almost match",
            ) from None
        if match:
            return i, match
    return None
