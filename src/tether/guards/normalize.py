"""Normalization before detection: one clean view of a text plus the views an attacker hides.

``normalize(text)`` returns the main view (invisible characters removed, NFKC, lookalike letters
of mixed-script words mapped to Latin) and extra views for what a reader or a renderer would not
see or would see differently: hidden HTML and Markdown (comments, ``display:none`` and other
invisible styles, alt text, link titles), Unicode tag characters, and base64 / hex / URL-encoded
/ rot13 / leetspeak / letter-spaced segments, decoded. Decoded views are normalized again, to a
bounded depth and a bounded total size, so the work is linear in the input.

Every pattern here is safe by construction: no nested quantifiers, and every variable-length
run is a single character class that the next token cannot also match, or is bounded.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from tether.guards.confusables import CONFUSABLES
from tether.guards.injection_rules import MAX_SPACES

MAX_DEPTH = 4
"""How many levels of encoding are decoded (base64 of base64 of ...: 2 let a third level hide
a payload). The views of all levels share the decoded views' budget (``_Budget``), and each
level is three quarters of the one before at most, so the work stays linear."""
MAX_DECODED_CHARS = 65_536
"""Total characters of all extra views of a short text (a longer one may have twice its own
length); past it, further segments are dropped."""
MAX_SEGMENTS = 64
"""Most views of hidden segments of one text, and most views of decoded ones: past that, the
further segments of the kind share one more view (see ``_Budget``)."""
HIDDEN_SPAN = 10_000
"""Most characters after an invisibly styled tag taken as its hidden content."""
MIN_ENCODED = 16
"""Shortest base64/hex run worth decoding."""

# Zero-width, joiners, word joiner, invisible operators, BOM, Mongolian vowel separator, soft
# hyphen, and the bidirectional controls: all removed from the main view.
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_REMOVE = {ord(c): None for c in _INVISIBLE + _BIDI}
# C0 controls other than tab, newline and carriage return (NUL included) become spaces.
_CONTROLS = {i: " " for i in range(32) if chr(i) not in "\t\n\r"} | {0x7F: " "}
_TAG_CHARS = re.compile("[\U000e0000-\U000e007f]+")
_HAS_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HAS_INVISIBLE = re.compile(f"[{_INVISIBLE}{_BIDI}]")
_MIXED_WORD = re.compile(r"[^\W\d_]{2,}")
_CONFUSABLE = re.compile("[" + "".join(chr(c) for c in CONFUSABLES) + "]")
"""Any lookalike letter: texts without one (most non-Latin and accented text) skip the
per-word mapping."""
_LATIN = re.compile("[a-zA-Z]")

_B64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
"""A run of base64 characters of either alphabet (one character class: a fast scan)."""
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_\-]{16,}={0,2}")
"""The runs of one alphabet, for a run that mixes the two."""
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){8,}")
_URLENC = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~+\-]){12,}")
_SPACED = re.compile(r"(?:\b[^\W_][ .\-_]){5,}[^\W_]\b")
_LONG_SPACE = re.compile(rf"(?<!\s)\s{{{MAX_SPACES + 1},}}")
"""A whitespace run longer than a rule's ``\\s+`` takes (matched from its first character
only: linear on any text)."""
_UNSPACE = re.compile(r"[ .\-_]")
_ROT13_HINT = re.compile(
    r"\b(?:vtaber|qvfertneq|sbetrg|vafgehpgvbaf?|flfgrz|cebzcg|nffvfgnag|cerivbhf)\b", re.I
)
_LEET_WORD = re.compile(r"\b(?=[a-z]*[0-9])(?=[0-9]*[a-z])[a-z0-9]{4,}\b", re.I)
_LEET = str.maketrans("013457", "oieast")
_LEET_PAIRS = tuple(zip("013457", "oieast", strict=True))
_HINT = re.compile(
    r"ignore|disregard|forget|instruction|system|prompt|previous|password|assistant|override",
    re.I,
)

_HTML_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]{0,15})\b([^<>]{0,2000})>")
_CLOSING_TAG = re.compile(r"</([a-zA-Z][a-zA-Z0-9]{0,15})")
_HIDDEN_STYLE = re.compile(
    r"display:none|visibility:hidden|font-size:0(?![.\d])|opacity:0(?![.\d])"
    r"|color:(?:#fff(?:fff)?\b|white\b|rgb\(255,255,255\))|height:0(?![.\d])|width:0(?![.\d])"
)
_ATTR_TEXT = re.compile(
    r"""\b(?:alt|title|aria-label|data-[a-z\-]{1,20})\s*=\s*(?:"([^"<>]{1,2000})"|'([^'<>]{1,2000})')""",
    re.I,
)
_MD_IMAGE_ALT = re.compile(r"!\[([^\[\]\n]{1,1000})\]")
"""Alt text holds no ``[``, so a try from one ``![`` never reads past the next: the work of
all tries is linear (with any character but ``]`` allowed, ``![`` repeated cost 1000 steps
a character)."""
_MD_LINK_TITLE = re.compile(r"\]\([^\s()]{0,2000} +(?:\"([^\"\n]{1,1000})\"|'([^'\n]{1,1000})')\)")
_MD_COMMENT = re.compile(r"^\[//\]: ?#? ?\(([^\n]{1,2000})\)", re.M)


