"""The detector guards: personal data (``pii``), credentials (``secrets``), Presidio's analyzer
(``presidio``) and any detector registered with ``tether.guards.register_guard``, run by a
``tether.guards.GuardStack`` of one rule. Their findings are spans of values: ``mask`` writes
the kind in their place (``<EMAIL_ADDRESS>``), ``hash`` a keyed hash (``<EMAIL_ADDRESS:…>``).

A rule on the ``output`` channel (any action but ``log``) judges each model reply as it arrives
(``after_model``), not only the answer: ``mask`` and ``hash`` mask it, so the conversation and
the trace keep no value the model repeated; ``block`` and ``escalate`` stop the run at the
reply that holds one (its chat span keeps a marker, not the text). One on
the ``user`` channel (any action but ``log``) also masks the run's input as the trace stores
it when the run starts (``redactor``). The evidence in the trace is the kind, position and
score of each finding, never the value.

A rule on ``tool_args`` judges the arguments the model writes for each tool call, value by
value (``tether.guards.arguments``), as the reply that holds the calls arrives
(``after_model``): the chat span, the conversation and the tool see the arguments masked
(``mask``, ``hash``, and also ``block`` and ``escalate``, whose values must not be stored
either). Then at ``before_tool`` a call a ``block`` rule flagged is refused (the model is told
why, the run goes on) and one an ``escalate`` rule flagged pauses the run; ``log`` changes
nothing. A call that reaches ``before_tool`` without passing ``after_model`` (one a run
scope's own code makes) is judged there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Unpack

from tether.controls.guard_base import (
    CHANNELS,
    ESCALATED_MESSAGE,
    Action,
    Channel,
    GuardControl,
    GuardOptions,
    GuardResult,
)
from tether.controls.pipeline import ALLOW, Decision, Hook, HookContext, Verdict
from tether.core import content_hash
from tether.providers import ModelResponse, ToolCall
from tether.spec.guards import DEFAULT_DETECTOR_THRESHOLD, DetectorRule, GuardsPolicy

if TYPE_CHECKING:
    from tether.guards import GuardStack, GuardVerdict, HashKey
    from tether.guards.arguments import ArgumentsVerdict

OFF_LOOP_CHARS = 20_000
"""Longer texts are scanned in a worker thread (RE2 lets go of the GIL meanwhile)."""
MAX_REMEMBERED_CALLS = 4096
"""Tool calls judged at ``after_model`` whose ``before_tool`` has not come yet, kept at most
(oldest dropped: such a call is judged again at ``before_tool``, on masked arguments)."""
_WHAT = {"pii": "personal data", "secrets": "a credential", "presidio": "personal data"}


class PiiGuard(GuardControl):
    """A detector guard (``pii`` by default; also ``secrets``, ``presidio`` or a registered
    one). ``kinds`` limits it to some kinds of findings (``["EMAIL_ADDRESS"]``), ``threshold``
    the findings' score from which it acts. ``hash`` needs a key (``hash_key``, else
    ``TETHER_GUARD_HASH_KEY``), asked for when the guard is built."""

    actions: tuple[Action, ...] = ("block", "mask", "hash", "escalate", "log")
    quotes_text = False  # its reasons name kinds; its evidence, kinds and offsets
    supported_channels: tuple[Channel, ...] = CHANNELS
    default_channels: tuple[Channel, ...] = CHANNELS

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
        # Every reply is judged as it arrives (not only the answer, at on_output): a value the
        # model wrote is masked before the conversation and the trace keep it, and a reply a
        # block or escalate rule flags stops the run there, never to be stored as it came.
        self._masks_replies = "output" in self.channels and self.action != "log"
        self._judges_args = "tool_args" in self.channels
        if self._masks_replies or self._judges_args:
            self._hooks = self._hooks | {Hook.AFTER_MODEL}
        # Arguments a block or escalate rule flags are masked all the same: what the chat
        # span, the conversation and a checkpoint keep.
        self._args_stack = (
            self._masking_stack() if self.action in ("block", "escalate") else self.stack
        )
        self._judged: OrderedDict[tuple[str, str], tuple[str, Decision | None]] = OrderedDict()
        """Calls judged at ``after_model``, by (run id, call id): the hash of the arguments
        as they went on, and the decision ``before_tool`` takes for them (block, escalate)."""
        self._judged_lock = threading.Lock()

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

    def _reason(self, flagged: bool, kinds: list[str], where: str = "") -> str:
        what = _WHAT.get(self.guard, self.guard)
        if not flagged:
            return f"no {what.removeprefix('a ')} found{where}"
        return f"{what} found{where}: {', '.join(dict.fromkeys(kinds)) or self.guard}"

    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        if len(text) > OFF_LOOP_CHARS:
            verdict = await asyncio.to_thread(self._check, text, channel)
        else:
            verdict = self._check(text, channel)
        flagged = verdict.action != "allow"
        return GuardResult(
            flagged=flagged,
            reason=self._reason(flagged, [f.kind for f in verdict.findings]),
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

    def _masking_stack(self) -> GuardStack:
        """This rule masking what it finds (for texts it blocks or escalates, as stored)."""
        from tether.guards import GuardStack

        masking = self.rule.model_copy(update={"action": "mask"})
        return GuardStack(GuardsPolicy(guards=[masking]))

    def redactor(self, channel: Channel) -> Callable[[str], str] | None:
        """Masking (or hashing) what this guard finds, unless it only logs: a text it would
        mask, block or escalate is not stored as it came."""
        if channel not in self.channels or self.action == "log":
            return None
        stack = self.stack if self.action in ("mask", "hash") else self._masking_stack()

        def redact(text: str) -> str:
            verdict = stack.check(text, channel)
            if verdict.errors:
                raise RuntimeError("; ".join(verdict.errors))
            return verdict.redacted or text

        return redact

    def arguments_redactor(self) -> Callable[[Mapping[str, Any]], Mapping[str, Any]] | None:
        if not self._judges_args or self.action == "log":
            return None
        from tether.guards.arguments import check_arguments

        stack = self._args_stack

        def redact(arguments: Mapping[str, Any]) -> Mapping[str, Any]:
            verdict = check_arguments(stack, arguments)
            if verdict.errors:
                raise RuntimeError("; ".join(verdict.errors))
            return verdict.arguments

        return redact

    async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
        """A reply as the conversation and the trace will keep it: its text masked as the
        answer will be (``output``), its tool calls' arguments as ``tool_args`` says."""
        judge_args = self._judges_args and bool(response.tool_calls)
        if not (self._masks_replies or judge_args):
            return ALLOW  # nothing of this reply to judge (not recorded)
        started = time.perf_counter()
        results: list[tuple[Channel, GuardResult]] = []
        masked = response
        if self._masks_replies:
            result = await self.judge(response.content, "output", ctx)
            if result.flagged and self.action in ("block", "escalate"):
                latency = (time.perf_counter() - started) * 1000
                details = self._details("output", result, latency)
                return self._act("output", result, response.content).with_details(details)
            results.append(("output", result))
            if result.masked is not None:
                masked = masked.model_copy(update={"content": result.masked})
        if judge_args:
            calls: list[ToolCall] = []
            for call in response.tool_calls:
                began = time.perf_counter()
                checked, result = await self._judge_call(call)
                results.append(("tool_args", result))
                calls.append(checked)
                decision = self._args_decision(call, result)
                if decision is not None:  # taken at before_tool, with this call's verdict
                    latency = (time.perf_counter() - began) * 1000
                    decision = decision.with_details(self._details("tool_args", result, latency))
                self._remember(ctx, checked, decision)
            if any(c is not o for c, o in zip(calls, response.tool_calls, strict=True)):
                masked = masked.model_copy(update={"tool_calls": calls})
        result = _merged([r for _, r in results])
        channel = "+".join(dict.fromkeys(c for c, _ in results))
        details = self._details(channel, result, (time.perf_counter() - started) * 1000)
        if masked is response:
            reason = f"logged: {result.reason}" if result.flagged else result.reason
            return Decision(Verdict.ALLOW, reason, details=details)
        return Decision.modify(masked, f"reply masked: {result.reason}").with_details(details)

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        """The decision ``after_model`` left for this call (refused, escalated); a call that
        did not pass it, or whose arguments changed since, is judged now."""
        remembered = self._recall(ctx, call)
        if remembered is not None:
            # Allowed then: say so, not an allow with no reason in the trace.
            return remembered[1] or Decision(
                Verdict.ALLOW, "arguments judged with the model's reply (after_model)"
            )
        started = time.perf_counter()
        checked, result = await self._judge_call(call)
        details = self._details("tool_args", result, (time.perf_counter() - started) * 1000)
        decision = self._args_decision(call, result)
        if decision is None and checked is not call:
            decision = Decision.modify(checked, f"arguments masked: {result.reason}")
        if decision is None:
            decision = Decision(
                Verdict.ALLOW,
                f"logged: {result.reason}" if result.flagged else result.reason,
            )
        return decision.with_details(details)

    async def _judge_call(self, call: ToolCall) -> tuple[ToolCall, GuardResult]:
        """The call with its arguments masked as this rule masks them (the same object when
        nothing was), and what was found."""
        from tether.guards.arguments import check_arguments

        if _size_hint(call.arguments) > OFF_LOOP_CHARS:
            verdict = await asyncio.to_thread(check_arguments, self._args_stack, call.arguments)
        else:
            verdict = check_arguments(self._args_stack, call.arguments)
        if verdict.errors:  # the pipeline fails closed (or open, as the rule says)
            raise RuntimeError("; ".join(verdict.errors))
        result = self._args_result(call, verdict)
        if not verdict.changed or self.action == "log":
            return call, result
        return call.model_copy(update={"arguments": verdict.arguments}), result

    def _args_result(self, call: ToolCall, verdict: ArgumentsVerdict) -> GuardResult:
        flagged = verdict.action != "allow"
        kinds = [f.kind for f in verdict.findings]
        reason = self._reason(flagged, kinds, f" in the arguments of {call.name}")
        evidence: tuple[dict[str, Any], ...] = tuple(
            {
                "tool": call.name,
                "call": call.id,
                "arg": f.path,
                "part": f.part,
                "kind": f.kind,
                "start": f.start,
                "end": f.end,
                "score": f.score,
            }
            for f in verdict.findings
        )
        return GuardResult(
            flagged=flagged,
            reason=reason,
            score=verdict.score,
            threshold=self.rule.threshold,
            categories=tuple(verdict.categories),
            evidence=evidence,
        )

    def _args_decision(self, call: ToolCall, result: GuardResult) -> Decision | None:
        """What ``before_tool`` does with a call whose arguments ``result`` judged."""
        if not result.flagged:
            return None
        if self.action == "block":
            return Decision.block(result.reason)  # refused; the model hears why
        if self.action == "escalate":
            return Decision.escalate(result.reason, message=ESCALATED_MESSAGE)
        return None

    def _remember(self, ctx: HookContext, call: ToolCall, decision: Decision | None) -> None:
        key = (ctx.state.run_id, call.id)
        with self._judged_lock:
            self._judged[key] = (content_hash(call.arguments), decision)
            while len(self._judged) > MAX_REMEMBERED_CALLS:
                self._judged.popitem(last=False)

    def _recall(self, ctx: HookContext, call: ToolCall) -> tuple[str, Decision | None] | None:
        with self._judged_lock:
            remembered = self._judged.pop((ctx.state.run_id, call.id), None)
        if remembered is None or remembered[0] != content_hash(call.arguments):
            return None
        return remembered

    def applies(self, ctx: HookContext) -> bool:
        if ctx.hook is Hook.AFTER_MODEL:
            return self._masks_replies or self._judges_args
        return ctx.hook in self._hooks and self.channel_of(ctx) in self.channels


def _size_hint(arguments: Mapping[str, Any] | list[Any] | tuple[Any, ...], depth: int = 0) -> int:
    """About how much text ``arguments`` hold, looking two levels down (cheap, and safe on
    arguments nested however deep): past that, as much as a long text."""
    if depth > 1:
        return OFF_LOOP_CHARS + 1
    size = 0
    values = arguments.values() if isinstance(arguments, Mapping) else arguments
    for value in values:
        if isinstance(value, str):
            size += len(value)
        elif isinstance(value, Mapping | list | tuple):
            size += _size_hint(value, depth + 1)
        else:
            size += 8
    return size


def _merged(results: list[GuardResult]) -> GuardResult:
    """One result for the parts of a reply (its text, each tool call's arguments)."""
    if len(results) == 1:
        return results[0]
    flagged = [r for r in results if r.flagged]
    scores = [r.score for r in results if r.score is not None]
    return GuardResult(
        flagged=bool(flagged),
        reason="; ".join(r.reason for r in flagged or results[:1]),
        score=max(scores) if scores else None,
        threshold=results[0].threshold,
        categories=tuple(dict.fromkeys(c for r in results for c in r.categories)),
        evidence=tuple(e for r in results for e in r.evidence),
    )
