"""The policy pipeline: hook points, decisions, and the ``Control`` base class.

Every agent action passes the same hooks in this order::

    on_input -> before_model -> after_model -> before_tool -> after_tool -> on_output

At each hook the pipeline asks its controls in order. ``Allow`` passes the payload on,
``Modify`` replaces it and continues, and ``Block``, ``Escalate`` and ``Defer`` stop there. A
decision with an ``outcome`` ends the run with that outcome (a limit, a loop, a policy stop).
``Respond`` answers in place of the call the hook guards (a cached or canned model response at
``before_model``, a tool result at ``before_tool``): the call is not made, the run goes on with
that answer. At ``before_model`` it stops there; at ``before_tool`` the controls after it still
judge the call, and a stop among them (authorization, last) wins over the answer. Non-allow
decisions are recorded as trace events on the span where they were taken.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from tether.controls.approvals import (
    APPROVAL_APPROVED,
    APPROVAL_BY,
    APPROVAL_ENTRY,
    Approval,
    settled,
)
from tether.core import AgentRef, Caller, EntryPoint, Outcome, TetherError, describe_exception
from tether.providers import Message, Model, ModelRequest, ModelResponse, ToolCall, Usage
from tether.providers.types import response_problem
from tether.spec import Limits, LoopBreakerConfig
from tether.tools import Tool, ToolResult
from tether.trace import semconv

if TYPE_CHECKING:
    from tether.controls.budgets import BudgetControl
    from tether.trace import RunRecorder


class Hook(StrEnum):
    """Where in a run a control is asked."""

    ON_INPUT = "on_input"
    BEFORE_MODEL = "before_model"
    AFTER_MODEL = "after_model"
    BEFORE_TOOL = "before_tool"
    AFTER_TOOL = "after_tool"
    ON_OUTPUT = "on_output"


class Verdict(StrEnum):
    """What a control decided."""

    ALLOW = "allow"
    MODIFY = "modify"
    BLOCK = "block"
    ESCALATE = "escalate"
    DEFER = "defer"
    RESPOND = "respond"


# Members read once: Python 3.11 reads an enum member off its class (``Hook.ON_INPUT``)
# through ``EnumType.__getattr__``'s slow attribute hook, about 4x a global's cost, and
# the run path reads a few dozen a run. (3.12 made the read fast.)
_BEFORE_TOOL = Hook.BEFORE_TOOL
_ALLOW, _MODIFY, _RESPOND = Verdict.ALLOW, Verdict.MODIFY, Verdict.RESPOND
_ESCALATE = Verdict.ESCALATE
_PASSING = (_ALLOW, _MODIFY, _RESPOND)
"""The verdicts that let a run go on."""

RESPOND_TYPES: dict[Hook, type] = {}
"""Filled below: what a ``Respond`` must carry at each hook that takes one."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A control's verdict with its reason. Build with the class methods."""

    verdict: Verdict
    reason: str = ""
    value: Any = None
    """``Modify``: the replacement payload. ``Respond``: the answer given in place of the call
    (a ``ModelResponse`` at ``before_model``, a ``ToolResult`` at ``before_tool``)."""
    outcome: Outcome | None = None
    """When set, the run ends with this outcome (``limit_exceeded``, ``loop_detected``...). A
    string is taken when it names an ``Outcome``."""
    message: str | None = None
    """What the user is told when this decision ends the run."""
    control: str = ""
    """Name of the control that decided (filled in by the pipeline)."""
    details: Mapping[str, Any] | None = None
    """Attributes recorded with the decision's trace event besides the standard ones (a
    guard's score, categories and evidence). Values must be JSON-ready."""

    def __post_init__(self) -> None:
        if self.outcome is not None and not isinstance(self.outcome, Outcome):
            object.__setattr__(self, "outcome", _as_outcome(self.outcome))

    @classmethod
    def allow(cls) -> Decision:
        return ALLOW

    @classmethod
    def modify(cls, value: Any, reason: str) -> Decision:
        return cls(Verdict.MODIFY, reason, value=value)

    @classmethod
    def respond(cls, value: Any, reason: str) -> Decision:
        """Answer in place of the guarded call: a ``ModelResponse`` at ``before_model`` (a cache
        hit, a canned answer), a ``ToolResult`` at ``before_tool``. The call is not made."""
        return cls(Verdict.RESPOND, reason, value=value)

    @classmethod
    def block(
        cls, reason: str, *, outcome: Outcome | str | None = None, message: str | None = None
    ) -> Decision:
        stop = None if outcome is None else _as_outcome(outcome)
        return cls(Verdict.BLOCK, reason, outcome=stop, message=message)

    @classmethod
    def escalate(cls, reason: str, *, message: str | None = None) -> Decision:
        return cls(Verdict.ESCALATE, reason, outcome=Outcome.ESCALATED, message=message)

    @classmethod
    def defer(cls, reason: str, *, message: str | None = None) -> Decision:
        return cls(Verdict.DEFER, reason, outcome=Outcome.DEFERRED, message=message)

    def with_details(self, details: Mapping[str, Any]) -> Decision:
        """This decision carrying ``details`` to its trace event."""
        return replace(self, details=details)

    @property
    def stops(self) -> bool:
        """True for Block, Escalate and Defer."""
        return self.verdict not in _PASSING


