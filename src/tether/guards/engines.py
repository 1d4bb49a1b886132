"""The regular-expression engines under :class:`~tether.guards.scanner.PatternScanner`: one
alternation of patterns, each with one capturing group (its value), searched from a position.

RE2 (``google-re2``) matches in time linear in the text whatever the pattern. Asked for the
groups of a large alternation it falls back from its DFA to a slow NFA, so it is asked in
three steps: where the leftmost match starts (the DFA on the alternation without groups),
which patterns match there (an anchored ``RE2::Set``), and the value of one of them (that
pattern alone, anchored). The search reads UTF-8 bytes; offsets are bytes.

Python's ``re`` is the fallback where ``google-re2`` has no wheel: one search with groups
tells the leftmost match and its pattern. It reads str; offsets are characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

try:
    import re2 as _re2
except ImportError:  # pragma: no cover - exercised by forcing engine="re" in the tests
    _re2 = None

Engine = Literal["re2", "re"]
DEFAULT_ENGINE: Engine = "re2" if _re2 is not None else "re"
"""RE2 when ``google-re2`` is installed (it is a dependency), else Python's ``re``."""
RE2_MAX_MEM = 256 << 20
"""RE2's memory budget for a compiled pattern and its DFA cache (default 8 MiB, which a large
alternation outgrows)."""


def compile_pattern(source: str, engine: Engine) -> Any:
    """``source`` compiled by ``engine``: RE2 (over UTF-8 bytes) or ``re`` (over str). Raises
    ``ValueError`` with the engine's message for a pattern it cannot compile."""
    if engine == "re2":
        if _re2 is None:
            raise ValueError("the RE2 engine needs the google-re2 package")
        try:
            return _re2.compile(source.encode("utf-8"), _re2_options())
        except _re2.error as exc:
            raise ValueError(_message(exc)) from None
    try:
        return re.compile(source)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def _re2_options() -> Any:
    assert _re2 is not None
    options = _re2.Options()
    options.log_errors = False  # errors are raised, not also printed on stderr
    options.max_mem = RE2_MAX_MEM
    return options


def _message(exc: BaseException) -> str:
    message = exc.args[0] if exc.args else exc
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


class Alternation:
    """Patterns, each with exactly one capturing group, tried as one alternation."""

    def __init__(self, sources: Sequence[str], plain: Sequence[str], engine: Engine) -> None:
        """``sources``: the patterns; ``plain``: the same without their capturing group."""
        self.engine = engine
        self.size = len(sources)
        if engine == "re2":
            self._init_re2(sources, plain)
        else:
            self._combined = compile_pattern("|".join(sources), "re")
            self._singles = [compile_pattern(s, "re") for s in sources]
            self.groups = [int(s.groups) for s in self._singles]

    def _init_re2(self, sources: Sequence[str], plain: Sequence[str]) -> None:
        assert _re2 is not None
        singles = [compile_pattern(s, "re2") for s in sources]
        self.groups = [int(s.groups) for s in singles]
        """Capturing groups of each pattern (the scanner requires 1)."""
        # The extension's Match returns the spans; the wrapper's would build an object per
        # call, which costs as much as the match.
        self._single_match = [s._regexp.Match for s in singles]
        self._search = compile_pattern("|".join(plain), "re2")._regexp.Match
        starts = _re2.Set.MatchSet(_re2_options())
        for source in plain:
            starts.Add(source.encode("utf-8"))
        starts.Compile()
        self._starts = starts._set.Match
        anchor = _re2._re2.RE2.Anchor
        self._unanchored, self._anchored = anchor.UNANCHORED, anchor.ANCHOR_START

    def first(self, data: str | bytes, pos: int) -> tuple[int, Sequence[int]] | None:
        """Where the leftmost match at or after ``pos`` starts, and the patterns that may match
        there, in order (the one that does first; others only may: see :meth:`value`)."""
        if self.engine == "re2":
            spans = self._search(self._unanchored, data, pos, len(data))
            at = spans[0][0]
            if at < 0:
                return None
            # The set sees the text from ``at`` on, where ``^`` matches too: a superset.
            return at, sorted(self._starts(memoryview(data)[at:]))  # type: ignore[arg-type]
        m = self._combined.search(data, pos)
        if m is None:
            return None
        return m.start(), range(m.lastindex - 1, self.size)

    def value(self, i: int, data: str | bytes, at: int) -> tuple[int, int] | None:
        """The span of pattern ``i``'s value if it matches at ``at``."""
        if self.engine == "re2":
            spans = self._single_match[i](self._anchored, data, at, len(data))
            return None if spans[0][0] < 0 else spans[1]
        m = self._singles[i].match(data, at)
        return None if m is None else m.span(1)