@dataclass(frozen=True, slots=True)
class View:
    """One text the detector scans: the main view, or a hidden or decoded segment."""

    text: str
    """The normalized text of the view."""
    origin: str
    """``text`` for the main view; else what it came from: ``html_comment``, ``hidden_html``,
    ``attribute``, ``markdown_alt``, ``markdown_title``, ``markdown_comment``, ``tag_chars``,
    ``base64``, ``hex``, ``url``, ``rot13``, ``leetspeak``, ``spaced``."""
    start: int
    """Start of the span of the original text this view came from."""
    end: int
    """End (exclusive) of that span."""
    depth: int = 0
    """How many decodings led here (0 for the main view and hidden segments)."""


@dataclass(slots=True)
class Normalized:
    """The result of ``normalize``."""

    views: list[View]
    """The main view first, then the extra views."""
    signals: set[str] = field(default_factory=set)
    """What normalization found: ``invisible_chars``, ``tag_chars``, ``confusables``,
    ``control_chars``, ``hidden_html``, ``encoded``."""
    offsets_exact: bool = True
    """Whether offsets in the main view are offsets in the original text."""

    @property
    def text(self) -> str:
        """The main view's text."""
        return self.views[0].text


def clean(text: str, signals: set[str]) -> str:
    """``text`` with invisible and control characters removed, NFKC applied, and lookalike
    letters of mixed-script words mapped to Latin. Each step runs only after a search in C
    finds something for it to do: ASCII text without control characters costs two scans."""
    if _HAS_CONTROL.search(text):
        signals.add("control_chars")
        text = text.translate(_CONTROLS)
    if text.isascii():
        return text
    if _HAS_INVISIBLE.search(text):
        signals.add("invisible_chars")
        text = text.translate(_REMOVE)
    if max(text, default="") >= "\U000e0000":
        text = _TAG_CHARS.sub("", text)
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    mapped = unconfuse(text)
    if mapped != text:
        signals.add("confusables")
        text = mapped
    return text


def unconfuse(text: str) -> str:
    """``text`` with the lookalike letters of mixed-script words mapped to Latin
    (``R\u0456val``, with a Cyrillic i, to ``Rival``), one character for one: offsets stay."""
    if text.isascii() or not _CONFUSABLE.search(text):
        return text
    return _MIXED_WORD.sub(_unconfuse_word, text)


def _unconfuse_word(m: re.Match[str]) -> str:
    word = m.group(0)
    if word.isascii():
        return word
    mapped = word.translate(CONFUSABLES)
    # Only a word that mixes Latin with lookalikes is rewritten: plain Cyrillic or Greek stays.
    if mapped != word and (_LATIN.search(word) or mapped.isascii()):
        return mapped
    return word