ALLOW = Decision(Verdict.ALLOW)


def _as_outcome(value: Outcome | str) -> Outcome:
    """A control written against the strings (``"blocked"``) still works; a misspelt outcome is
    an error where the control made it, so the run fails closed with ``control_error``."""
    try:
        return Outcome(value)
    except ValueError:
        known = ", ".join(Outcome)
        raise ValueError(f"unknown outcome {value!r}: one of {known}") from None


RESPOND_TYPES.update({Hook.BEFORE_MODEL: ModelResponse, Hook.BEFORE_TOOL: ToolResult})


def value_problem(value: object) -> str | None:
    """What makes a reply or tool result a control hands in (``Respond``, ``Modify``) unfit to
    go on with (None: nothing, or not a reply or tool result). Both are plain dataclasses
    whose constructors check nothing: content that is not text, or a token count past the
    store's columns, crashed the run past the pipeline instead of failing the control."""
    if isinstance(value, ModelResponse):
        return response_problem(value)
    if isinstance(value, ToolResult):
        if not isinstance(value.content, str):
            return f"content is a {type(value.content).__name__}, not text"
        if not isinstance(value.is_error, bool):
            return "is_error is not a bool"
    return None


class ToolRecordView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def args_hash(self) -> str: ...
    @property
    def result_hash(self) -> str: ...


class RunView(Protocol):
    """What controls may read of a run (``RunState`` provides it)."""

    @property
    def trace_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def agent_name(self) -> str: ...
    @property
    def turns(self) -> int: ...
    @property
    def tool_calls(self) -> int: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def unreported_tokens(self) -> int: ...
    @property
    def unreported_usd(self) -> float: ...
    @property
    def messages(self) -> list[Message]: ...
    @property
    def tool_history(self) -> Sequence[ToolRecordView]: ...


class LimitReached(TetherError):
    """A model call a control makes for the run (``HookContext.call_model``) would take the
    run past its token or cost limit. The pipeline takes ``decision`` (outcome
    ``limit_exceeded``) as the control's answer, ``fail_open`` or not: the call is not made."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class ModelCaller(Protocol):
    """``HookContext.call_model``: a model call a control makes on the run's behalf."""

    async def __call__(
        self,
        model: Model,
        request: ModelRequest,
        *,
        parent_id: str | None,
        control: str,
        shown: Sequence[Message] | None = None,
    ) -> ModelResponse: ...


GUARD_NAME = "tether.guard.name"
GUARD_FLAGGED = "tether.guard.flagged"
GUARD_SCORE = "tether.guard.score"
GUARD_CATEGORIES = "tether.guard.categories"
"""Attributes of a guard's decision (``Decision.details``) that the run's ``RunRisk`` reads."""


