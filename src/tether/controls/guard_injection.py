"""The prompt-injection guard: the user's message (direct injection), tool results and
documents (indirect injection) scored by ``tether.guards.InjectionDetector``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Unpack

from tether.controls.guard_base import Channel, GuardControl, GuardOptions, GuardResult
from tether.controls.pipeline import HookContext

if TYPE_CHECKING:
    from tether.guards import InjectionDetector

OFF_LOOP_CHARS = 20_000
"""Texts longer than this are scanned in a worker thread, so a long document does not hold the
event loop (and every other run on it) for the whole scan."""


class InjectionGuard(GuardControl):
    """Flags texts whose injection score reaches the threshold (default: the shipped model's
    threshold for the channel). A blocked tool result is withheld from the model, which is
    told why, and the run goes on."""

    guard = "injection"
    default_channels: tuple[Channel, ...] = ("user", "tool_output", "document")

    def __init__(
        self,
        *,
        threshold: float | None = None,
        detector: InjectionDetector | None = None,
        **options: Unpack[GuardOptions],
    ) -> None:
        super().__init__(**options)
        if "output" in self.channels:
            raise ValueError("the injection guard runs on user, tool_output and document")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.threshold = threshold
        if detector is None:  # shared: the model loads once per process
            from tether.guards import default_detector

            detector = default_detector()
        self.detector = detector

    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        assert channel != "output" and channel != "tool_args"
        if len(text) > OFF_LOOP_CHARS:
            verdict = await asyncio.to_thread(self.detector.scan, text, channel)
        else:
            verdict = self.detector.scan(text, channel)
        threshold = self.threshold if self.threshold is not None else verdict.threshold
        flagged = verdict.score >= threshold
        categories = verdict.categories + (("truncated",) if verdict.truncated else ())
        what = ", ".join(c for c in verdict.categories if c != "classifier") or "classifier"
        reason = (
            f"possible prompt injection (score {verdict.score:.2f} >= {threshold:g}: {what})"
            if flagged
            else f"no prompt injection found (score {verdict.score:.2f} < {threshold:g})"
        )
        evidence = tuple(verdict.to_dict()["evidence"])
        return GuardResult(
            flagged=flagged,
            reason=reason,
            score=verdict.score,
            threshold=threshold,
            categories=categories,
            evidence=evidence,
        )