def _printable_ratio(s: str) -> float:
    if not s:
        return 0.0
    good = sum(1 for c in s if c.isprintable() or c in "\n\t\r")
    return good / len(s)


def _decode_bytes(raw: bytes) -> str | None:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(1 for c in s if c.isalpha() or c == " ")
    if len(s) < 8 or _printable_ratio(s) < 0.95 or letters < 0.6 * len(s):
        return None
    return s


def _decode_b64(seg: str) -> str | None:
    if len(seg) < MIN_ENCODED or seg.isdigit() or seg.isalpha():
        return None
    core = seg.rstrip("=")
    pad = "=" * (-len(core) % 4)
    try:
        if "-" in core or "_" in core:
            raw = base64.urlsafe_b64decode(core + pad)
        else:
            raw = base64.b64decode(core + pad, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _decode_bytes(raw)


def _decode_hex(seg: str) -> str | None:
    try:
        return _decode_bytes(bytes.fromhex(seg))
    except ValueError:
        return None


def _decode_url(seg: str) -> str | None:
    if seg.count("%") < 3:
        return None
    out = urllib.parse.unquote_plus(seg)
    return out if out != seg else None


class _Budget:
    """What the extra views of one text may hold. Hidden segments: ``MAX_DECODED_CHARS``
    characters in all (they may nest and overlap, and their text is in the main view
    anyway). Decoded ones: as many characters as the text has, at least ``MAX_DECODED_CHARS``
    (the work stays linear in the input, and a long decoy cannot use the budget up before a
    payload). Each kind has ``MAX_SEGMENTS`` views; a segment past that joins its kind's
    overflow, scanned as one view: sixty-four harmless comments or base64 blobs cannot push a
    payload out of sight."""

    __slots__ = ("chars", "count", "overflow")

    def __init__(self, length: int) -> None:
        self.chars = {True: max(MAX_DECODED_CHARS, length), False: MAX_DECODED_CHARS}
        self.count = {True: MAX_SEGMENTS, False: MAX_SEGMENTS}
        self.overflow: dict[bool, list[View]] = {True: [], False: []}

    def take(self, n: int, decoded: bool) -> bool:
        """Whether ``n`` more characters of a (``decoded``) segment fit; they are counted."""
        if n > self.chars[decoded]:
            return False
        self.chars[decoded] -= n
        return True

    def place(self, view: View, decoded: bool) -> bool:
        """Whether ``view`` gets a view of its own; else it is kept for the overflow."""
        if self.count[decoded] > 0:
            self.count[decoded] -= 1
            return True
        self.overflow[decoded].append(view)
        return False

    def overflow_views(self) -> list[View]:
        """One view per kind for the segments past the count: their texts, one per line."""
        out: list[View] = []
        for views in self.overflow.values():
            if views:
                first = views[0]
                text = "\n".join(v.text for v in views)
                out.append(View(text, first.origin, first.start, views[-1].end, first.depth))
        return out


def _hidden_segments(text: str) -> list[tuple[str, str, int, int]]:
    """(origin, raw text, start, end) of hidden HTML and Markdown content in ``text``."""
    out: list[tuple[str, str, int, int]] = []
    closes: dict[str, list[int]] | None = None
    if "<!--" in text:
        pos = 0
        while True:
            i = text.find("<!--", pos)
            if i < 0:
                break
            j = text.find("-->", i + 4)
            end = len(text) if j < 0 else j
            out.append(("html_comment", text[i + 4 : end], i, end + (3 if j >= 0 else 0)))
            if j < 0:
                break
            pos = j + 3
    if "<" in text and ">" in text:
        for m in _HTML_TAG.finditer(text):
            attrs = m.group(2)
            if not attrs:
                continue
            squeezed = attrs.lower().replace(" ", "")
            if "style=" in squeezed and _HIDDEN_STYLE.search(squeezed):
                if closes is None:
                    closes = _closing_tags(text)
                # The first closing tag of the same name after this one, looked up in the
                # positions read once (a search per tag to the end of the text made
                # thousands of unclosed hidden tags quadratic).
                after = closes.get(m.group(1).lower(), [])
                i = bisect.bisect_left(after, m.end())
                limit = min(len(text), m.end() + HIDDEN_SPAN)
                end = min(after[i], limit) if i < len(after) else limit
                out.append(("hidden_html", text[m.end() : end], m.start(), end))
            for a in _ATTR_TEXT.finditer(attrs):
                value = a.group(1) or a.group(2) or ""
                if len(value) > 24:
                    out.append(("attribute", value, m.start(), m.end()))
    if "](" in text or "![" in text:
        for m in _MD_IMAGE_ALT.finditer(text):
            if len(m.group(1)) > 24:
                out.append(("markdown_alt", m.group(1), m.start(), m.end()))
        for m in _MD_LINK_TITLE.finditer(text):
            out.append(("markdown_title", m.group(1) or m.group(2) or "", m.start(), m.end()))
    if "[//]" in text:
        for m in _MD_COMMENT.finditer(text):
            out.append(("markdown_comment", m.group(1), m.start(), m.end()))
    return out


def _closing_tags(text: str) -> dict[str, list[int]]:
    """Where each closing tag (``</div``) of ``text`` starts, by lower-cased name, in order."""
    out: dict[str, list[int]] = {}
    for m in _CLOSING_TAG.finditer(text):
        out.setdefault(m.group(1).lower(), []).append(m.start())
    return out


def _encoded_segments(text: str) -> list[tuple[str, str, int, int]]:
    """(origin, decoded text, start, end) of encoded runs in ``text``."""
    out: list[tuple[str, str, int, int]] = []
    for run in _B64_RUN.finditer(text):
        seg = run.group(0)
        if ("+" in seg or "/" in seg) and ("-" in seg or "_" in seg):
            # Both alphabets: decode each single-alphabet part (rare; the slower pattern).
            parts = [(m.group(0), run.start() + m.start()) for m in _B64.finditer(seg)]
        else:
            parts = [(seg, run.start())]
        for part, at in parts:
            if len(part) < MIN_ENCODED:
                continue
            decoded = _decode_b64(part)
            if decoded is None and len(part) % 2 == 0 and _HEX.fullmatch(part):
                decoded = _decode_hex(part)
                if decoded is not None:
                    out.append(("hex", decoded, at, at + len(part)))
                    continue
            if decoded is not None:
                out.append(("base64", decoded, at, at + len(part)))
    # URL-encoding: only where three percent escapes exist at all.
    if "%" in text and len(_PCT.findall(text, 0, 1_000_000)[:3]) >= 3:
        for m in _URLENC.finditer(text):
            decoded = _decode_url(m.group(0))
            if decoded is not None:
                out.append(("url", decoded, m.start(), m.end()))
    return out


_ROT13_WORDS = (
    "vtaber",
    "qvfertneq",
    "sbetrg",
    "vafgehpgvba",
    "flfgrz",
    "cebzcg",
    "nffvfgnag",
    "cerivbhf",
)
_HINT_WORDS = (
    "ignore",
    "disregard",
    "forget",
    "instruction",
    "system",
    "prompt",
    "previous",
    "password",
    "assistant",
    "override",
)


def _reveals_hints(lowered: str, reread: str) -> bool:
    """Whether ``reread`` (a cheap whole-text re-reading of ``lowered``) holds more attack
    words than ``lowered``: the pre-check before the exact, slower re-reading."""
    return any(reread.count(w) > lowered.count(w) for w in _HINT_WORDS if w in reread)


def _whole_text_views(text: str) -> list[tuple[str, str]]:
    """Views of the whole text under a cheap re-reading (rot13, leetspeak, letter spacing),
    kept only when the re-reading shows words that attacks are made of. Each is tried only
    after a pre-check of plain substring searches on the lower-cased text finds such a word."""
    out: list[tuple[str, str]] = []
    # Words spread apart past the rules' reach: at any length (one linear search finds none).
    if _LONG_SPACE.search(text):
        out.append(("whitespace", _LONG_SPACE.sub(_one_space, text)))
    if len(text) > 200_000:
        return out
    lowered = text.lower()
    if any(w in lowered for w in _ROT13_WORDS) and _ROT13_HINT.search(text):
        out.append(("rot13", codecs.decode(text, "rot13")))
    # Leetspeak and letter spacing are re-read only where the re-read words look like attacks.
    deleet = lowered
    for digit, letter in _LEET_PAIRS:
        deleet = deleet.replace(digit, letter)
    if deleet != lowered and _reveals_hints(lowered, deleet):
        leet_words = [w.translate(_LEET) for w in _LEET_WORD.findall(text)]
        if leet_words and _HINT.search(" ".join(leet_words)):
            out.append(("leetspeak", _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text)))
    squeezed = lowered.replace(" ", "").replace(".", "").replace("-", "").replace("_", "")
    if _reveals_hints(lowered, squeezed):
        spaced = [_UNSPACE.sub("", m) for m in _SPACED.findall(text)]
        if spaced and _HINT.search(" ".join(spaced)):
            out.append(("spaced", _SPACED.sub(lambda m: _UNSPACE.sub("", m.group(0)), text)))
    return out