@dataclass(slots=True)
class RunRisk:
    """What the guards have found in a run so far, for controls that decide on it (Cedar
    policies read it as ``context.risk``). The run scope keeps one per run; the pipeline
    updates it from every guard verdict."""

    score: float = 0.0
    """The highest prompt-injection score of the run's texts so far (0 to 1)."""
    categories: set[str] = field(default_factory=set)
    """What guards flagged so far (``injection``, ``override``, ``pii.EMAIL_ADDRESS``...)."""

    def note(self, details: Mapping[str, Any]) -> None:
        """Take in one guard verdict's details."""
        guard = details.get(GUARD_NAME)
        if guard is None:
            return
        score = details.get(GUARD_SCORE)
        if guard == "injection" and isinstance(score, int | float):
            self.score = max(self.score, float(score))
        if details.get(GUARD_FLAGGED):
            self.categories.add(str(guard))
            found = details.get(GUARD_CATEGORIES) or ()
            self.categories.update(str(c) for c in found)


@dataclass(slots=True)
class HookContext:
    """What a control sees besides the payload."""

    hook: Hook
    state: RunView
    limits: Limits
    span_id: str | None = None
    """The span this decision belongs to (agent, model or tool span)."""
    tool: Tool | None = None
    """``before_tool``/``after_tool``: the tool being called (``None`` if unknown)."""
    call: ToolCall | None = None
    """``before_tool``/``after_tool``: the call as the model made it."""
    input_usd_per_mtok: float | None = None
    """``before_model``: the price of the model's input tokens (USD per million), ``None`` when
    it is not priced; for controls that estimate what the next call will cost."""
    loop_breaker: LoopBreakerConfig = field(default_factory=LoopBreakerConfig)
    """The spec's ``loop_breaker`` section (what ``LoopBreaker`` enforces)."""
    caller: Caller = field(default_factory=Caller)
    """Who the run is for: project, API key id, end user, roles and scopes."""
    entry_point: EntryPoint = EntryPoint.RUNTIME
    """How the run came in: the runtime, the model gateway, the tool gateway, the SDK."""
    agent: AgentRef | None = None
    """The agent the run belongs to (``None`` for a gateway request made without one)."""
    risk: RunRisk | None = None
    """What the guards have found in the run so far (``None`` outside a run)."""
    call_model: ModelCaller | None = None
    """Makes a model call on the run's behalf (an LLM judge's): a chat span under
    ``parent_id`` (pass ``span_id``) naming ``control``, priced, its tokens and cost added to
    the run's totals (not a turn). Raises ``LimitReached`` instead when the run's token or
    cost limit leaves no room for it. ``shown``: the messages the span stores in place of the
    request's (a judge's, without the text it judges, which its own span keeps as the guards
    leave it). ``None`` outside a run: call the model directly."""
    approvals: dict[str, Approval] | None = None
    """``before_tool`` of a resumed run: people's answers to the calls it was paused on, by
    call id. An escalation of such a call is settled by its answer (once) instead of pausing
    the run again (``tether.controls.approvals``)."""
    budgets: BudgetControl | None = None
    """The budgets and rate limits of the run's model calls (``None``: none): what Cedar's
    ``context.budget`` reads the room left on (``BudgetControl.left``)."""
    carried: tuple[int, float] | None = None
    """A resumed run: the tokens and US dollars the runs before it in its conversation used
    (``None`` otherwise). Its run budgets count them, as its limits do: an approval does not
    start the conversation's run budget afresh."""

    @property
    def usage(self) -> Usage:
        """The run's token usage so far."""
        return self.state.usage

    @property
    def cost_usd(self) -> float:
        """The run's cost so far (priced calls only)."""
        return self.state.cost_usd


HOOK_CONTEXT_FIELDS = (
    "hook", "state", "limits", "span_id", "tool", "call", "input_usd_per_mtok", "loop_breaker",
    "caller", "entry_point", "agent", "risk", "call_model", "approvals", "budgets", "carried",
)  # fmt: skip
"""``HookContext``'s fields in order: the run scope makes one per hook positionally."""
if tuple(f.name for f in fields(HookContext)) != HOOK_CONTEXT_FIELDS:  # pragma: no cover
    raise RuntimeError("HookContext's fields moved: update HOOK_CONTEXT_FIELDS and its makers")


