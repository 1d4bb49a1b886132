"""The deny-list guard: words, phrases and regular expressions a text must not contain."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Unpack

from tether.controls.guard_base import Action, Channel, GuardControl, GuardOptions, GuardResult
from tether.controls.pipeline import HookContext
from tether.core.patterns import compile_checked

if TYPE_CHECKING:
    import regex

MATCH_TIMEOUT_S = 1.0
"""Longest one pattern may search one text; longer is a failure of the guard (fail closed)."""
OFF_LOOP_CHARS = 20_000
"""Longer texts are searched in a worker thread (``regex`` lets go of the GIL meanwhile)."""
MAX_MATCHES = 1_000
"""Matches reported (and masked) per pattern and text at most; past it, the rest is masked
whole rather than scanned further."""


_WORD = re.compile(r"\w+")
_PHRASE = re.compile(r"\w+(?:\s+\w+)*")
_SPACE = re.compile(r"\s+")


class TermMatcher:
    """Finds any of ``terms`` as whole words, ignoring case unless ``case_sensitive``, in one
    pass over a text's words, however many terms there are: a term made of words
    (``acme corp``) matches those words separated by any whitespace; a term with other
    characters (``C++``, ``.env``) is searched as a pattern, not inside a longer word. The
    longest term found at a place wins."""

    def __init__(self, terms: Sequence[str], *, case_sensitive: bool = False) -> None:
        self._fold: Callable[[str], str] = (lambda s: s) if case_sensitive else str.casefold
        self.phrases: dict[tuple[str, ...], str] = {}
        others: list[str] = []
        for term in terms:
            stripped = _as_read(term.strip())  # read as the texts are (see ``find_all``)
            if _PHRASE.fullmatch(stripped):
                key = tuple(self._fold(w) for w in _SPACE.split(stripped))
                self.phrases.setdefault(key, term)
            else:
                others.append(stripped)
        self._lengths = sorted({len(k) for k in self.phrases}, reverse=True)
        self._firsts = {k[0] for k in self.phrases}
        self._other: regex.Pattern[str] | None = None
        if others:
            import regex

            alternatives = "|".join(
                regex.escape(t) for t in sorted(set(others), key=len, reverse=True)
            )
            self._other = regex.compile(
                rf"(?<!\w)(?:{alternatives})(?!\w)", 0 if case_sensitive else regex.IGNORECASE
            )

    def find(self, text: str) -> list[tuple[int, int]]:
        """Spans of the terms found, in text order (at most ``MAX_MATCHES`` of each kind)."""
        found: list[tuple[int, int]] = []
        if self.phrases:
            found.extend(self._phrases(text))
        if self._other is not None:
            for n, match in enumerate(self._other.finditer(text, timeout=MATCH_TIMEOUT_S)):
                found.append((match.start(), match.end()))
                if n >= MAX_MATCHES:
                    break
        return found

    def _phrases(self, text: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        longest = self._lengths[0]
        window: deque[tuple[int, int, str]] = deque()  # the next words, at most ``longest``
        words = _WORD.finditer(text)
        ahead = True

        def fill() -> None:
            nonlocal ahead
            while ahead and len(window) < longest:
                match = next(words, None)
                if match is None:
                    ahead = False
                    return
                window.append((match.start(), match.end(), self._fold(match.group())))

        fill()
        while window:
            if window[0][2] in self._firsts:
                hit = self._match_at(text, window)
                if hit:
                    found.append((window[0][0], window[hit - 1][1]))
                    if len(found) > MAX_MATCHES:
                        found.append((window[hit - 1][1], len(text)))  # the rest, whole
                        return found
                    for _ in range(hit):
                        window.popleft()
                    fill()
                    continue
            window.popleft()
            fill()
        return found

    def _match_at(self, text: str, window: deque[tuple[int, int, str]]) -> int:
        """How many words of ``window`` form a term (0: none), the longest first."""
        for n in self._lengths:
            if n > len(window):
                continue
            words = [window[i] for i in range(n)]
            if tuple(w[2] for w in words) not in self.phrases:
                continue
            if all(text[a[1] : b[0]].isspace() for a, b in pairwise(words)):
                return n
        return 0


def find_all(
    patterns: Sequence[tuple[str, regex.Pattern[str] | TermMatcher]], text: str
) -> list[tuple[str, int, int]]:
    """``(which, start, end)`` of every match of every pattern (or terms), in text order; a
    pattern that searches longer than ``MATCH_TIMEOUT_S`` raises ``TimeoutError`` naming it.

    The text is read as a person sees it: invisible characters taken out and fullwidth forms
    made ASCII (``Rival\u200bShop`` is ``RivalShop``); for terms, which are read the same way,
    the lookalike letters of mixed-script words too (``R\u0456valShop``, with a Cyrillic i).
    The spans are the text's."""
    from tether.guards.scanner import fold_for_scan

    original = text
    text, kept = fold_for_scan(text)
    as_read: str | None = None
    found: list[tuple[str, int, int]] = []
    for which, pattern in patterns:
        try:
            if isinstance(pattern, TermMatcher):
                as_read = _unconfused(text) if as_read is None else as_read
                found.extend((which, start, end) for start, end in pattern.find(as_read))
                continue
            for n, match in enumerate(pattern.finditer(text, timeout=MATCH_TIMEOUT_S)):
                if match.end() > match.start():
                    found.append((which, match.start(), match.end()))
                if n >= MAX_MATCHES:
                    found.append((which, match.end(), len(text)))
                    break
        except TimeoutError:
            raise TimeoutError(
                f"{which} took more than {MATCH_TIMEOUT_S:g}s on a text of {len(text):,} characters"
            ) from None
    if kept is not None:  # back to the spans of the text as it came
        found = [(which, *_span_back(kept, len(original), s, e)) for which, s, e in found]
    found.sort(key=lambda f: (f[1], -f[2]))
    return found


