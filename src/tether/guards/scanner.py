"""One pass of one regular expression over a text for many recognizers at once.

A :class:`Recognizer` describes a value (a card number, a GitHub token) by what may stand just
before it, what leads to it (``Bearer ``), the value itself and what may follow it, plus a
check that accepts, corrects or rejects a match (a Luhn digit, an IBAN's length, a token's
entropy). A :class:`PatternScanner` joins all its recognizers into one alternation, so a text
is read once whatever the number of recognizers; at a given position the first recognizer in
order that matches and passes its check wins (the specific before the generic: a GitHub token
before a high-entropy string). When a check rejects a match, the recognizers after it are
tried at the same position before the scan moves on.

The engine is RE2 (``google-re2``), whose matching time is linear in the text whatever the
pattern: no input can make a guard backtrack for minutes (see :mod:`tether.guards.engines`).
RE2 has no look-around, so the characters around a value are matched (``before`` and
``after``) rather than looked at, and a scan resumes on the last character of a finding so
that it can stand before the next one. Where ``google-re2`` cannot be installed (a platform
without its wheels), the same patterns run on Python's ``re``, some 20-50x slower and still
linear: no repeat in them holds an unbounded repeat, and the scan never retries inside a long
rejected match (``tests/test_guards_bad_input.py`` feeds every recognizer adversarial strings
of 100 KB).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from tether.core.text import scrub_surrogates
from tether.guards.engines import DEFAULT_ENGINE, Alternation, Engine
from tether.guards.findings import Detection, Finding, detection

Check = Callable[[str, Finding], Finding | None]
"""``check(text, finding)``: the finding as it stands (kind, span, score corrected), or
``None`` to reject it."""

CONTEXT_WINDOW = 48
"""Characters before a finding searched for its recognizer's context words."""
AGAINST_PENALTY = 0.3
"""What a word of a recognizer's ``against`` takes off a finding's score."""
NON_ASCII = "{U}"
"""Stands, inside a character class of a pattern, for every character past ASCII (RE2 and
``re`` spell that range differently)."""
_LONG_REPEAT = re.compile(r"\{([0-9]+),(?:[2-9][0-9]{2}|[0-9]{4,})\}")
"""``{m,n}`` with n of 200 or more, which RE2 gets as ``{m,}``: it copies a bounded repeat
once per count (slow to compile, and over 1000 refused), and needs no bound to stay linear.
Shorter bounds stay: they keep a rejected match short, so that the scan, which resumes just
after the start of a rejected match, does not read a long run again and again."""


@dataclass(frozen=True, slots=True)
class Recognizer:
    """One kind of value and how to find it. Patterns use the syntax RE2 and Python's ``re``
    share: no look-around, back-references, possessive repeats or capturing groups, repeats
    of at most 1000, classes written out in ASCII (``[A-Za-z0-9_]``, not ``\\w``) with
    ``{U}`` for non-ASCII characters."""

    kind: str
    """The kind its findings have (a check may change it, as SSN to ITIN)."""
    value: str
    """The value itself: what a finding spans."""
    score: float
    """Confidence of a finding that passed the check, before context."""
    before: str | None = None
    """A class the character before the match must belong to (the start of the text also
    does), as ``[^A-Za-z0-9]``; ``None``: any character."""
    lead: str = ""
    """What must come between that character and the value, not part of the finding
    (``(?i:bearer)[ \\t]{1,8}``)."""
    after: str | None = None
    """Alternatives for what must follow the value (the end of the text also does, unless
    ``at_end`` is false), as ``[^0-9]``; ``None``: anything."""
    at_end: bool = True
    """Whether the end of the text may stand for ``after``: not where ``after`` is what
    ends a value that may itself hold it (the ``@`` after a URL's password)."""
    check: Check | None = None
    """Accepts, corrects or rejects a match; ``None`` accepts every match."""
    context: tuple[str, ...] = ()
    """Lower-case words that, found just before a finding, raise its score (``ssn``)."""
    context_boost: float = 0.35
    """How much a context word adds to the score (at most 1 in all)."""
    against: tuple[str, ...] = ()
    """Lower-case words that, found just before a finding, lower its score by 0.3 (an IP
    address after "version" is more likely a version number)."""

    def pattern(self, engine: Engine, *, capture: bool = True) -> str:
        """The recognizer as one expression whose group 1 is the value (with ``capture``;
        else it has no group)."""
        before = "(?s:.)" if self.before is None else self.before
        after = "" if self.after is None else f"(?:{'$|' if self.at_end else ''}{self.after})"
        group = "(" if capture else "(?:"
        source = f"(?:^|{before}){self.lead}{group}{self.value}){after}"
        if engine == "re":
            return source.replace(NON_ASCII, "\x80-\U0010ffff")
        source = _LONG_REPEAT.sub(lambda m: f"{{{m.group(1)},}}", source)
        return source.replace(NON_ASCII, r"\x{80}-\x{10FFFF}")


