"""Prompt-injection detection: normalization, rules and the trained classifier, combined.

``InjectionDetector().scan(text, channel)`` returns an ``InjectionVerdict`` with a score in
[0, 1], whether it reaches the threshold, the categories found and the evidence (which rule or
which chunk, where). The channel says where the text came from: ``user`` (direct injection),
``tool_output`` or ``document`` (indirect injection). Scanning is linear in the input; texts
longer than ``max_chars`` are scanned at their head, their tail and evenly spaced windows
between, the text between the windows by the rules alone (up to ``sweep_budget(max_chars)``
characters, spread evenly over the gaps), and the verdict says so (``truncated``).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

from tether.core.text import clip_between_words, scrub_surrogates
from tether.guards.classifier import TOKEN, Model, chunk_bounds, load_model, sigmoid, tokenize
from tether.guards.injection_rules import CATEGORIES, RuleHit, match_rules
from tether.guards.normalize import Normalized, View, clean, normalize

Channel = Literal["user", "tool_output", "document"]
CHANNELS: tuple[Channel, ...] = ("user", "tool_output", "document")
DEFAULT_MAX_CHARS = 1_000_000
_WINDOW = 50_000
SWEEP_FACTOR = 20
"""Past ``max_chars``, the text between the sampled windows is still read by the rules (not
the classifier), up to this many times ``max_chars`` in all (and ``MAX_SWEEP_CHARS``): linear,
about a tenth of a second a megabyte."""
MAX_SWEEP_CHARS = 4_000_000
"""Most characters the rules read between the windows, whatever ``max_chars``: with the
default, 20 times ``max_chars`` let a 50 MB text cost 2.5 s of sweep (18 MB read), now about
0.5 s; texts up to 5 MB are still read whole."""
_OVERLAP = 1_000
MAX_GAP_REGIONS = 8
"""Rule hits between the windows around which a stretch is scanned in full, at most."""
_REGION = 2_000
"""Characters before and after such a hit in its stretch."""
_HIDDEN_ORIGINS = frozenset(
    {
        "html_comment",
        "hidden_html",
        "attribute",
        "markdown_alt",
        "markdown_title",
        "markdown_comment",
        "tag_chars",
    }
)
# Rule categories specific enough to set a floor under the score on their own: a text that
# tells the model to drop its instructions, hand over its prompt or send data out through a
# link is flagged even where the classifier is unsure (a short payload in a long document).
# Decisive rules: a hit is a verdict on its own, whatever the classifier and the threshold say
# (a short payload in a long document). Which rules are decisive is measured at training time,
# not assumed: a rule of an attack-word category is decisive if it (almost) never fires on the
# training side's benign texts, real files and documents included (``meta["decisive_rules"]``).
# A decisive hit puts the score at ``DECISIVE_SCORE`` at least, and the thresholds the
# training sets stay below it, so a 0.8 threshold no longer cancels what these rules find.
DECISIVE_SCORE = 0.95
# Where decisive rules apply: third-party text (tool results, documents), where words addressed
# to the model are the anomaly. In the user's own message they stay evidence for the combiner
# (the user is the principal, and developers ask about "the system prompt" in good faith).
DECISIVE_CHANNELS: tuple[str, ...] = ("tool_output", "document")
STRONG_CATEGORIES: dict[str, float] = {
    "override": 0.8,
    "prompt_extraction": 0.8,
    "exfiltration": 0.8,
}
_ENCODED_ORIGINS = frozenset({"base64", "hex", "url", "rot13", "leetspeak", "spaced"})


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason behind a verdict."""

    kind: Literal["rule", "classifier"]
    """A rule matched, or the classifier scored a chunk high."""
    name: str
    """The rule's name, or ``classifier``."""
    category: str
    """The rule's category, or ``classifier``."""
    start: int
    """Start of the span in the original text (see ``exact``)."""
    end: int
    """End (exclusive) of that span."""
    snippet: str
    """The matched text as normalized (at most 160 characters)."""
    origin: str
    """The view it was found in: ``text``, or a hidden or decoded segment (``base64``, ...)."""
    exact: bool
    """Whether ``start``/``end`` are exact; else they cover the segment it was found in."""
    score: float | None = None
    """The chunk's probability, for classifier evidence."""


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    """The result of one scan."""

    score: float
    """Probability-like score in [0, 1] that the text carries an injection."""
    flagged: bool
    """``score >= threshold``."""
    threshold: float
    """The threshold applied."""
    channel: str
    """The channel scanned for."""
    categories: tuple[str, ...]
    """What was found: rule categories, ``classifier``, ``hidden_content``,
    ``encoded_content`` (sorted)."""
    evidence: tuple[Evidence, ...]
    """Rule matches and the top classifier chunk, strongest first (at most 16)."""
    signals: tuple[str, ...]
    """What normalization found (``invisible_chars``, ``confusables``, ``hidden_html``, ...)."""
    latency_ms: float
    """Wall time of the scan."""
    truncated: bool = False
    """The text was longer than ``max_chars`` and only part of it was scanned."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for traces and ``tether scan``)."""
        return {
            "score": round(self.score, 4),
            "flagged": self.flagged,
            "threshold": self.threshold,
            "channel": self.channel,
            "categories": list(self.categories),
            "signals": list(self.signals),
            "latency_ms": round(self.latency_ms, 3),
            "truncated": self.truncated,
            "evidence": [
                {
                    "kind": e.kind,
                    "name": e.name,
                    "category": e.category,
                    "start": e.start,
                    "end": e.end,
                    "snippet": e.snippet,
                    "origin": e.origin,
                    "exact": e.exact,
                }
                | ({"score": round(e.score, 4)} if e.score is not None else {})
                for e in self.evidence
            ],
        }


