"""Regular expressions written by users (script rules, guard deny lists): compiled with the
``regex`` engine and refused when they cannot work — invalid, a repetition of a repetition
(exponential time on an input that almost matches), or counts that compile into more items
than a machine should hold — so that such a pattern fails when its file loads, not when a
request meets it."""

from __future__ import annotations

import re
from re import _parser  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import regex

_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")


MAX_EXPANDED_SIZE = 100_000
"""Most pattern items a pattern may stand for once its counted repetitions are written
out: the engine compiles ``a{1000000}`` into a million items (a quarter of a gigabyte), and
``(?:a{65535}){65535}`` into more than any machine has."""

_COUNT = re.compile(r"\{\s*(\d+)\s*(?:,[^}]*)?\}")


def compile_checked(
    pattern: str, *, what: str = "the pattern", ignore_case: bool = True
) -> regex.Pattern[str]:
    """The compiled pattern; ``ValueError`` saying what is wrong with it, naming it ``what``
    (``'when'``, ``patterns[2]``)."""
    # Checked before compiling: compiling a huge counted repetition is what takes the memory.
    if _expanded_size(pattern) > MAX_EXPANDED_SIZE:
        raise ValueError(
            f"{what} repeats too much: written out, its counted repetitions ({{n}}, "
            f"{{m,n}}) come to more than {MAX_EXPANDED_SIZE:,} items, which the regex "
            "engine would compile into that many; use smaller counts"
        )
    # Imported here: only a script with rules needs the engine (8 ms to import, 40+ ms where
    # no bytecode is cached), and specs without one are validated without it.
    import regex

    try:
        compiled = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        raise ValueError(f"{what} is not a valid regular expression: {exc}") from None
    if _has_nested_repeat(pattern):
        raise ValueError(
            f"{what} repeats a group that is itself a repetition: such a pattern "
            "can take exponential time on an input that almost matches; repeat the inner "
            "part once (write (a+)+ as a+, (\\w+\\s?)+ as [\\w\\s]+)"
        )
    return compiled


def _parse(pattern: str) -> Any:
    """The standard parser's tree of ``pattern``, or ``None`` when it cannot read it."""
    try:
        return _parser.parse(pattern, re.IGNORECASE)
    except Exception:
        return None


def _expanded_size(pattern: str) -> int:
    """About how many items ``pattern`` compiles to: each counted repetition counts its
    minimum (at least once) times its body. A pattern the standard parser cannot read
    (``regex``-only syntax, a count beyond its range) is judged by the product of every
    count in it, which is never less."""
    tree = _parse(pattern)
    if tree is None:
        product = 1
        for count in _COUNT.findall(pattern):
            product *= max(int(count), 1)
            if product > MAX_EXPANDED_SIZE:
                break
        return product

    def size(items: Any) -> int:
        total = 0
        for op, av in items:
            name = str(op)
            if name in _REPEATS or name == "POSSESSIVE_REPEAT":
                total += max(av[0], 1) * size(av[2])
            elif name == "SUBPATTERN":
                total += size(av[-1])
            elif name == "ATOMIC_GROUP":
                total += size(av)
            elif name == "BRANCH":
                total += sum(size(branch) for branch in av[1])
            elif name in ("ASSERT", "ASSERT_NOT"):
                total += size(av[1])
            else:
                total += 1
            if total > MAX_EXPANDED_SIZE:  # no need to multiply further
                return total
        return total

    return size(tree)


def _has_nested_repeat(pattern: str) -> bool:
    """Whether an unbounded repetition's body is, apart from parts that may match nothing,
    itself an unbounded repetition (``(a+)+``, ``(a*)*``, ``(\\w+\\s?)+``): the classic
    catastrophic-backtracking shape. ``False`` also when the standard parser cannot read the
    pattern (``regex``-only syntax; the time limit still applies)."""
    tree = _parse(pattern)
    if tree is None:
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
