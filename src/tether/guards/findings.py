"""What a detector reports: findings (a kind of sensitive value at a span of the text, with a
confidence) and a detection (one detector's findings and overall score for one text).

Every guard (PII, secrets, prompt injection, ...) is a :class:`Detector`: ``detect(text)``
returns a :class:`Detection`. A detector that only finds spans (PII, secrets) scores a text by
its most confident finding; one that scores the whole text (a classifier) may return a score
with findings that are only evidence, or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Finding:
    """One sensitive value found in a text."""

    kind: str
    """What it is, in upper snake case: ``EMAIL_ADDRESS``, ``CREDIT_CARD``, ``JWT``."""
    start: int
    """Index of its first character in the text (Python string index: code points)."""
    end: int
    """Index just past its last character."""
    score: float
    """Confidence that it is what ``kind`` says, from 0 to 1."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector's result on one text."""

    guard: str
    """The detector's name (``pii``, ``secrets``, ``injection``)."""
    score: float
    """How strongly the text shows what the detector looks for, from 0 to 1."""
    findings: tuple[Finding, ...] = ()
    """What it found, in text order (may be empty for a detector that scores whole texts)."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct kinds found, in order of first appearance."""
        return tuple(dict.fromkeys(f.kind for f in self.findings))


@runtime_checkable
class Detector(Protocol):
    """Anything that looks at a text and says what it found."""

    name: str
    """Short stable name, used in policies (``guard: pii``) and verdicts."""

    def detect(self, text: str) -> Detection:
        """Findings and score for ``text``; linear in its length, never raises on any text."""
        ...


def detection(guard: str, findings: Sequence[Finding]) -> Detection:
    """A detection scored by its most confident finding (0 when there is none)."""
    score = max((f.score for f in findings), default=0.0)
    return Detection(guard, score, tuple(findings))


def merge_spans(findings: Iterable[Finding]) -> list[Finding]:
    """Findings with overlapping spans merged into one, in text order: the merged span covers
    them all and takes the kind and score of the most confident one (the longest on a tie).
    What a redaction replaces, so that no part of a value survives between two labels."""
    ordered = sorted(findings, key=lambda f: (f.start, -f.end))
    merged: list[Finding] = []
    for f in ordered:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = max((last, f), key=lambda x: (x.score, x.end - x.start))
            merged[-1] = Finding(best.kind, last.start, max(last.end, f.end), best.score)
        else:
            merged.append(f)
    return merged
