"""The deny-list guard: words, phrases and regular expressions a text must not contain."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from tether.controls.guard_base import Action, Channel, GuardControl, GuardResult
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


def terms_pattern(terms: Sequence[str], *, case_sensitive: bool = False) -> regex.Pattern[str]:
    """One pattern matching any of ``terms`` as whole words: not inside a longer word, but a
    term may start or end with punctuation (``C++``, ``.env``)."""
    import regex

    # Longest first, so "acme corp" wins over "acme" at the same place.
    alternatives = "|".join(regex.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return regex.compile(
        rf"(?<![\w])(?:{alternatives})(?![\w])", 0 if case_sensitive else regex.IGNORECASE
    )


def find_all(
    patterns: Sequence[tuple[str, regex.Pattern[str]]], text: str
) -> list[tuple[str, int, int]]:
    """``(which, start, end)`` of every match of every pattern, in text order; a pattern that
    searches longer than ``MATCH_TIMEOUT_S`` raises ``TimeoutError`` naming it."""
    found: list[tuple[str, int, int]] = []
    for which, pattern in patterns:
        try:
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
    found.sort(key=lambda f: (f[1], -f[2]))
    return found


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
    ``mask`` replaces each match with ``replacement``."""

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
        channels: Collection[Channel] | None = None,
        action: Action = "block",
        documents: Collection[str] = (),
        fail_open: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(
            channels=channels, action=action, documents=documents, fail_open=fail_open, name=name
        )
        if not terms and not patterns:
            raise ValueError("a deny list needs terms or patterns")
        if any(not t.strip() for t in terms):
            raise ValueError("a deny list term is empty")
        self.replacement = replacement
        self._patterns: list[tuple[str, regex.Pattern[str]]] = []
        if terms:
            self._patterns.append(("terms", terms_pattern(terms, case_sensitive=case_sensitive)))
        for i, pattern in enumerate(patterns):
            compiled = compile_checked(
                pattern, what=f"patterns[{i}]", ignore_case=not case_sensitive
            )
            self._patterns.append((f"patterns[{i}]", compiled))

    async def judge(self, text: str, channel: Channel, ctx: HookContext) -> GuardResult:
        if len(text) > OFF_LOOP_CHARS:
            found = await asyncio.to_thread(find_all, self._patterns, text)
        else:
            found = find_all(self._patterns, text)
        if not found:
            return GuardResult(False, "no denied term or pattern found")
        which = list(dict.fromkeys(f[0] for f in found))
        evidence: list[dict[str, Any]] = [
            {"match": which_, "start": start, "end": end, "snippet": text[start:end]}
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