class Control:
    """Base class for controls: override the hooks you need; the rest allow.

    ``record_allow`` says whether an Allow from this control is worth a trace event (guards and
    authorization: yes; a limit that was not reached: no).
    """

    name = "control"
    record_allow = False
    quotes_text = True
    """Whether this control's reasons and details may quote the text it judged (then they are
    masked as the run's masking guards mask before they are stored). A guard whose evidence
    is kinds and offsets only says ``False``, and its events are stored as they are."""
    fail_open = False
    """If the control itself fails: ``False`` (default) stops the run with outcome
    ``control_error``; ``True`` records the failure and lets the action through."""

    def applies(self, ctx: HookContext) -> bool:
        """Whether this control judges at ``ctx`` (default: at every hook it overrides). A
        control that does not apply is not asked and leaves no event: a guard of ``document``
        results says no to the results of other tools. Keep it cheap; it runs at every hook
        the control overrides. Raising fails closed, as a hook does."""
        return True

    async def on_input(self, ctx: HookContext, text: str) -> Decision:
        return ALLOW

    async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
        return ALLOW

    async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
        return ALLOW

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        return ALLOW

    async def after_tool(self, ctx: HookContext, result: ToolResult) -> Decision:
        return ALLOW

    async def on_output(self, ctx: HookContext, text: str) -> Decision:
        return ALLOW


_HOOK_NAMES = {h.value for h in Hook}
_HOOK_LIKE = re.compile(r"^(on|before|after)_[a-z_]+$")


def check_control(control: object, where: str) -> None:
    """Catch the usual mistakes when a control is registered, not when a run silently
    ignores it: a class instead of an instance, a sync hook, a misspelled hook."""
    if not isinstance(control, Control):
        what = f"the class {control.__name__}" if isinstance(control, type) else repr(control)
        raise TetherError(
            f"{where} is {what}, not a Control instance",
            hint="pass an instance, e.g. controls=[MyControl()]",
        )
    cls = type(control)
    for name in dir(cls):
        if name in _HOOK_NAMES:
            if getattr(cls, name) is not getattr(Control, name) and not (
                inspect.iscoroutinefunction(getattr(cls, name))
            ):
                raise TetherError(f"control '{control.name}': {name} must be 'async def'")
        elif _HOOK_LIKE.match(name) and not hasattr(Control, name):
            close = difflib.get_close_matches(name, _HOOK_NAMES, n=1, cutoff=0.8)
            if close:  # almost certainly a typo that would silently never run
                raise TetherError(
                    f"control '{control.name}' defines {name}(), which is not a hook; "
                    f"did you mean {close[0]}()?",
                    hint=f"hooks are: {', '.join(h.value for h in Hook)}",
                )


