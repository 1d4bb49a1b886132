"""The ``when`` patterns of script rules: compiled with the ``regex`` engine, refused when
their nesting makes them take exponential time, and matched with a time limit, off the event
loop, so no input can stall a run (or every other run in the process)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import regex

from tether.core import ProviderError

MATCH_TIMEOUT_S = 1.0
"""Longest a rule's pattern may search one input."""

_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")


def compile_when(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern (case-insensitive); ``ValueError`` saying what is wrong with it."""
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE)
    except regex.error as exc:
        raise ValueError(f"'when' is not a valid regular expression: {exc}") from None
    if _has_nested_repeat(pattern):
        raise ValueError(
            "'when' repeats a group that is itself a repetition: such a pattern "
            "can take exponential time on an input that almost matches; repeat the inner "
            "part once (write (a+)+ as a+, (\\w+\\s?)+ as [\\w\\s]+)"
        )
    return compiled


def _has_nested_repeat(pattern: str) -> bool:
    """Whether an unbounded repetition's body is, apart from parts that may match nothing,
    itself an unbounded repetition (``(a+)+``, ``(a*)*``, ``(\\w+\\s?)+``): the classic
    catastrophic-backtracking shape. ``False`` also when the standard parser cannot read the
    pattern (``regex``-only syntax; the time limit still applies)."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        tree = _parser.parse(pattern, re.IGNORECASE)
    except Exception:
        return False
    unbounded = _parser.MAXREPEAT
    found: list[str] = []

    def is_unbounded_repeat(item: Any) -> bool:
        op, av = item
        return str(op) in _REPEATS and av[1] == unbounded

    def can_be_empty(item: Any) -> bool:
        return bool(_parser.SubPattern(tree.state, [item]).getwidth()[0] == 0)

    def dominated_by_repeat(items: Any) -> bool:
        """Whether ``items`` is an unbounded repeat plus parts that may match nothing."""
        for i, item in enumerate(items):
            op, av = item
            inner = False
            if is_unbounded_repeat(item):
                inner = True
            elif str(op) == "SUBPATTERN":
                inner = dominated_by_repeat(av[-1])
            elif str(op) == "BRANCH":
                inner = any(dominated_by_repeat(branch) for branch in av[1])
            if inner and all(can_be_empty(other) for j, other in enumerate(items) if j != i):
                return True
        return False

    def walk(items: Any) -> None:
        for op, av in items:
            name = str(op)
            if name in _REPEATS:
                if av[1] == unbounded and dominated_by_repeat(av[2]):
                    found.append(name)
                walk(av[2])
            elif name == "SUBPATTERN":
                walk(av[-1])
            elif name == "BRANCH":
                for branch in av[1]:
                    walk(branch)
            elif name in ("ASSERT", "ASSERT_NOT"):
                walk(av[1])
            elif name == "ATOMIC_GROUP" or name == "POSSESSIVE_REPEAT":
                continue  # no backtracking into these

    walk(tree)
    return bool(found)


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
