"""What every guard control shares: channels mapped onto hooks, actions onto decisions, and a
verdict recorded with its evidence.

A guard judges one text of one channel and says what it found (a ``GuardResult``); the base
class turns that into the pipeline's decision for the configured action:

============  =================================  ==========================================
channel       hook                               ``block``
============  =================================  ==========================================
user          ``on_input``                       the run ends (outcome ``blocked``)
tool_output   ``after_tool``                     the result is withheld from the model, which
                                                 is told why; the run goes on
document      ``after_tool`` of the tools in     as ``tool_output``
              ``documents``
output        ``on_output``                      the answer is replaced by an apology (outcome
                                                 ``blocked``)
tool_args     ``after_model``, ``before_tool``   the call is refused (the model is told why);
              (detectors only: ``PiiGuard``)     the run goes on
============  =================================  ==========================================

``mask`` replaces the parts found (guards that find spans), ``escalate`` pauses the run for a
person, ``log`` only records. Every verdict, allow included, is a trace event on the span where
it was taken (the run's root span for input and output, the tool's span for its result), with
the score, the categories and evidence snippets (control characters escaped, clipped).
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from tether.controls.pipeline import (
    GUARD_CATEGORIES,
    GUARD_FLAGGED,
    GUARD_NAME,
    GUARD_SCORE,
    Control,
    Decision,
    Hook,
    HookContext,
    Pipeline,
    Verdict,
)
from tether.core import Outcome
from tether.core.text import clip_between_words
from tether.tools import ToolResult

Channel = Literal["user", "tool_output", "document", "output", "tool_args"]
CHANNELS: tuple[Channel, ...] = ("user", "tool_output", "document", "output", "tool_args")
TEXT_CHANNELS: tuple[Channel, ...] = ("user", "tool_output", "document", "output")
"""The channels of whole texts, which every guard judges; ``tool_args`` (a tool call's
arguments, JSON) only the detectors (``PiiGuard``)."""
Action = Literal["block", "mask", "hash", "escalate", "log"]
CHANNEL_HOOKS: dict[Channel, Hook] = {
    "user": Hook.ON_INPUT,
    "tool_output": Hook.AFTER_TOOL,
    "document": Hook.AFTER_TOOL,
    "output": Hook.ON_OUTPUT,
    "tool_args": Hook.BEFORE_TOOL,
}
"""The hook each channel is judged at (``tool_args`` also as the reply that holds the calls
arrives: ``after_model``)."""

# Attributes of a guard's decision event (besides tether.control.* and tether.decision.*);
# the run's risk reads the four defined with it in the pipeline.
GUARD_CHANNEL = "tether.guard.channel"
GUARD_ACTION = "tether.guard.action"
GUARD_THRESHOLD = "tether.guard.threshold"
GUARD_EVIDENCE = "tether.guard.evidence"
GUARD_LATENCY_MS = "tether.guard.latency_ms"

MAX_SNIPPET_CHARS = 160
MAX_EVIDENCE = 8
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)

BLOCKED_INPUT_MESSAGE = "I'm sorry, I can't help with that request."
BLOCKED_OUTPUT_MESSAGE = "I'm sorry, I can't share that answer."
ESCALATED_MESSAGE = (
    "Your request needs a person's review; we'll follow up once it has been reviewed."
)


def safe_snippet(text: str, limit: int = MAX_SNIPPET_CHARS) -> str:
    """``text`` fit for a trace: control, invisible and bidirectional characters written as
    ``\\uXXXX``, clipped to ``limit`` characters with ``…`` between two words (the masking of
    what a decision quotes comes after: a value cut in half would escape it)."""
    clipped = text if len(text) <= limit else clip_between_words(text, limit - 1) + "…"
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", clipped)


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What a guard found in one text."""

    flagged: bool
    """The text is what the guard looks for (the score reached the threshold, a term matched)."""
    reason: str
    """One line saying what was found, or that nothing was (the model may be told it)."""
    score: float | None = None
    """The guard's score in [0, 1], for guards that score texts."""
    threshold: float | None = None
    """The threshold the score was held against."""
    categories: tuple[str, ...] = ()
    """What was found, by kind (``override``, ``deny_list.term``...)."""
    evidence: tuple[Mapping[str, Any], ...] = ()
    """Where and what, for the trace (snippets pass through ``safe_snippet``)."""
    masked: str | None = None
    """The text with what was found replaced, for ``mask``; ``None`` when the guard cannot."""
    decision: Decision | None = None
    """A decision to take as it is, whatever the action (a Python guard's own)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """More attributes for the event (a judge's token usage)."""


class GuardOptions(TypedDict, total=False):
    """What every guard takes besides its own settings (see ``GuardControl``)."""

    channels: Collection[Channel] | None
    action: Action
    documents: Collection[str]
    fail_open: bool
    name: str | None


class GuardControl(Control, ABC):
    """Base class of the guards: judges the texts of its channels with :meth:`judge` and acts.

    ``channels`` are the channels it runs on; ``documents`` the tools whose results are the
    ``document`` channel (the others' are ``tool_output``); ``action`` what it does with a
    flagged text; ``fail_open`` lets texts through when the guard itself fails."""

    record_allow = True
    guard = "guard"
    """The guard's kind, as a spec names it (``injection``)."""
    supported_channels: tuple[Channel, ...] = TEXT_CHANNELS
    """The channels this guard can judge."""
    default_channels: tuple[Channel, ...] = TEXT_CHANNELS
    actions: tuple[Action, ...] = ("block", "escalate", "log")
    """The actions this guard can take."""

    def __init__(self, **options: Unpack[GuardOptions]) -> None:
        channels = options.get("channels")
        action = options.get("action", "block")
        chosen = tuple(channels) if channels is not None else self.default_channels
        unknown = [c for c in chosen if c not in self.supported_channels]
        if unknown or not chosen:
            raise ValueError(
                f"the {self.guard} guard's channels must be some of "
                f"{', '.join(self.supported_channels)}, got {chosen!r}"
            )
        if action not in self.actions:
            raise ValueError(
                f"the {self.guard} guard cannot {action!r}; use {', '.join(self.actions)}"
            )
        self.channels = frozenset(chosen)
        self.action: Action = action
        self.documents = frozenset(options.get("documents", ()))
        self.fail_open = options.get("fail_open", False)
        self.name = options.get("name") or f"guard.{self.guard}"
        self._hooks = frozenset(CHANNEL_HOOKS[c] for c in self.channels)

    @abstractmethod
    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        """What the guard finds in ``text``. Raise when it cannot judge (the run fails closed
        unless ``fail_open``). ``ctx`` is ``None`` outside a run (``tether scan``)."""

    def redactor(self, channel: Channel) -> Callable[[str], str] | None:
        """A function masking what this guard masks on ``channel``, for texts stored before
        the guard has judged them (the run's input, recorded when the run starts); ``None``
        when the guard masks nothing there."""
        return None

    def arguments_redactor(self) -> Callable[[Mapping[str, Any]], Mapping[str, Any]] | None:
        """A function masking what this guard masks in a tool call's arguments, for the
        arguments a tool span stores before the guard has judged them; ``None`` when the
        guard does not judge ``tool_args`` (or only logs there)."""
        return None

    # -- pipeline ---------------------------------------------------------------------------

    def channel_of(self, ctx: HookContext) -> Channel:
        """The channel of the text at ``ctx`` (a model's reply, at ``after_model``, is
        ``output``)."""
        if ctx.hook is Hook.ON_INPUT:
            return "user"
        if ctx.hook in (Hook.ON_OUTPUT, Hook.AFTER_MODEL):
            return "output"
        if ctx.hook is Hook.BEFORE_TOOL:
            return "tool_args"
        name = ctx.call.name if ctx.call is not None else ""
        return "document" if name in self.documents else "tool_output"

    def applies(self, ctx: HookContext) -> bool:
        return ctx.hook in self._hooks and self.channel_of(ctx) in self.channels

    async def on_input(self, ctx: HookContext, text: str) -> Decision:
        return await self._decide(ctx, "user", text, text)

    async def after_tool(self, ctx: HookContext, result: ToolResult) -> Decision:
        return await self._decide(ctx, self.channel_of(ctx), result.content, result)

    async def on_output(self, ctx: HookContext, text: str) -> Decision:
        return await self._decide(ctx, "output", text, text)

    async def _decide(
        self, ctx: HookContext, channel: Channel, text: str, payload: str | ToolResult
    ) -> Decision:
        started = time.perf_counter()
        result = await self.judge(text, channel, ctx)
        details = self._details(channel, result, (time.perf_counter() - started) * 1000)
        decision = result.decision
        if decision is not None:
            if (
                decision.verdict is Verdict.MODIFY
                and isinstance(payload, ToolResult)
                and isinstance(decision.value, str)
            ):  # a guard written for texts rewrites a tool result's text
                decision = replace(decision, value=ToolResult(decision.value, payload.is_error))
            return decision.with_details(details)
        if not result.flagged:
            return Decision(Verdict.ALLOW, result.reason, details=details)
        return self._act(channel, result, payload).with_details(details)

    def _act(self, channel: Channel, result: GuardResult, payload: str | ToolResult) -> Decision:
        reason, action = result.reason, self.action
        if action == "log":
            return Decision(Verdict.ALLOW, f"logged: {reason}")
        if action == "escalate":
            return Decision.escalate(reason, message=ESCALATED_MESSAGE)
        if action in ("mask", "hash") and result.masked is not None:
            if isinstance(payload, ToolResult):  # the raw value (``data``) may hold what was found
                return Decision.modify(ToolResult(result.masked, payload.is_error), reason)
            return Decision.modify(result.masked, reason)
        if action in ("mask", "hash"):
            raise RuntimeError(f"the {self.guard} guard found nothing it could {action}")
        if channel in ("tool_output", "document"):
            return Decision.block(reason)  # withheld from the model; the run goes on
        return Decision.block(
            reason, outcome=Outcome.BLOCKED, message=self.blocked_message(channel)
        )

    def blocked_message(self, channel: Channel) -> str:
        """What the user is told when this guard blocks their message or the answer."""
        return BLOCKED_INPUT_MESSAGE if channel == "user" else BLOCKED_OUTPUT_MESSAGE

    def _details(self, channel: str, result: GuardResult, latency_ms: float) -> dict[str, Any]:
        """The event attributes of a verdict on ``channel`` (``output+tool_args`` for a reply
        whose text and tool calls were judged together)."""
        details: dict[str, Any] = {
            GUARD_NAME: self.guard,
            GUARD_CHANNEL: channel,
            GUARD_ACTION: self.action,
            GUARD_FLAGGED: result.flagged,
            GUARD_LATENCY_MS: round(latency_ms, 3),
        }
        if result.score is not None:
            details[GUARD_SCORE] = round(result.score, 4)
        if result.threshold is not None:
            details[GUARD_THRESHOLD] = result.threshold
        if result.categories:
            details[GUARD_CATEGORIES] = list(result.categories)
        if result.evidence:
            details[GUARD_EVIDENCE] = [
                {k: safe_snippet(v) if isinstance(v, str) else v for k, v in e.items()}
                for e in result.evidence[:MAX_EVIDENCE]
            ]
        details.update(result.details)
        return details


T = TypeVar("T")


def holds_answer_text(pipeline: Pipeline) -> bool:
    """Whether a control may block or change the answer once it is whole: a guard on the
    ``output`` channel whose action is not ``log``, or any other control that is asked about
    the answer (``on_output``) or about each whole reply (``after_model``: it may mask the
    reply's text, which is the answer). Text streamed before such a control has judged it
    would show the user what it blocks or masks, so a run holds back its answer's text deltas
    then."""
    return any(
        not isinstance(control, GuardControl)
        or ("output" in control.channels and control.action != "log")
        for control in pipeline.asked_at(Hook.ON_OUTPUT, Hook.AFTER_MODEL)
    )


def text_redactor(controls: Sequence[Control], channel: str | None) -> Callable[[str], str] | None:
    """One function applying, in order, what each control masks on ``channel``; ``None`` when
    no control masks there. A masking that fails raises (the caller stores a note instead of
    the text).

    ``channel=None``: what each control masks on any of its channels, for the texts the
    guards' own decisions quote (reasons, evidence); a control whose masking fails there is
    passed over (it is a detector that cannot detect: its own verdict fails the run closed,
    and the reason saying so must still be stored)."""
    found: list[Callable[[str], str]] = []
    for control in controls:
        redactor = getattr(control, "redactor", None)
        if not callable(redactor):
            continue
        channels = (channel,) if channel is not None else tuple(getattr(control, "channels", ()))
        for name in channels:
            masking = redactor(name)
            if masking is not None:
                found.append(masking if channel is not None else _lenient(masking))
                break
    return _chained(found)


def _lenient(masking: Callable[[str], str]) -> Callable[[str], str]:
    def mask(text: str) -> str:
        try:
            return masking(text)
        except Exception:
            return text

    return mask


def arguments_redactor(
    controls: Sequence[Control],
) -> Callable[[Mapping[str, Any]], Mapping[str, Any]] | None:
    """One function applying, in order, what each control masks in tool-call arguments."""
    found: list[Callable[[Mapping[str, Any]], Mapping[str, Any]]] = []
    for control in controls:
        redactor = getattr(control, "arguments_redactor", None)
        masking = redactor() if callable(redactor) else None
        if masking is not None:
            found.append(masking)
    return _chained(found)


def _chained(functions: list[Callable[[T], T]]) -> Callable[[T], T] | None:
    if not functions:
        return None
    if len(functions) == 1:
        return functions[0]

    def chained(value: T) -> T:
        for function in functions:
            value = function(value)
        return value

    return chained