class Pipeline:
    """Runs the controls at each hook and records their decisions."""

    def __init__(
        self,
        controls: list[Control],
        recorder: RunRecorder | None = None,
        *,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        for i, control in enumerate(controls):
            check_control(control, f"controls[{i}]")
        self.controls = list(controls)
        self.recorder = recorder
        self.redact = redact
        """Masks what the decisions' events and audit entries quote (a reason, evidence, a
        judge's reply) as the run's masking guards mask it: they may quote the judged text."""
        # Only controls that override a hook are asked at it: a pipeline of many controls
        # costs nothing at hooks they do not use. Each comes with whether it narrows that
        # further (overrides ``applies``).
        self._by_hook: dict[Hook, list[tuple[Control, bool]]] = {
            hook: [
                (c, type(c).applies is not Control.applies)
                for c in self.controls
                if getattr(type(c), hook.value) is not getattr(Control, hook.value)
            ]
            for hook in Hook
        }

    def asked_at(self, *hooks: Hook) -> list[Control]:
        """The controls asked at any of ``hooks`` (those that override them), in order."""
        return [c for c in self.controls if any(c is a for h in hooks for a, _ in self._by_hook[h])]

    def asks(self, hook: Hook) -> bool:
        """Whether any control is asked at ``hook`` (if none, the caller need not build a
        ``HookContext`` for it: ``check`` would allow the payload unchanged)."""
        return bool(self._by_hook[hook])

    def with_recorder(self, recorder: RunRecorder, *, stored: bool = True) -> Pipeline:
        """The same controls recording into one run's trace (the hook table is shared);
        ``stored=False``: the trace goes nowhere, so what it quotes need not be masked."""
        clone = object.__new__(Pipeline)
        clone.controls, clone.recorder, clone._by_hook = self.controls, recorder, self._by_hook
        clone.redact = self.redact if stored else None
        return clone

    async def check(self, ctx: HookContext, payload: Any) -> tuple[Decision, Any]:
        """Ask each control at ``ctx.hook``; return the deciding decision and the (possibly
        modified) payload. The payload is the input or output text, the ``ModelRequest``,
        the ``ModelResponse``, the ``ToolCall`` or the ``ToolResult``."""
        decision = ALLOW
        responded: Decision | None = None
        for control, narrows in self._by_hook[ctx.hook]:
            d = await self._ask(control, ctx, payload, narrows)
            if d is None or (d.verdict is _ALLOW and not control.record_allow):
                continue
            d = replace(d, control=control.name)
            if d.verdict is _ESCALATE and ctx.approvals and ctx.hook is _BEFORE_TOOL:
                d = settled(d, ctx.call, ctx.approvals)
            self._record(ctx, d, control.quotes_text)
            if d.details and ctx.risk is not None:
                ctx.risk.note(d.details)
            if d.stops:
                return d, payload
            if d.verdict is _RESPOND:
                if ctx.hook is not _BEFORE_TOOL:
                    return d, payload
                # A tool call answered in its place is still judged by the controls after
                # the one that answered, and a stop among them wins: a cache control first
                # must not hand a caller the result of a call that authorization (last in
                # the pipeline) refuses them. The first answer stands.
                responded = responded or d
                continue
            if d.verdict is _MODIFY and responded is None:
                payload = d.value
                decision = d
        return responded or decision, payload

    async def _ask(
        self, control: Control, ctx: HookContext, payload: Any, narrows: bool = False
    ) -> Decision | None:
        """One control's decision (``None``: it does not apply here). A control that raises,
        or answers with something that is not a Decision (or a Modify of the wrong type), fails
        closed: the run stops, unless the control says ``fail_open``, in which case its failure
        is recorded and it allows."""
        try:
            if narrows and not control.applies(ctx):
                return None
            d = await getattr(control, ctx.hook)(ctx, payload)
            if d is ALLOW:  # the usual answer, and nothing to check in it
                return d
            if not isinstance(d, Decision):
                raise TypeError(f"returned {type(d).__name__}, not a Decision")
            if not isinstance(d.verdict, Verdict):
                raise TypeError(f"verdict {d.verdict!r} is not a Verdict")
            if not isinstance(d.reason, str) or not isinstance(d.message, str | None):
                # (a None reason crashed the run past the step where a guard masks what
                # the trace keeps of reasons)
                raise TypeError(
                    f"the decision's reason ({type(d.reason).__name__}) and message "
                    f"({type(d.message).__name__}) must be text"
                )
            if d.verdict is Verdict.MODIFY and not isinstance(d.value, type(payload)):
                raise TypeError(
                    f"Modify at {ctx.hook.value} needs a {type(payload).__name__}, "
                    f"got {type(d.value).__name__}"
                )
            if d.verdict is Verdict.RESPOND:
                wanted = RESPOND_TYPES.get(ctx.hook)
                if wanted is None:
                    takes = " and ".join(h.value for h in RESPOND_TYPES)
                    where = ctx.hook.value
                    raise TypeError(f"Respond is not possible at {where} (only at {takes})")
                if not isinstance(d.value, wanted):
                    raise TypeError(
                        f"Respond at {ctx.hook.value} needs a {wanted.__name__}, "
                        f"got {type(d.value).__name__}"
                    )
            if d.verdict is _RESPOND or d.verdict is _MODIFY:
                problem = value_problem(d.value)
                if problem is not None:
                    what = type(d.value).__name__
                    verdict = d.verdict.value.capitalize()
                    raise TypeError(f"{verdict} at {ctx.hook.value}: the {what} {problem}")
            return d
        except LimitReached as reached:  # the run's budget, not a failure of the control
            return reached.decision
        except Exception as exc:
            reason = f"control failed: {describe_exception(exc)}"
            if control.fail_open:
                failed = Decision(Verdict.ALLOW, reason, control=control.name)
                self._record(ctx, failed)
                return None  # recorded: nothing more to say

            return Decision.block(
                reason,
                outcome=Outcome.CONTROL_ERROR,
                message="I'm sorry, I can't complete this request right now: a safety check "
                "failed. Please try again later.",
            )

    def _record(self, ctx: HookContext, d: Decision, quotes_text: bool = True) -> None:
        if self.recorder is None:
            return
        if self.redact is not None and quotes_text:
            d = _redacted(d, self.redact)
        attrs: dict[str, Any] = {
            semconv.TETHER_CONTROL_NAME: d.control,
            semconv.TETHER_CONTROL_HOOK: ctx.hook.value,
            semconv.TETHER_DECISION: d.verdict.value,
            semconv.TETHER_DECISION_REASON: d.reason,
        }
        if d.outcome:
            attrs[semconv.TETHER_RUN_OUTCOME] = d.outcome.value
        if d.details:
            attrs = {**d.details, **attrs}  # the standard attributes cannot be overridden
        self.recorder.event(ctx.span_id, semconv.EVENT_CONTROL_DECISION, attrs)
        # Every non-allow decision goes to the audit log, and so does a call let through by a
        # person's approval.
        if d.verdict is not Verdict.ALLOW or (d.details and APPROVAL_BY in d.details):
            details: dict[str, Any] = {
                "control": d.control,
                "hook": ctx.hook.value,
                "verdict": d.verdict.value,
                "reason": d.reason,
            }
            if d.outcome:
                details["outcome"] = d.outcome.value
            if ctx.call is not None:
                details["tool"] = ctx.call.name
            if d.details and APPROVAL_BY in d.details:
                details["approval"] = {
                    "by": d.details[APPROVAL_BY],
                    "approved": d.details[APPROVAL_APPROVED],
                    "entry_id": d.details[APPROVAL_ENTRY],
                }
            self.recorder.audit("decision", ctx.span_id, _actor(ctx), details)


_UNQUOTED = frozenset({GUARD_NAME, GUARD_FLAGGED, GUARD_SCORE, GUARD_CATEGORIES})
"""Detail attributes that never quote a judged text."""


def _redacted(d: Decision, redact: Callable[[str], str]) -> Decision:
    """``d`` with its reason and the texts its details quote masked by ``redact``. The texts
    are masked together first (one pass in the common case: nothing to mask), one by one
    only when something was found."""
    texts: list[str] = [d.reason]
    details = d.details or {}
    for key, value in details.items():
        if key not in _UNQUOTED:
            _strings(value, texts)
    joined = "\x00".join(texts)
    if redact(joined) == joined:
        return d
    masked = {
        key: value if key in _UNQUOTED else _mask(value, redact) for key, value in details.items()
    }
    return replace(d, reason=redact(d.reason), details=masked if d.details is not None else None)


def _strings(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _strings(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings(item, into)


def _mask(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _mask(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, redact) for v in value]
    return value


def _actor(ctx: HookContext) -> dict[str, Any]:
    """Who a decision was taken for: the caller and the agent."""
    caller = ctx.caller
    actor: dict[str, Any] = {
        "project": caller.project,
        "key_id": caller.key_id,
        "end_user": caller.end_user,
        "entry_point": ctx.entry_point.value,
    }
    if ctx.agent is not None:
        actor["agent"] = ctx.agent.name
        actor["agent_version"] = ctx.agent.version
    return actor