_WARM_TEXT = (
    "Hello, thanks for the order #4521 of 2024-03-07 (3 items, $129.99). Reply to "
    "support@example.com or call +1 (555) 010-9999; ref 4111-2222-3333, v1.2.3, 10.0.0.1.\n"
    "Der Kunde schrieb: „Bitte bis 12:30 Uhr liefern“ — merci ! 谢谢。 api_key: none"
)


class PatternScanner:
    """All of its recognizers, in order, in one pass over a text."""

    def __init__(self, recognizers: Sequence[Recognizer], engine: Engine | None = None) -> None:
        if not recognizers:
            raise ValueError("a scanner needs at least one recognizer")
        self.engine: Engine = engine or DEFAULT_ENGINE
        self.recognizers = tuple(recognizers)
        sources = [r.pattern(self.engine) for r in self.recognizers]
        plain = [r.pattern(self.engine, capture=False) for r in self.recognizers]
        self._alternation = Alternation(sources, plain, self.engine)
        for r, groups in zip(self.recognizers, self._alternation.groups, strict=True):
            if groups != 1:
                raise ValueError(f"the pattern of {r.kind} must have no groups of its own")
        if self._alternation.first(b"" if self.engine == "re2" else "", 0) is not None:
            raise ValueError("a pattern matches an empty text")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds its recognizers report (a check may report others)."""
        return tuple(dict.fromkeys(r.kind for r in self.recognizers))

    def scan(self, text: str) -> list[Finding]:
        """The findings in ``text``, in order, not overlapping."""
        text = scrub_surrogates(text)  # RE2 reads UTF-8; offsets stay the same
        data: str | bytes = text
        offsets = None
        if self.engine == "re2":
            data = encoded = text.encode("utf-8")
            if len(encoded) != len(text):
                offsets = _Offsets(text, encoded)
        findings: list[Finding] = []
        first, value = self._alternation.first, self._alternation.value
        pos = 0
        end = len(data)
        while pos < end and (hit := first(data, pos)) is not None:
            at, candidates = hit
            found = None
            for i in candidates:  # in order; after a rejection, the next one at the same place
                span = value(i, data, at)
                if span is not None:
                    found = self._accept(i, text, span[0], span[1], offsets)
                    if found is not None:
                        break
            if found is None:
                pos = at + _char_width(data, at)
            else:
                findings.append(found)
                # Resume on the finding's last character: it is what stands before the next.
                last = found.end - 1 if offsets is None else offsets.to_byte(found.end - 1)
                pos = max(last, at + _char_width(data, at))
        return findings

    def warm(self) -> None:
        """Run once on a sample text: RE2 builds its automaton as it reads, and the first
        texts would pay for it."""
        self.scan(_WARM_TEXT)

    def _accept(
        self, i: int, text: str, start: int, end: int, offsets: _Offsets | None
    ) -> Finding | None:
        r = self.recognizers[i]
        if offsets is not None:
            start, end = offsets.to_char(start), offsets.to_char(end)
        if end <= start:
            return None
        found = Finding(r.kind, start, end, r.score)
        if r.check is not None:
            checked = r.check(text, found)
            if checked is None:
                return None
            found = checked
        if r.context or r.against:
            window = text[max(0, found.start - CONTEXT_WINDOW) : found.start].lower()
            score = found.score
            if any(word in window for word in r.context):
                score = min(1.0, score + r.context_boost)
            if any(word in window for word in r.against):
                score = max(0.0, score - AGAINST_PENALTY)
            if score != found.score:
                found = Finding(found.kind, found.start, found.end, score)
        return found


class PatternDetector:
    """A detector made of recognizers in one :class:`PatternScanner` (the ``pii`` and
    ``secrets`` guards): subclasses name it and give its recognizers and kinds."""

    name = ""
    """The guard's name."""
    what = ""
    """What its findings are, for messages ("PII", "secret")."""
    all_kinds: tuple[str, ...] = ()
    """Every kind its recognizers report."""
    recognizers: tuple[Recognizer, ...] = ()
    """The built-in recognizers, in priority order."""

    def __init__(
        self,
        kinds: Collection[str] | None = None,
        extra: Sequence[Recognizer] = (),
        engine: Engine | None = None,
    ) -> None:
        """``kinds``: report only these (default: all); ``extra``: more recognizers, tried
        before the built-in ones (a team's employee or customer ids); ``engine``: ``re2``
        (the default) or ``re`` (see :mod:`tether.guards.engines`)."""
        unknown = set(kinds or ()) - set(self.all_kinds) - {r.kind for r in extra}
        if unknown:
            raise ValueError(f"unknown {self.what} kind(s): {', '.join(sorted(unknown))}")
        self.kinds = frozenset(kinds) if kinds else None
        self._scanner = PatternScanner((*extra, *self.recognizers), engine)

    def scan(self, text: str) -> list[Finding]:
        """What it finds in ``text``, in order, not overlapping. Invisible characters inside a
        value do not hide it, nor do fullwidth digits and letters or no-break spaces (see
        :func:`fold_for_scan`): the spans are those of ``text``, so masking takes them too."""
        folded, kept = fold_for_scan(text)
        found = self._scanner.scan(folded)
        if kept is not None:
            found = [Finding(f.kind, kept[f.start], kept[f.end - 1] + 1, f.score) for f in found]
        if self.kinds is not None:
            found = [f for f in found if f.kind in self.kinds]
        return found

    def detect(self, text: str) -> Detection:
        return detection(self.name, self.scan(text))

    def warm(self) -> None:
        """Compile and warm the patterns now rather than on the first text."""
        self._scanner.warm()


