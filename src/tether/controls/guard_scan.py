"""Judging texts with a whole guards policy outside a run: what ``tether scan`` does.

The detector rules (``pii``, ``secrets``...) run together in a ``GuardStack``, as they always
have; every other rule (``injection``, ``deny_list``, ``topics``, ``python``, ``judge``) runs
as the control an agent would build from it, in the policy's order, on the text as the
detectors left it (masked values stay masked). Their results fold into the stack's verdict:
the highest score, the categories (``injection``, ``injection.override``,
``deny_list.terms``...), the strongest action, the masked text, and the errors of guards that
failed (such a text is blocked unless the rule says ``fail_open``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.controls.guard_base import Channel, GuardControl
from tether.controls.guard_build import build_rule
from tether.core import SpecError, TetherError, describe_exception
from tether.spec import GuardsPolicy, origin_of
from tether.spec.guards import DetectorRule

if TYPE_CHECKING:
    from tether.guards import GuardStack

_RANK = {"allow": 0, "log": 1, "hash": 2, "mask": 3, "escalate": 4, "block": 5}


class PolicyScanner:
    """A policy's guards, built once, judging texts of one channel at a time."""

    def __init__(self, policy: GuardsPolicy | None, *, base_dir: Path | None = None) -> None:
        """``policy``: the rules (default: ``tether.guards.default_policy()``); ``base_dir``:
        where a Python guard's ``file.py`` is found (the policy file's folder)."""
        from tether.guards import GuardStack

        self.stack: GuardStack = GuardStack(policy)
        self.controls: list[GuardControl] = []
        for i, rule in enumerate(self.stack.policy.guards):
            if isinstance(rule, DetectorRule):
                continue
            try:
                self.controls.append(build_rule(rule, base_dir=base_dir))
            except (TetherError, ValueError, TypeError) as exc:
                message = exc.message if isinstance(exc, TetherError) else str(exc)
                origin = origin_of(rule, "guard")
                where = f"{origin[0]}:{origin[1]}: " if origin else ""
                hint = exc.hint if isinstance(exc, TetherError) else None
                raise SpecError(f"{where}guards[{i}]: {message}", hint=hint) from None

    def warm(self) -> None:
        """Compile the detectors' patterns now, not on the first text."""
        self.stack.warm()

    async def check(self, text: str, channel: Channel) -> dict[str, Any]:
        """The verdict on ``text`` as JSON-ready data (``GuardVerdict.to_json``'s fields)."""
        started = time.perf_counter()
        if channel == "tool_args":  # only the detectors judge arguments
            judged = self._arguments(text)
            judged["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            return judged
        stacked = self.stack.check(text, channel)
        verdict: dict[str, Any] = stacked.to_json()
        current = verdict["redacted"] if isinstance(verdict["redacted"], str) else text
        if stacked.redacted is None and stacked.action in ("block", "escalate"):
            # The other guards judge (and a masking one shows) the text with what the
            # detectors blocked masked: a value they blocked is never printed.
            from tether.guards import Finding, redact

            current = redact(
                text, [Finding(f.kind, f.start, f.end, f.score) for f in stacked.findings]
            )
        categories: list[str] = list(verdict["categories"])
        errors: list[str] = list(verdict["errors"])
        for control in self.controls:
            if channel not in control.channels:
                continue
            try:
                result = await control.judge(current, channel, None)
            except Exception as exc:
                errors.append(f"{control.guard}: {describe_exception(exc, limit=500)}")
                if not control.fail_open:
                    _take(verdict, "block")
                continue
            if result.score is not None:
                verdict["score"] = round(max(float(verdict["score"]), result.score), 4)
            if not result.flagged:
                continue
            found = [control.guard] + [
                c if c.startswith(f"{control.guard}.") else f"{control.guard}.{c}"
                for c in result.categories
            ]
            categories.extend(c for c in dict.fromkeys(found) if c not in categories)
            action = control.action
            if action in ("mask", "hash") and result.masked is not None:
                current = result.masked
                verdict["redacted"] = current
            _take(verdict, action)
        verdict["categories"] = categories
        verdict["errors"] = errors
        verdict["blocked"] = verdict["action"] == "block"
        verdict["escalated"] = bool(verdict["escalated"]) or verdict["action"] == "escalate"
        verdict["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return verdict

    def _arguments(self, text: str) -> dict[str, Any]:
        """A tool call's arguments (a JSON object as text; any other text is judged as one
        value) judged value by value; ``redacted`` is the masked arguments as JSON."""
        from tether.guards.arguments import check_arguments

        try:
            arguments: Any = json.loads(text)
        except (ValueError, RecursionError):
            arguments = None
        if not isinstance(arguments, dict):
            arguments = {"__raw__": text}
        verdict = check_arguments(self.stack, arguments)
        masked = verdict.arguments
        if not verdict.changed:
            redacted = None
        elif set(masked) == {"__raw__"}:
            redacted = masked["__raw__"]
        else:
            redacted = json.dumps(masked, ensure_ascii=False)
        return {
            "blocked": verdict.blocked,
            "escalated": verdict.escalated,
            "score": round(verdict.score, 4),
            "categories": list(verdict.categories),
            "action": verdict.action,
            "redacted": redacted,
            "findings": [
                {
                    "guard": f.guard,
                    "kind": f.kind,
                    "arg": f.path,
                    "part": f.part,
                    "start": f.start,
                    "end": f.end,
                    "score": f.score,
                }
                for f in verdict.findings
            ],
            "errors": list(verdict.errors),
        }


def _take(verdict: dict[str, Any], action: str) -> None:
    if _RANK[action] > _RANK[str(verdict["action"])]:
        verdict["action"] = action
    if action == "escalate":
        verdict["escalated"] = True
