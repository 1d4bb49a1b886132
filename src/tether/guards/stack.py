"""Running a guards policy on one text of one channel and saying what to do with it.

:class:`GuardStack` builds each detector the policy names once, runs the rules of a channel
(one detector run per guard and kind filter, however many rules share it) and folds their
results into a :class:`GuardVerdict`: blocked or not, escalated or not, the score, the
categories found, the text with masked or hashed values. A detector that raises blocks the
text (the error is in the verdict) unless its rule says ``fail_open``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tether.core import SpecError, TetherError, describe_exception
from tether.guards.findings import Detection, Detector, Finding
from tether.guards.policy import Channel, GuardRule, GuardsPolicy, default_policy
from tether.guards.redaction import HashKey, RedactAction, redact_each
from tether.guards.registry import guard_types

ACTION_RANK = {"allow": 0, "log": 1, "hash": 2, "mask": 3, "escalate": 4, "block": 5}
"""The actions from weakest to strongest: a text several rules act on gets the strongest."""


@dataclass(frozen=True, slots=True)
class GuardFinding:
    """A finding and the guard that made it."""

    guard: str
    """The guard's name (``pii``)."""
    kind: str
    """What was found (``EMAIL_ADDRESS``)."""
    start: int
    """Index of its first character in the text."""
    end: int
    """Index just past its last character."""
    score: float
    """The detector's confidence, 0 to 1."""


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guards of one channel say about one text."""

    blocked: bool
    """A ``block`` rule fired, or a guard failed without ``fail_open``."""
    escalated: bool = False
    """An ``escalate`` rule fired: a person should decide."""
    score: float = 0.0
    """The highest score any guard gave the text, 0 to 1."""
    categories: tuple[str, ...] = ()
    """What fired, as ``guard.KIND`` (``pii.EMAIL_ADDRESS``), in order of appearance."""
    redacted: str | None = None
    """The text with masked or hashed values, if a ``mask`` or ``hash`` rule fired (what
    ``block`` and ``escalate`` rules found is then masked in it too)."""
    action: str = "allow"
    """The strongest action taken: allow, log, hash, mask, escalate or block."""
    findings: tuple[GuardFinding, ...] = ()
    """What fired, with spans in the original text (never the values themselves)."""
    errors: tuple[str, ...] = ()
    """Guards that failed, as ``guard: Error: message``."""
    latency_ms: float = 0.0
    """Time taken by the guards on this text."""

    def to_json(self) -> dict[str, object]:
        """The verdict as JSON-ready data (what ``tether scan`` prints)."""
        return {
            "blocked": self.blocked,
            "escalated": self.escalated,
            "score": round(self.score, 4),
            "categories": list(self.categories),
            "action": self.action,
            "redacted": self.redacted,
            "findings": [
                {"guard": f.guard, "kind": f.kind, "start": f.start, "end": f.end, "score": f.score}
                for f in self.findings
            ],
            "errors": list(self.errors),
            "latency_ms": round(self.latency_ms, 3),
        }


@dataclass
class _Run:
    """What the rules of one text have said so far."""

    blocked: bool = False
    escalated: bool = False
    score: float = 0.0
    action: str = "allow"
    categories: dict[str, None] = field(default_factory=dict)
    findings: list[GuardFinding] = field(default_factory=list)
    redactions: list[tuple[Finding, RedactAction]] = field(default_factory=list)
    withheld: list[Finding] = field(default_factory=list)
    """Findings of block and escalate rules: masked too when the text is redacted at all."""
    errors: list[str] = field(default_factory=list)

    def take(self, action: str) -> None:
        if ACTION_RANK[action] > ACTION_RANK[self.action]:
            self.action = action


class GuardStack:
    """A policy's guards, built once, ready to judge texts."""

    def __init__(
        self,
        policy: GuardsPolicy | None = None,
        *,
        hash_key: HashKey | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``hash_key``: the key of ``hash`` rules (default: ``TETHER_GUARD_HASH_KEY`` from
        ``environ`` or the process environment, required only if a rule hashes)."""
        self.policy = policy if policy is not None else default_policy()
        # The detectors' rules; a policy's other guards (injection, deny lists...) are
        # controls of the pipeline (``tether.controls``), not a stack's.
        self.rules = [r for r in self.policy.guards if isinstance(r, GuardRule)]
        if hash_key is None and any(r.action == "hash" for r in self.rules):
            hash_key = _key_for(self.rules, environ)
        self._key = hash_key
        types = guard_types()
        self._detectors: dict[tuple[str, tuple[str, ...] | None], Detector] = {}
        for rule in self.rules:
            key = (rule.guard, rule.kinds)
            if key not in self._detectors:
                self._detectors[key] = types[rule.guard].factory(rule.kinds)

    def warm(self) -> None:
        """Compile every detector's patterns now (see ``PatternScanner.warm``)."""
        for detector in self._detectors.values():
            warm = getattr(detector, "warm", None)
            if callable(warm):
                warm()

    def check(self, text: str, channel: Channel) -> GuardVerdict:
        """The verdict of the rules on ``channel`` for ``text``. Never raises for any text."""
        started = time.perf_counter()
        run = _Run()
        detections: dict[tuple[str, tuple[str, ...] | None], Detection | BaseException] = {}
        for rule in self.rules:
            if channel not in rule.channels:
                continue
            key = (rule.guard, rule.kinds)
            if key not in detections:
                detections[key] = _detect(self._detectors[key], text)
            self._apply(rule, detections[key], run)
        redacted = None
        if run.redactions:  # what a block or escalate rule found is never shown either
            masked = [*run.redactions, *((f, "mask") for f in run.withheld)]
            redacted = redact_each(text, masked, key=self._key)
        return GuardVerdict(
            blocked=run.blocked,
            escalated=run.escalated,
            score=run.score,
            categories=tuple(run.categories),
            redacted=redacted,
            action=run.action,
            findings=tuple(run.findings),
            errors=tuple(run.errors),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _apply(self, rule: GuardRule, result: Detection | BaseException, run: _Run) -> None:
        if isinstance(result, BaseException):
            run.errors.append(f"{rule.guard}: {describe_exception(result, limit=500)}")
            if not rule.fail_open:  # a guard that cannot judge a text does not let it pass
                run.blocked = True
                run.take("block")
            return
        run.score = max(run.score, result.score)
        fired = [f for f in result.findings if f.score >= rule.threshold]
        if not fired and not (result.score >= rule.threshold and not result.findings):
            return
        for f in fired:
            run.categories[f"{rule.guard}.{f.kind}"] = None
            run.findings.append(GuardFinding(rule.guard, f.kind, f.start, f.end, f.score))
        if not fired:  # a detector that scores whole texts (injection)
            run.categories[rule.guard] = None
        run.take(rule.action)
        if rule.action == "block":
            run.blocked = True
            run.withheld.extend(fired)
        elif rule.action == "escalate":
            run.escalated = True
            run.withheld.extend(fired)
        elif rule.action in ("mask", "hash"):
            action: RedactAction = "hash" if rule.action == "hash" else "mask"
            run.redactions.extend((f, action) for f in fired)


def _detect(detector: Detector, text: str) -> Detection | BaseException:
    try:
        return detector.detect(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a failing guard is a verdict (blocked), not a crash
        return exc


def _key_for(rules: list[GuardRule], environ: Mapping[str, str] | None) -> HashKey:
    try:
        return HashKey.from_env(environ)
    except TetherError as exc:
        from tether.spec.loader import origin_of

        rule = next(r for r in rules if r.action == "hash")
        where = origin_of(rule, "action")
        prefix = f"{where[0]}:{where[1]}: " if where else ""
        raise SpecError(f"{prefix}{exc.message}", hint=exc.hint) from None
