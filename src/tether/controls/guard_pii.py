"""The detector guards: personal data (``pii``), credentials (``secrets``), Presidio's analyzer
(``presidio``) and any detector registered with ``tether.guards.register_guard``, run by a
``tether.guards.GuardStack`` of one rule. Their findings are spans of values: ``mask`` writes
the kind in their place (``<EMAIL_ADDRESS>``), ``hash`` a keyed hash (``<EMAIL_ADDRESS:…>``).

A rule that masks or hashes the ``output`` channel also masks each model reply as it arrives
(``after_model``), so the conversation and the trace keep no value the model repeated; one on
the ``user`` channel (any action but ``log``) also masks the run's input as the trace stores
it when the run starts (``redactor``). The evidence in the trace is the kind, position and
score of each finding, never the value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Unpack

from tether.controls.guard_base import (
    Action,
    Channel,
    GuardControl,
    GuardOptions,
    GuardResult,
)
from tether.controls.pipeline import Decision, Hook, HookContext, Verdict
from tether.providers import ModelResponse
from tether.spec.guards import DEFAULT_DETECTOR_THRESHOLD, DetectorRule, GuardsPolicy

if TYPE_CHECKING:
    from tether.guards import GuardStack, GuardVerdict, HashKey

OFF_LOOP_CHARS = 20_000
"""Longer texts are scanned in a worker thread (RE2 lets go of the GIL meanwhile)."""
_WHAT = {"pii": "personal data", "secrets": "a credential", "presidio": "personal data"}


class PiiGuard(GuardControl):
    """A detector guard (``pii`` by default; also ``secrets``, ``presidio`` or a registered
    one). ``kinds`` limits it to some kinds of findings (``["EMAIL_ADDRESS"]``), ``threshold``
    the findings' score from which it acts. ``hash`` needs a key (``hash_key``, else
    ``TETHER_GUARD_HASH_KEY``), asked for when the guard is built."""

    actions: tuple[Action, ...] = ("block", "mask", "hash", "escalate", "log")

    def __init__(
        self,
        guard: str = "pii",
        *,
        kinds: Collection[str] | None = None,
        threshold: float = DEFAULT_DETECTOR_THRESHOLD,
        hash_key: HashKey | None = None,
        environ: Mapping[str, str] | None = None,
        rule: DetectorRule | None = None,
        **options: Unpack[GuardOptions],
    ) -> None:
        self.guard = guard
        super().__init__(**options)
        if rule is None:  # the same checks as a rule in a file: known guard, kinds, action
            rule = DetectorRule.model_validate(
                {
                    "guard": guard,
                    "channels": sorted(self.channels),
                    "threshold": threshold,
                    "action": self.action,
                    "kinds": None if kinds is None else tuple(kinds),
                    "fail_open": self.fail_open,
                }
            )
        self.rule = rule
        from tether.guards import GuardStack  # loads the detectors' engine: only when used

        self.stack: GuardStack = GuardStack(
            GuardsPolicy(guards=[rule]), hash_key=hash_key, environ=environ
        )
        self.stack.warm()  # patterns compiled now, not on the first request
        self._masks_replies = "output" in self.channels and self.action in ("mask", "hash")
        if self._masks_replies:
            self._hooks = self._hooks | {Hook.AFTER_MODEL}

    @classmethod
    def from_rule(cls, rule: DetectorRule, *, documents: Collection[str] = ()) -> PiiGuard:
        """The guard of a spec's or a policy file's rule (a hash key missing is an error
        naming the rule's line)."""
        return cls(
            rule.guard,
            rule=rule,
            channels=rule.channels,
            action=rule.action,
            documents=documents,
            fail_open=rule.fail_open,
        )

    def _check(self, text: str, channel: Channel) -> GuardVerdict:
        verdict = self.stack.check(text, channel)
        if verdict.errors:  # the pipeline fails closed (or open, as the rule says)
            raise RuntimeError("; ".join(verdict.errors))
        return verdict

    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        if len(text) > OFF_LOOP_CHARS:
            verdict = await asyncio.to_thread(self._check, text, channel)
        else:
            verdict = self._check(text, channel)
        kinds = list(dict.fromkeys(f.kind for f in verdict.findings))
        flagged = verdict.action != "allow"
        what = _WHAT.get(self.guard, self.guard)
        if flagged:
            reason = f"{what} found: {', '.join(kinds) or self.guard}"
        else:
            reason = f"no {what} found"
        return GuardResult(
            flagged=flagged,
            reason=reason,
            score=verdict.score,
            threshold=self.rule.threshold,
            categories=verdict.categories,
            # Where and what kind, never the value.
            evidence=tuple(
                {"kind": f.kind, "start": f.start, "end": f.end, "score": f.score}
                for f in verdict.findings
            ),
            masked=verdict.redacted,
        )

    def redactor(self, channel: Channel) -> Callable[[str], str] | None:
        """Masking (or hashing) what this guard finds, unless it only logs: a text it would
        mask, block or escalate is not stored as it came."""
        if channel not in self.channels or self.action == "log":
            return None
        stack = self.stack
        if self.action not in ("mask", "hash"):
            from tether.guards import GuardStack

            masking = self.rule.model_copy(update={"action": "mask"})
            stack = GuardStack(GuardsPolicy(guards=[masking]))

        def redact(text: str) -> str:
            verdict = stack.check(text, channel)
            if verdict.errors:
                raise RuntimeError("; ".join(verdict.errors))
            return verdict.redacted or text

        return redact

    async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
        """A reply's text masked as the answer will be, before the conversation and the
        trace keep it."""
        started = time.perf_counter()
        result = await self.judge(response.content, "output", ctx)
        details = self._details("output", result, (time.perf_counter() - started) * 1000)
        if result.masked is None:
            return Decision(Verdict.ALLOW, result.reason, details=details)
        masked = response.model_copy(update={"content": result.masked})
        return Decision.modify(masked, f"reply masked: {result.reason}").with_details(details)

    def applies(self, ctx: HookContext) -> bool:
        if ctx.hook is Hook.AFTER_MODEL:
            return self._masks_replies
        return ctx.hook in self._hooks and self.channel_of(ctx) in self.channels