def _unconfused(text: str) -> str:
    from tether.guards.normalize import unconfuse

    return unconfuse(text)


def _as_read(term: str) -> str:
    """A term as ``find_all`` reads texts for terms (so a term in Cyrillic whose letters all
    look Latin still matches itself)."""
    from tether.guards.scanner import fold_for_scan

    return _unconfused(fold_for_scan(term)[0])


def _span_back(kept: list[int], length: int, start: int, end: int) -> tuple[int, int]:
    """The span of the original text (``length`` characters) that ``start:end`` of its folded
    form, whose characters stand at the indices ``kept``, came from."""
    first = kept[start] if start < len(kept) else length
    return first, (kept[end - 1] + 1 if end > start else first)


def masked(text: str, spans: Sequence[tuple[str, int, int]], replacement: str) -> str:
    """``text`` with each span (overlaps merged) replaced by ``replacement``."""
    out: list[str] = []
    at = 0
    for _, start, end in spans:
        if end <= at:
            continue
        out.append(text[at : max(start, at)])
        out.append(replacement)
        at = end
    out.append(text[at:])
    return "".join(out)


class DenyListGuard(GuardControl):
    """Flags texts containing any of ``terms`` (whole words) or ``patterns`` (regular
    expressions, checked as a spec's are: a repetition of a repetition is refused);
    ``mask`` replaces each match with ``replacement``. The evidence gives where each match is
    and which list it is from; it quotes the match only when the rule only logs."""

    guard = "deny_list"
    default_channels: tuple[Channel, ...] = ("output",)
    actions: tuple[Action, ...] = ("block", "mask", "escalate", "log")

    def __init__(
        self,
        *,
        terms: Sequence[str] = (),
        patterns: Sequence[str] = (),
        case_sensitive: bool = False,
        replacement: str = "[removed]",
        **options: Unpack[GuardOptions],
    ) -> None:
        super().__init__(**options)
        self.quotes_text = self.action == "log"  # its evidence quotes matches only then
        if not terms and not patterns:
            raise ValueError("a deny list needs terms or patterns")
        if any(not t.strip() for t in terms):
            raise ValueError("a deny list term is empty")
        self.replacement = replacement
        self._patterns: list[tuple[str, regex.Pattern[str] | TermMatcher]] = []
        if terms:
            self._patterns.append(("terms", TermMatcher(terms, case_sensitive=case_sensitive)))
        for i, pattern in enumerate(patterns):
            compiled = compile_checked(
                pattern, what=f"patterns[{i}]", ignore_case=not case_sensitive
            )
            self._patterns.append((f"patterns[{i}]", compiled))

    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        if len(text) > OFF_LOOP_CHARS:
            found = await asyncio.to_thread(find_all, self._patterns, text)
        else:
            found = find_all(self._patterns, text)
        if not found:
            return GuardResult(False, "no denied term or pattern found")
        which = list(dict.fromkeys(f[0] for f in found))
        # What matched is what the rule keeps out of the answer and the trace: the evidence
        # quotes it only when the rule just logs (the text goes on as it is).
        quote = self.action == "log"
        evidence: list[dict[str, Any]] = [
            {"match": which_, "start": start, "end": end}
            | ({"snippet": text[start:end]} if quote else {})
            for which_, start, end in found
        ]
        return GuardResult(
            True,
            f"denied content found ({len(found)} match{'es' if len(found) > 1 else ''}: "
            f"{', '.join(which)})",
            categories=tuple(dict.fromkeys(f"deny_list.{w.split('[')[0]}" for w in which)),
            evidence=tuple(evidence),
            masked=masked(text, found, self.replacement),
        )