def _one_space(m: re.Match[str]) -> str:
    return "\n" if "\n" in m.group(0) else " "


def normalize(text: str) -> Normalized:
    """The views of ``text`` to scan (see the module docstring)."""
    signals: set[str] = set()
    tags = _TAG_CHARS.findall(text) if not text.isascii() else []
    main = clean(text, signals)
    result = Normalized([View(main, "text", 0, len(text))], signals)
    result.offsets_exact = len(main) == len(text)
    budget = _Budget(len(text))
    if tags:
        signals.add("tag_chars")
        hidden = "".join(chr(ord(c) - 0xE0000) for run in tags for c in run)
        if budget.take(len(hidden), False):
            result.views.append(View(clean(hidden, signals), "tag_chars", 0, len(text)))
    _expand(text, 0, 0, result, budget)
    result.views += budget.overflow_views()
    return result


def _expand(text: str, base: int, depth: int, result: Normalized, budget: _Budget) -> None:
    """Add the hidden and decoded views of ``text``: the original text when ``depth`` is 0,
    else a decoded segment found at ``base`` of the original (offsets
    inside a decoded segment do not map back, so its views point at the encoded run)."""
    found: list[tuple[str, str, int, int]] = []
    for origin, raw, s, e in _hidden_segments(text):
        result.signals.add("hidden_html")
        found.append((origin, raw, s, e))
    if depth < MAX_DEPTH:
        for origin, raw, s, e in _encoded_segments(text):
            result.signals.add("encoded")
            found.append((origin, raw, s, e))
    if depth == 0:
        for origin, raw in _whole_text_views(text):
            found.append((origin, raw, 0, len(text)))
    for origin, raw, s, e in found:
        decoded = origin in _DECODED
        kind = decoded or origin in _REREAD
        if not raw.strip() or not budget.take(len(raw), kind):
            continue
        view_text = clean(raw, result.signals)
        start, end = (s, e) if depth == 0 else (base, base + len(text))
        view = View(view_text, origin, start, end, depth + 1 if decoded else depth)
        if not budget.place(view, kind):
            continue
        result.views.append(view)
        if decoded:  # a decoded segment may itself hold hidden or encoded content
            _expand(view_text, start, depth + 1, result, budget)


_DECODED = frozenset({"base64", "hex", "url"})
_REREAD = frozenset({"rot13", "leetspeak", "spaced", "whitespace"})