@dataclass(slots=True)
class _ViewResult:
    view: View
    logit: float
    chunk: tuple[int, int]
    tokens: list[str]
    hits: list[RuleHit] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Combiner:
    """How the classifier's logit and the rule categories make the final score (learned in
    training, shipped in the model's ``meta``)."""

    bias: float
    clf: float
    categories: dict[str, float]
    hidden: float
    encoded: float
    channel: dict[str, float]
    length: float = 0.0
    """Weight of log(1 + chunks of the main text): the best of many chunks is higher by
    chance alone, so a long text's maximum counts for less."""
    pairs: dict[str, float] = field(default_factory=dict)
    """Weights of a rule category seen on a channel (``tool_output:agent_task``): the same
    words weigh more in a tool's output than in the user's own message."""

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Combiner:
        c = meta.get("combiner") or {}
        return cls(
            float(c.get("bias", 0.0)),
            float(c.get("clf", 1.0)),
            {k: float(v) for k, v in (c.get("categories") or {}).items()},
            float(c.get("hidden", 0.0)),
            float(c.get("encoded", 0.0)),
            {k: float(v) for k, v in (c.get("channel") or {}).items()},
            float(c.get("length", 0.0)),
            {k: float(v) for k, v in (c.get("pairs") or {}).items()},
        )

    def logit(
        self,
        clf_logit: float,
        categories: set[str],
        hidden: bool,
        encoded: bool,
        channel: str,
        chunks: int = 1,
    ) -> float:
        z = self.bias + self.clf * clf_logit + self.channel.get(channel, 0.0)
        if self.length:
            z += self.length * math.log1p(chunks)
        pairs = self.pairs
        for cat in categories:
            z += self.categories.get(cat, 0.0)
            if pairs:
                z += pairs.get(f"{channel}:{cat}", 0.0)
        if hidden:
            z += self.hidden
        if encoded:
            z += self.encoded
        return z