_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
    r"|\\u(?:00[aA][dD]|180[eE]|200[b-fB-F]|202[a-eA-E]|206[0-46-9]|[fF][eE][fF][fF])"
)
"""Soft hyphen, zero-width characters and joiners, bidirectional controls, BOM: a reader sees
nothing of them, so a value written with them inside (``4111\u200b1111...``, what an injected
instruction may tell a model to write) is the value. Also written as escapes (``\\u200b``):
how JSON written ASCII-only carries them, and how a guard's evidence quotes them."""
_FOLD = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {
    c: 0x20 for c in (0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)
}
"""Fullwidth ASCII to ASCII and Unicode spaces to a space: one character for one, so offsets
stay."""
_FOLDABLE = re.compile("[\uff01-\uff5e\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")


def fold_for_scan(text: str) -> tuple[str, list[int] | None]:
    """``text`` as the recognizers read it: fullwidth forms and Unicode spaces made ASCII,
    invisible characters (and their ``\\uXXXX`` escapes) taken out; and, when some were
    taken out, the index in ``text`` of each character kept (``None``: the offsets are the
    same)."""
    if text.isascii():
        if "\\u" not in text:
            return text, None
        folded = text
    else:  # str.translate reads every character in Python: only where one needs folding
        folded = text.translate(_FOLD) if _FOLDABLE.search(text) else text
    if _INVISIBLE.search(folded) is None:
        return folded, None
    kept: list[int] = []
    pieces: list[str] = []
    at = 0
    for m in _INVISIBLE.finditer(folded):
        kept.extend(range(at, m.start()))
        pieces.append(folded[at : m.start()])
        at = m.end()
    kept.extend(range(at, len(folded)))
    pieces.append(folded[at:])
    return "".join(pieces), kept


def _char_width(data: str | bytes, at: int) -> int:
    """Bytes of the UTF-8 character starting at ``at`` (1 for a str)."""
    if isinstance(data, str) or at >= len(data):
        return 1
    lead = data[at]
    return 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


class _Offsets:
    """Converts between byte offsets in the UTF-8 form of a text and character offsets in it,
    from the last conversion: the scan asks in (nearly) increasing order, so the work is
    linear in the text."""

    def __init__(self, text: str, data: bytes) -> None:
        self._text = text
        self._data = data
        self._byte = 0
        self._char = 0

    def to_char(self, byte: int) -> int:
        if byte >= self._byte:
            self._char += len(self._data[self._byte : byte].decode("utf-8"))
        else:
            self._char -= len(self._data[byte : self._byte].decode("utf-8"))
        self._byte = byte
        return self._char

    def to_byte(self, char: int) -> int:
        if char >= self._char:
            self._byte += len(self._text[self._char : char].encode("utf-8"))
        else:
            self._byte -= len(self._text[char : self._char].encode("utf-8"))
        self._char = char
        return self._byte