class InjectionDetector:
    """Scores texts for prompt injection. Thread-safe to share: scanning keeps no state but a
    cache of per-token weights."""

    def __init__(
        self,
        threshold: float | None = None,
        *,
        model: Model | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        """``threshold`` overrides the model's per-channel thresholds (in [0, 1]);
        ``max_chars`` bounds the work on huge texts."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold!r}")
        if max_chars < 2 * _WINDOW:
            raise ValueError(f"max_chars must be at least {2 * _WINDOW}, got {max_chars!r}")
        self.model = model if model is not None else load_model()
        self.combiner = Combiner.from_meta(self.model.meta)
        decisive = self.model.meta.get("decisive_rules") or ()
        self.decisive = frozenset(str(r) for r in decisive)
        self.decisive_channels = frozenset(
            self.model.meta.get("decisive_channels") or DECISIVE_CHANNELS
        )
        thresholds = self.model.meta.get("thresholds") or {}
        self.thresholds = {c: float(thresholds.get(c, 0.5)) for c in CHANNELS}
        if threshold is not None:
            self.thresholds = dict.fromkeys(CHANNELS, threshold)
        self.max_chars = max_chars

    def scan(self, text: str | bytes, channel: Channel = "user") -> InjectionVerdict:
        """The verdict on ``text`` coming in through ``channel``."""
        started = time.perf_counter()
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8", errors="replace")
        elif not isinstance(text, str):
            raise TypeError(f"text must be str or bytes, not {type(text).__name__}")
        text = scrub_surrogates(text)
        truncated = len(text) > self.max_chars
        parts = _sample(text, self.max_chars) if truncated else [(0, text)]
        results: list[_ViewResult] = []
        signals: set[str] = set()
        exact_offsets = True
        for offset, part in parts:
            norm = normalize(part)
            signals |= norm.signals
            exact_offsets &= norm.offsets_exact
            for view in norm.views:
                results.append(self._scan_view(_shift(view, offset), channel))
        if truncated:
            # What lies between the windows is read by the rules; around each of their first
            # hits, a stretch is scanned as a window is. A payload placed there (a 2 MB page
            # with the instruction a third of the way in) was not read at all.
            regions = 0
            for offset, gap in _gaps(text, parts, sweep_budget(self.max_chars)):
                main = clean(gap, set())
                covered = -1
                for hit in sorted(match_rules(main), key=lambda h: h.start):
                    if hit.end <= covered:
                        continue  # in the stretch of an earlier hit
                    # Offsets in the cleaned gap are near the original ones (only invisible
                    # characters were taken out): the stretch is wide enough either way.
                    start = max(0, hit.start - _REGION)
                    covered = hit.end + _REGION // 2
                    region = gap[start : hit.end + _REGION]
                    norm = normalize(region)
                    signals |= norm.signals
                    exact_offsets &= norm.offsets_exact
                    for view in norm.views:
                        results.append(self._scan_view(_shift(view, offset + start), channel))
                    regions += 1
                    if regions >= MAX_GAP_REGIONS:
                        break
                if regions >= MAX_GAP_REGIONS:
                    break
        return self._verdict(
            results, signals, channel, started, truncated, exact_offsets, len(text)
        )

    def _scan_view(self, view: View, channel: str) -> _ViewResult:
        lowered = view.text.lower()
        tokens = tokenize(lowered)
        chunks = self.model.chunk_scores(tokens, channel)
        best = max(chunks, key=lambda c: c.logit)
        # The classifier's tokens hold the rules' words (``[^\W_]+``) plus symbol clusters.
        hits = match_rules(view.text, lowered=lowered, words=set(tokens))
        return _ViewResult(view, best.logit, (best.start, best.end), tokens, hits)

    def _verdict(
        self,
        results: list[_ViewResult],
        signals: set[str],
        channel: str,
        started: float,
        truncated: bool,
        exact_offsets: bool,
        length: int,
    ) -> InjectionVerdict:
        categories: set[str] = set()
        rules: set[str] = set()
        hidden = encoded = False
        clf_logit = -math.inf
        best: _ViewResult | None = None
        for r in results:
            cats = {h.category for h in r.hits}
            categories |= cats
            rules.update(h.rule for h in r.hits)
            suspicious = bool(cats) or r.logit > 0.0
            if r.view.origin in _HIDDEN_ORIGINS and suspicious:
                hidden = True
            if r.view.origin in _ENCODED_ORIGINS and suspicious:
                encoded = True
            if r.logit > clf_logit:
                clf_logit, best = r.logit, r
        tokens = max((len(r.tokens) for r in results if r.view.origin == "text"), default=0)
        chunks = len(chunk_bounds(tokens)) if tokens else 1
        z = self.combiner.logit(clf_logit, categories, hidden, encoded, channel, chunks)
        score = max(
            [sigmoid(z)] + [STRONG_CATEGORIES[c] for c in categories if c in STRONG_CATEGORIES]
        )
        if channel in self.decisive_channels and not rules.isdisjoint(self.decisive):
            score = max(score, DECISIVE_SCORE)
            categories.add("decisive_rule")
        threshold = self.thresholds[channel]  # type: ignore[index]
        if sigmoid(clf_logit) >= 0.5:
            categories.add("classifier")
        if hidden:
            categories.add("hidden_content")
        if encoded:
            categories.add("encoded_content")
        evidence = _evidence(results, best, exact_offsets, length)
        return InjectionVerdict(
            score=score,
            flagged=score >= threshold,
            threshold=threshold,
            channel=channel,
            categories=tuple(sorted(categories)),
            evidence=evidence,
            signals=tuple(sorted(signals)),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            truncated=truncated,
        )


def _shift(view: View, offset: int) -> View:
    if offset == 0:
        return view
    return View(view.text, view.origin, view.start + offset, view.end + offset, view.depth)


def _sample(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Head, tail and evenly spaced windows of a text longer than ``max_chars``."""
    n_windows = max_chars // _WINDOW
    step = (len(text) - _WINDOW) / (n_windows - 1)
    return [
        (round(i * step), text[round(i * step) : round(i * step) + _WINDOW])
        for i in range(n_windows)
    ]


def sweep_budget(max_chars: int) -> int:
    """Characters of a text past ``max_chars`` that the rules read between its windows."""
    return min(SWEEP_FACTOR * max_chars, MAX_SWEEP_CHARS)


def _gaps(text: str, windows: list[tuple[int, str]], budget: int) -> list[tuple[int, str]]:
    """The text between the sampled ``windows`` (each gap reaching ``_OVERLAP`` characters
    into the windows around it, so a phrase across a border is whole in one of them), at
    most ``budget`` characters in all. Gaps longer than their even share of the budget are
    read as evenly spaced stripes of about ``_WINDOW`` characters, the first at the gap's
    start and the last at its end: every gap gets its share (the first gaps took the whole
    budget, and a payload in a later one was never read)."""
    spans = [
        (max(0, a + len(first) - _OVERLAP), min(len(text), b + _OVERLAP))
        for (a, first), (b, _) in itertools.pairwise(windows)
    ]
    spans = [(start, end) for start, end in spans if end > start]
    if sum(end - start for start, end in spans) <= budget:
        return [(start, text[start:end]) for start, end in spans]
    share = budget // len(spans)
    out: list[tuple[int, str]] = []
    for start, end in spans:
        if end - start <= share:
            out.append((start, text[start:end]))
            continue
        stripes = max(1, share // _WINDOW)
        size = share // stripes
        step = (end - start - size) / max(1, stripes - 1)
        for i in range(stripes):
            at = start + round(i * step)
            out.append((at, text[at : at + size]))
    return out


def _evidence(
    results: list[_ViewResult], best: _ViewResult | None, exact_offsets: bool, length: int
) -> tuple[Evidence, ...]:
    out: list[Evidence] = []
    order = {c: i for i, c in enumerate(CATEGORIES)}
    for r in results:
        main = r.view.origin == "text"
        exact = main and exact_offsets
        for h in sorted(r.hits, key=lambda h: order.get(h.category, 99)):
            start, end = (
                (r.view.start + h.start, r.view.start + h.end)
                if exact
                else (r.view.start, r.view.end)
            )
            out.append(
                Evidence(
                    "rule",
                    h.rule,
                    h.category,
                    start,
                    min(end, length),
                    _clip(r.view.text[h.start : h.end]),
                    r.view.origin,
                    exact,
                )
            )
    if best is not None and best.tokens:
        p = sigmoid(best.logit)
        words = _chunk_text(best)
        out.append(
            Evidence(
                "classifier",
                "classifier",
                "classifier",
                best.view.start,
                best.view.end,
                _clip(words),
                best.view.origin,
                False,
                p,
            )
        )
    return tuple(out[:16])


def _chunk_text(result: _ViewResult) -> str:
    """The text of the view's best chunk as it is written, clipped. Its tokens joined with
    spaces (``ghp q7r8… , email jane . doe @ example . org``) were the snippet: a value that
    the policy masks no longer looked like itself there, so the trace kept it."""
    s, e = result.chunk
    lowered = result.view.text.lower()
    if e <= s or len(lowered) != len(result.view.text):  # lower-casing changed the offsets
        return " ".join(result.tokens[s:e])
    found = islice(TOKEN.finditer(lowered), s, e)
    first = next(found, None)
    if first is None:
        return ""
    last = first
    for last in found:
        if last.start() - first.start() > 2 * _SNIPPET_CHARS:
            break
    return result.view.text[first.start() : last.end()]


_SNIPPET_CHARS = 160


def _clip(text: str) -> str:
    return clip_between_words(text, _SNIPPET_CHARS)


_DEFAULT: InjectionDetector | None = None


def default_detector() -> InjectionDetector:
    """A shared detector with the shipped model and its thresholds (loaded on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = InjectionDetector()
    return _DEFAULT


def scan(text: str | bytes, channel: Channel = "user") -> InjectionVerdict:
    """``default_detector().scan(text, channel)``."""
    return default_detector().scan(text, channel)


__all__ = [
    "CHANNELS",
    "Channel",
    "Evidence",
    "InjectionDetector",
    "InjectionVerdict",
    "Normalized",
    "default_detector",
    "scan",
]
