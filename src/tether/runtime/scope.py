"""The run scope: the one place a run lives, whatever its entry point.

A ``Harness`` holds what runs are opened over (the model chain, the tools, the controls, the
limits, the trace sink, the pricing table); it is built once per agent or gateway route.
``Harness.open_run`` gives a ``RunScope``, which owns one run: its record, its root span, its
``RunState``, its checkpoints, the outcome of each stop and the final record. The scope offers
the steps every entry point is made of, each passing the pipeline, leaving spans and returning
a ``Step``::

    async with harness.open_run("What is my order status?", agent="support") as run:
        step = await run.input()
        while not step.stopped:
            reply = await run.model_call()
            if reply.stopped: break
            if not reply.value.tool_calls:
                await run.output(reply.value.content)
                break
            step = await run.tool_calls(reply.value.tool_calls)
    result = run.result()

ReAct and plan-then-execute (``runtime/paradigms.py``) are such orderings; so is a gateway
request (input, one model call, output) and a tool-gateway call (one tool call).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, cast, overload

from tether.controls import (
    Control,
    Decision,
    Hook,
    HookContext,
    LimitsControl,
    LoopBreaker,
    Pipeline,
    Verdict,
)
from tether.controls.approvals import Approval
from tether.controls.budget_ledger import BudgetLedger
from tether.controls.budgets import BudgetControl, build_budgets
from tether.controls.guard_base import arguments_redactor, holds_answer_text, text_redactor
from tether.controls.limits import limit_message
from tether.controls.pipeline import RunRisk
from tether.core import (
    AgentRef,
    Caller,
    Conflict,
    EntryPoint,
    Outcome,
    ProviderError,
    Settings,
    TetherError,
    describe_exception,
    monotonic,
    new_span_id,
    new_trace_id,
    now_ns,
    scrub_surrogates,
)
from tether.core.caller import RunKind
from tether.core.settings import max_payload_chars_from_env, project_from_env
from tether.core.text import clip_text
from tether.providers import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
)
from tether.runtime.chain import (
    ModelChain,
    StreamHandler,
    control_model_call,
    error_attributes,
    model_step,
    withheld,
)
from tether.runtime.deadline import Deadline, DeadlineQueue
from tether.runtime.result import RunResult
from tether.runtime.state import RunState
from tether.runtime.steps import Step, Stop
from tether.runtime.telemetry import MessageCache, output_messages
from tether.runtime.tool_step import tools_step
from tether.spec import BudgetsConfig, Limits, LoopBreakerConfig
from tether.spec.budgets import DEFAULT_MAX_OUTPUT_TOKENS
from tether.store import RunRecord, SpanRecord
from tether.tools import Tool, build_tools, definition_of
from tether.trace import PricingTable, semconv
from tether.trace.pricing import pricing_from_env
from tether.trace.sink import NullSink

if TYPE_CHECKING:
    from tether.store import StoreReader
    from tether.trace import RunRecorder, TraceSink

TraceTarget: TypeAlias = "TraceSink | str | bool | None"
"""Where traces go: ``None``/``True`` the configured store (``TETHER_DATABASE_URL`` or the
SQLite store in ``TETHER_HOME``), a database URL, any ``TraceSink``, or ``False`` for none."""
T = TypeVar("T")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_INVALID_TRACE_ID = "0" * 32
RESUMED_FROM = "resumed_from"
"""Metadata of a resumed run (and attribute of its record): the paused run it goes on from."""
# Enum members read once (see ``tether.controls.pipeline``: slow on Python 3.11).
_ON_INPUT, _ON_OUTPUT, _BEFORE_TOOL = Hook.ON_INPUT, Hook.ON_OUTPUT, Hook.BEFORE_TOOL
_FINAL_ANSWER = Outcome.FINAL_ANSWER
PLANNER_NOTE = (
    "Plan first: reply with every tool call needed to answer, all at once. You will then get "
    "their results and write the answer."
)


def resolve_sink(trace: TraceTarget) -> TraceSink:
    # The writer (and with it the store and SQLAlchemy) loads when a harness is built, not
    # when this module is imported: `tether validate` never needs it.
    from tether.trace import writer_for

    if trace is False:
        return NullSink()
    if trace is None or trace is True:
        return _exported(writer_for(Settings.from_env().database_url))
    if isinstance(trace, str):
        return _exported(writer_for(trace))
    return trace


def _exported(sink: TraceSink) -> TraceSink:
    """``sink``, also exporting over OTLP when ``TETHER_OTLP_ENDPOINT`` is set (the
    OpenTelemetry SDK loads only then)."""
    if not os.environ.get("TETHER_OTLP_ENDPOINT", "").strip():
        return sink
    from tether.trace.otlp_export import with_otlp_export

    return with_otlp_export(sink)


class Harness:
    """What runs are opened over: models, tools, controls, limits, trace sink, pricing.

    ``models`` is the chain a model call tries in order (primary, then fallbacks). ``tools``
    are ``Tool`` objects or plain functions (a function becomes a ``FunctionTool``); giving
    one is the grant to call it. The limits control and the loop breaker come first in the
    pipeline, then ``controls`` (a ``LoopBreaker`` among them replaces the built-in one).
    ``trace`` is a ``TraceTarget``. ``degraded_answer`` is
    what a run answers when every model failed for a reason that may pass (its outcome is
    still ``error``). ``budgets`` (a spec's ``budgets`` section, or a ``BudgetControl``) checks
    every model call against token and US-dollar budgets and rate limits, last in the
    pipeline; its counters live in ``budget_ledger`` if given, else where the section says
    (the SQL backend uses the trace store's database).
    """

    def __init__(
        self,
        *,
        models: Model | Sequence[Model] = (),
        tools: Mapping[str, Tool] | Sequence[Tool | Callable[..., Any]] = (),
        controls: Sequence[Control] = (),
        limits: Limits | None = None,
        loop_breaker: LoopBreakerConfig | None = None,
        settings: ModelSettings | None = None,
        trace: TraceTarget = None,
        pricing: PricingTable | None = None,
        degraded_answer: str | None = None,
        budgets: BudgetsConfig | BudgetControl | None = None,
        budget_ledger: BudgetLedger | None = None,
    ) -> None:
        self.chain = ModelChain(models)
        self.tools: dict[str, Tool] = (
            dict(tools) if isinstance(tools, Mapping) else build_tools((), provided=tools)
        )
        self.tool_defs = [definition_of(t) for t in self.tools.values()]
        self.limits = limits or Limits()
        self.loop_breaker = loop_breaker or LoopBreakerConfig()
        self.settings = settings or ModelSettings()
        self.sink = resolve_sink(trace)
        self.pricing = pricing or pricing_from_env()
        self.budget = self._budget_control(budgets, budget_ledger)
        """The budgets and rate limits of every model call (``None``: none)."""
        # The budgets last: a reservation is made only for a call no control stops.
        budget: list[Control] = [] if self.budget is None else [self.budget]
        # A LoopBreaker among ``controls`` (``LoopBreaker(exempt_tools=...)``: its values
        # override the spec's) takes the built-in one's place: beside it, the built-in one,
        # first in the pipeline, would stop the run before the given one was asked.
        given = [c for c in controls if isinstance(c, LoopBreaker)]
        breaker = given[0] if given else LoopBreaker()
        others = [c for c in controls if c is not breaker]
        self.controls: list[Control] = [LimitsControl(), breaker, *others, *budget]
        self.redact_stored = text_redactor(self.controls, None)
        """What the trace stores of texts the guards' decisions quote (reasons, evidence, a
        judge's reply): masked as every masking guard of the run masks, whatever channel."""
        self.pipeline = Pipeline(self.controls, redact=self.redact_stored)
        self.degraded_answer = degraded_answer
        """The answer when the chain failed for a reason that may pass (every model down,
        timed out or behind an open circuit), in place of the built-in apology."""
        self._deadlines: tuple[asyncio.AbstractEventLoop | None, dict[float, DeadlineQueue]] = (
            None,
            {},
        )
        """The deadline queues of the event loop last used (by duration)."""
        self.redact_input = text_redactor(self.controls, "user")
        """What the trace stores of a run's input, when a control masks the user's message
        (a guard masking personal data): the run record is written before ``on_input``."""
        self.guards_answers = self.pipeline.asks(Hook.ON_OUTPUT)
        """Whether controls judge the answer (``on_output``): the chat span of a reply that
        may be the answer is then written once they have (see ``RunScope.hold_reply``)."""
        self.holds_streamed_text = holds_answer_text(self.pipeline)
        """Whether a streamed reply's text is held back (its deltas and its end event; tool-call
        deltas still stream): a control may block or mask the answer, and streamed text cannot
        be taken back (an output guard that blocks a secret must not have shown it first)."""
        self.redact_output = text_redactor(self.controls, "output")
        """What the trace stores of a reply no control has judged (a stream cut midway), when
        a control masks the ``output`` channel."""
        self.redact_arguments = arguments_redactor(self.controls)
        """What a tool span stores of a call's arguments, when a control masks tool-call
        arguments: the span is opened before ``before_tool`` has judged them."""
        self.max_output_tokens = (
            DEFAULT_MAX_OUTPUT_TOKENS
            if self.budget is None
            else self.budget.config.max_output_tokens
        )
        """A model call's output tokens at their most when its request sets no ``max_tokens``
        (the budgets section's ``max_output_tokens``, else 4,096): what a call whose usage
        went unreported counts against the run's limits, with its input estimate."""

    def _budget_control(
        self, budgets: BudgetsConfig | BudgetControl | None, ledger: BudgetLedger | None
    ) -> BudgetControl | None:
        if budgets is None or isinstance(budgets, BudgetControl):
            return budgets
        if not (budgets.limits or budgets.rate_limits or budgets.policy):
            return None
        return build_budgets(
            budgets,
            models=[m.name for m in self.chain],
            pricing=self.pricing,
            run_timeout_s=self.limits.timeout_s,
            database_url=_store_url(self.sink),
            ledger=ledger,
        )

    def deadline(self, timeout_s: float) -> Deadline:
        """A deadline ``timeout_s`` from now on the running event loop, its timer shared with
        this harness's other deadlines of that duration (see ``runtime/deadline.py``)."""
        loop = asyncio.get_running_loop()
        slot = self._deadlines  # read once: another thread may replace it (another loop)
        if slot[0] is not loop:
            slot = self._deadlines = (loop, {})
        queue = slot[1].get(timeout_s)
        if queue is None:
            queue = slot[1][timeout_s] = DeadlineQueue(loop)
        return Deadline(loop.time() + timeout_s, queue)

    def open_run(
        self,
        input: str = "",
        *,
        agent: AgentRef | str | None = None,
        caller: Caller | None = None,
        entry_point: EntryPoint = EntryPoint.SDK,
        kind: RunKind = RunKind.AGENT_RUN,
        trace_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        paradigm: Literal["react", "plan_execute"] | None = None,
    ) -> RunScope:
        """A scope for one run; enter it (``async with``) to start the run. ``agent`` names the
        agent (a name, or an ``AgentRef`` with its version); ``caller`` says who the run is for
        (default: project ``TETHER_PROJECT``, else ``default``); ``trace_id`` (a W3C trace id)
        puts the run in a caller's trace, which other runs may share."""
        return RunScope(
            self,
            input=input,
            agent=AgentRef(name=agent, version="") if isinstance(agent, str) else agent,
            caller=_clean_caller(caller) if caller else _default_caller(project_from_env()),
            entry_point=entry_point,
            kind=kind,
            trace_id=trace_id,
            metadata=metadata,
            system_prompt=system_prompt,
            paradigm=paradigm,
        )

    def store(self) -> StoreReader:
        """The store this harness traces into (its queued records written first): where
        paused runs, their answers and their resumes are. ``TetherError`` when it traces into
        none."""
        sink = self.sink
        store = getattr(sink, "store", None) or getattr(getattr(sink, "inner", None), "store", None)
        if store is None:
            raise TetherError(
                "approving and resuming runs needs the store the run was traced in; this "
                "agent or harness traces into none",
                hint="build it with trace=None (the configured store) or a database URL",
            )
        self.flush_store()
        return cast("StoreReader", store)

    def flush_store(self) -> None:
        """Write the records queued for the store: those of the writer an exporting sink
        wraps, without waiting on an OpenTelemetry collector (one that is down would hold up
        an approval or a resume for the exporter's retries)."""
        sink = self.sink
        getattr(sink, "inner", sink).flush()

    def resume_run(
        self,
        paused: RunState,
        *,
        approvals: Sequence[Approval] = (),
        actor: dict[str, Any] | None = None,
    ) -> RunScope:
        """A scope that goes on from a paused run's state: a new run (its own id, in the same
        trace, ``resumed_from`` in its metadata) with the conversation, usage, cost, counts
        and tool history so far, for the same agent, caller and entry point. ``approvals``
        are people's answers to the calls it was paused on; it starts with those calls
        (``state.pending_tool_calls``). The run's ``timeout_s`` counts from the resume.

        A paused run is resumed once, whoever resumes it: the harness must trace into the
        store the run was paused in (``store()``). A run resumed already is refused here
        (``Conflict``), before a run is started; entering the scope then claims the paused
        run (a ``run_resumed`` audit entry naming the new run, on disk before anything runs,
        ``actor`` saying who: default ``{"via": "sdk"}``, with the agent), so that of two
        resumes racing one runs and the other's ``async with`` raises ``Conflict`` (its run
        recorded as failed, saying so)."""
        from tether.runtime.approvals import check_resumable

        store = self.store()
        check_resumable(store, paused)
        agent = AgentRef(name=paused.agent_name, version=paused.agent_version)
        scope = self.open_run(
            paused.input,
            agent=agent if paused.agent_name else None,
            caller=paused.caller,
            entry_point=paused.entry_point,
            kind=paused.kind,
            trace_id=paused.trace_id,
            metadata={**paused.metadata, RESUMED_FROM: paused.run_id},
            paradigm=paused.paradigm,
        )
        fresh = scope.state
        scope.state = paused.model_copy(
            deep=True,
            update={
                "run_id": fresh.run_id,
                "metadata": fresh.metadata,
                "status": "running",
                "outcome": None,
                "output": None,
                "stop_reason": None,
                "error": None,
                "hint": None,
                "awaiting_approval": None,
                "started_ns": 0,
            },
        )
        scope.approvals = {a.call_id: a for a in approvals}
        scope._resume_unused = True
        scope._input_checked = True  # by the paused run's input step
        scope._user_texts = {m.content: m.content for m in paused.messages if m.role == "user"}
        scope.risk = RunRisk(paused.risk_score, set(paused.risk_categories))
        scope._carried = _Totals.of(paused)
        scope._carried_budget = (paused.usage.total_tokens, paused.cost_usd)
        who = dict(actor or {"via": "sdk"})
        if paused.agent_name:
            who["agent"], who["agent_version"] = paused.agent_name, paused.agent_version
        scope._claim = (store, paused, who)
        return scope

    async def aclose(self) -> None:
        """Close the HTTP clients of the models and tools (they reopen when used)."""
        for part in (*self.chain, *self.tools.values(), self.budget):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()


@functools.lru_cache(maxsize=64)
def _default_caller(project: str) -> Caller:
    """The caller of a run opened without one, in ``project`` (``TETHER_PROJECT``, read on
    every run): one frozen ``Caller`` per project, not one made per run (a frozen dataclass
    costs about 2 us to make)."""
    return Caller(project=project)


def _clean_caller(caller: Caller) -> Caller:
    """``caller`` with lone surrogates (an application's JSON-decoded text may hold them; no
    policy engine or database takes them) as U+FFFD, as the run's input; itself, when it has
    none."""
    texts = (caller.project, caller.key_id or "", caller.end_user or "")
    if all(t.isascii() for t in (*texts, *caller.roles, *caller.scopes)):
        return caller

    def clean(text: str | None) -> str | None:
        return None if text is None else scrub_surrogates(text)

    return Caller(
        project=scrub_surrogates(caller.project),
        key_id=clean(caller.key_id),
        end_user=clean(caller.end_user),
        roles=frozenset(map(scrub_surrogates, caller.roles)),
        scopes=frozenset(map(scrub_surrogates, caller.scopes)),
    )


def _store_url(sink: TraceSink) -> str | None:
    """The database a trace sink writes to (a store writer, maybe behind an exporting sink)."""
    inner = getattr(sink, "inner", sink)
    store = getattr(inner, "store", None)
    url = getattr(store, "url", None)
    return url if isinstance(url, str) else None


@dataclass(frozen=True, slots=True)
class _Totals:
    """What a run's record counts: tokens, cost, unpriced calls, turns, tool calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    turns: int = 0
    tool_calls: int = 0

    @classmethod
    def of(cls, state: RunState) -> _Totals:
        u = state.usage
        return cls(
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            state.cost_usd,
            state.unpriced_calls,
            state.turns,
            state.tool_calls,
        )

    def minus(self, before: _Totals) -> _Totals:
        if before == _NOTHING:  # not a resumed run: nothing to take away
            return self
        return _Totals(
            self.input_tokens - before.input_tokens,
            self.output_tokens - before.output_tokens,
            self.cached_input_tokens - before.cached_input_tokens,
            self.cost_usd - before.cost_usd,
            self.unpriced_calls - before.unpriced_calls,
            self.turns - before.turns,
            self.tool_calls - before.tool_calls,
        )


_NOTHING = _Totals()


def _crash_message(exc: BaseException) -> str:
    """What ended a run that did not finish, in words (a bare ``CancelledError:`` says little)."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled before it finished (the task was cancelled or the process stopped)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C) before it finished"
    if isinstance(exc, SystemExit):
        return f"the process exited (status {exc.code}) before the run finished"
    return describe_exception(exc)


class RunScope:
    """One run, from its record and root span to its final record. Made by
    ``Harness.open_run``; steps are called inside ``async with``."""

    def __init__(
        self,
        harness: Harness,
        *,
        input: str,
        agent: AgentRef | None,
        caller: Caller,
        entry_point: EntryPoint,
        kind: RunKind,
        trace_id: str | None,
        metadata: dict[str, Any] | None,
        system_prompt: str | None,
        paradigm: Literal["react", "plan_execute"] | None,
    ) -> None:
        if not isinstance(input, str):
            raise TetherError(f"input must be text, got {type(input).__name__}")
        if trace_id is None:
            trace_id = new_trace_id()
        elif not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
            raise TetherError(
                f"trace_id must be 32 lowercase hex characters (a W3C trace id), got {trace_id!r}"
            )
        elif trace_id == _INVALID_TRACE_ID:
            # W3C and OpenTelemetry hold an all-zero id invalid: an exporter drops its spans.
            raise TetherError("trace_id must not be all zeros (an invalid W3C trace id)")
        self.harness = harness
        self.agent, self.caller, self.entry_point, self.kind = agent, caller, entry_point, kind
        self.paradigm = paradigm
        self.tracing = not isinstance(harness.sink, NullSink)
        """False when traces go nowhere: steps skip building what only a trace would show."""
        self.state = RunState(
            trace_id=trace_id,
            run_id=new_span_id(),
            agent_name=agent.name if agent else "",
            agent_version=agent.version if agent else "",
            paradigm=paradigm or "react",
            input=scrub_surrogates(input),
            metadata=dict(metadata or {}),
            caller=caller,
            entry_point=entry_point,
            kind=kind,
        )
        if system_prompt:
            self.state.messages.append(Message(role="system", content=system_prompt))
        self.message_cache: MessageCache = {}
        self._call_model = self.control_model_call  # one bound method for every hook
        self.risk = RunRisk()
        """What the guards have found in this run so far (``HookContext.risk``)."""
        self.approvals: dict[str, Approval] = {}
        """A resumed run: people's answers to the calls it was paused on, by call id
        (``HookContext.approvals``; each settles its call once)."""
        self._carried = _NOTHING
        self._resume_unused = False
        """A resumed run that has not run a tool call yet (see ``tool_starting``)."""
        self._carried_budget: tuple[int, float] | None = None
        """A resumed run: the paused run's totals, which its state goes on from (limits count
        the whole conversation) and its record leaves out (each run records what it did)."""
        self.pipeline = harness.pipeline
        self._record: RunRecord | None = None
        self._root: SpanRecord | None = None
        self._recorder: RunRecorder | None = None
        self._started = 0.0
        self._max_payload_chars = 0
        self._clock: Deadline | None = None
        """The run's ``limits.timeout_s``, over its timed steps (model and tool calls)."""
        self._held: tuple[SpanRecord, ModelResponse] | None = None
        """The chat span of the newest reply that may be the answer, and the reply, written
        once ``on_output`` has judged the answer or the run has moved on."""
        self._cancelled: str | None = None
        """What a step said when it was cancelled (the run's error, if the cancellation
        leaves the scope)."""
        self._input_checked = False
        """Whether ``state.input`` holds what ``on_input`` let through (before, it holds the
        caller's text as given, which must not be stored unmasked)."""
        self._claim: tuple[StoreReader, RunState, dict[str, Any]] | None = None
        """A resumed run: the store, the paused run's state and who resumes it, to claim the
        paused run with once this run is started (see ``Harness.resume_run``)."""
        self._input_masked: tuple[str, str] | None = None
        """The input as given and as ``on_input`` masked it, when the scope checked it before
        the first model call of a loop that skipped ``input()``: what the loop's own requests
        carry in its place (see ``model_call``)."""
        self._user_texts: dict[str, str] | None = None if self.state.input else {}
        """Once the run has made a model call (from the start, for a run opened without an
        input: the loop's own messages are its input): each user text the loop has sent, and
        what the model got in its place (itself, or as ``on_input`` masked it). A user
        message of a request of the loop's own that is none of them (reworded, or appended: a
        chat's follow-up) is a new text, which ``on_input`` checks before the model sees it
        (see ``model_call``); one checked before is sent as it was then, not checked again."""

    # -- identity ---------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id: its root span's id."""
        return self.state.run_id

    @property
    def trace_id(self) -> str:
        return self.state.trace_id

    @property
    def recorder(self) -> RunRecorder:
        if self._recorder is None:
            raise TetherError("the run scope is not open: use 'async with harness.open_run(...)'")
        return self._recorder

    def hook_context(
        self,
        hook: Hook,
        span_id: str | None,
        *,
        tool: Tool | None = None,
        call: ToolCall | None = None,
        input_usd_per_mtok: float | None = None,
    ) -> HookContext:
        """What a control sees at ``hook``: the run, the limits, the caller, the entry point."""
        h = self.harness
        # Positional, in the fields' order (checked where HookContext is defined): each step
        # makes one, and keywords cost twice the construction.
        return HookContext(
            hook,
            self.state,
            h.limits,
            span_id,
            tool,
            call,
            input_usd_per_mtok,
            h.loop_breaker,
            self.caller,
            self.entry_point,
            self.agent,
            self.risk,
            self._call_model,
            self.approvals if hook is _BEFORE_TOOL else None,
            h.budget,
            self._carried_budget,
        )

    async def control_model_call(
        self,
        model: Model,
        request: ModelRequest,
        *,
        parent_id: str | None,
        control: str,
        shown: Sequence[Message] | None = None,
    ) -> ModelResponse:
        """``HookContext.call_model``: a model call a control makes on the run's behalf, in
        the run's trace and totals (see ``chain.control_model_call``)."""
        return await control_model_call(
            self, model, request, parent_id=parent_id, control=control, shown=shown
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> RunScope:
        from tether.trace import RunRecorder  # loads the store: see resolve_sink

        if self._recorder is not None:
            # Entered again (nested, or after it closed): starting the run a second time
            # would write a second record under the same run id, which the store refuses,
            # and restart its clock, so the run's end would match no stored run and the run
            # would stay ``running`` for ever. Raised inside the first ``async with``, the
            # mistake ends that run as a crash, with this message in its trace.
            raise TetherError(
                "this run scope was entered already: a scope holds one run; "
                "open another with harness.open_run(...)"
            )
        state, h = self.state, self.harness
        self._started = monotonic()
        self._clock = h.deadline(h.limits.timeout_s)
        state.started_ns = now_ns()
        self._recorder = RunRecorder(h.sink, state.trace_id, state.run_id)
        self.pipeline = h.pipeline.with_recorder(self._recorder, stored=self.tracing)
        if not self.tracing:  # no record, no root span's attributes: nothing would keep them
            self._root = self.recorder.start_span("", "agent", None, {}, span_id=state.run_id)
            return self
        self._max_payload_chars = max_payload_chars_from_env()  # read once a run
        attributes: dict[str, Any] = {}
        if self.paradigm:
            attributes[semconv.TETHER_PARADIGM] = self.paradigm
        self._record = RunRecord(
            trace_id=state.trace_id,
            run_id=state.run_id,
            agent_name=self.agent.name if self.agent else None,
            agent_version=self.agent.version if self.agent else None,
            started_ns=state.started_ns,
            # clipped past TETHER_MAX_PAYLOAD_CHARS, as the output is
            input=self._stored(self._stored_input()),
            attributes={**attributes, **state.metadata},
            project=self.caller.project,
            kind=self.kind.value,
            entry_point=self.entry_point.value,
            caller=self.caller.stored(),
        )
        h.sink.run_started(self._record)
        root: dict[str, Any] = {**attributes, **self._who()}
        if self.agent is not None:
            root[semconv.GEN_AI_OPERATION_NAME] = semconv.OP_INVOKE_AGENT
            root[semconv.GEN_AI_AGENT_NAME] = self.agent.name
            root[semconv.TETHER_AGENT_VERSION] = self.agent.version
        primary = h.chain.primary
        if primary is not None:
            root[semconv.GEN_AI_PROVIDER_NAME] = primary.provider
            root[semconv.GEN_AI_REQUEST_MODEL] = primary.name
        self._root = self.recorder.start_span(
            self._root_name(), "agent", None, root, span_id=state.run_id
        )
        if self._claim is not None:
            await self._claim_paused_run(*self._claim)
        return self

    async def _claim_paused_run(
        self, store: StoreReader, paused: RunState, actor: dict[str, Any]
    ) -> None:
        """Claim the paused run this run resumes (``claim_resume``), or end this run as
        failed and raise why not (resumed by another process meanwhile, the store down).
        The claim names a run that is started and in the store (and in the crash journal):
        a process dying after the claim leaves a run the recovery closes, which tells the
        next resume that the pause was not used."""
        from tether.runtime.approvals import claim_resume

        self._claim = None
        self.harness.flush_store()
        try:
            claim_resume(store, paused, self.run_id, actor)
        except TetherError as exc:
            said = (
                "was resumed by another request"
                if isinstance(exc, Conflict)
                else ("could not be resumed")
            )
            self.end(Outcome.ERROR, output=f"This paused run {said}.", error=exc.message)
            await self.__aexit__(None, None, None)
            raise

    @overload
    def _stored(self, text: str) -> str: ...
    @overload
    def _stored(self, text: None) -> None: ...
    def _stored(self, text: str | None) -> str | None:
        """``text`` as the trace stores it: clipped past ``TETHER_MAX_PAYLOAD_CHARS``."""
        return None if text is None else clip_text(text, self._max_payload_chars)

    def _stored_input(self) -> str:
        """The run's input as the trace keeps it: masked as ``on_input`` masks it, also before
        (or without) ``on_input`` having run."""
        redact = self.harness.redact_input
        if redact is None or self._input_checked:  # on_input's guards have masked it
            return self.state.input
        try:
            return redact(self.state.input)
        except Exception as exc:  # not the raw text: it is what the guard exists to keep out
            return f"[input not stored: masking it failed: {describe_exception(exc)}]"

    def _who(self) -> dict[str, Any]:
        who: dict[str, Any] = {
            semconv.TETHER_PROJECT: self.caller.project,
            semconv.TETHER_RUN_KIND: self.kind.value,
            semconv.TETHER_ENTRY_POINT: self.entry_point.value,
        }
        if self.caller.key_id is not None:
            who[semconv.TETHER_CALLER_KEY_ID] = self.caller.key_id
        if self.caller.end_user is not None:
            who[semconv.ENDUSER_ID] = self.caller.end_user
        return who

    def _root_name(self) -> str:
        if self.agent is not None:
            return f"{semconv.OP_INVOKE_AGENT} {self.agent.name}"
        return self.kind.value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._root is None:
            return
        if self._held is not None:
            self.release_reply()
        if self._clock is not None:
            self._clock.close()
        state = self.state
        state.elapsed_s += monotonic() - self._started
        if exc is not None and state.finished:
            # The run had ended (its answer went back to the code, or it paused or stopped)
            # when the code failed: the run keeps its outcome and output, the crash is said.
            message = f"the run's code raised after the run ended: {_crash_message(exc)}"
            self.recorder.event(
                self.run_id, semconv.EVENT_RUN_ERROR, {"message": self.stored_error(message)}
            )
        elif exc is not None:
            # A crash (a bug, a cancelled task) still leaves a complete trace and a checkpoint.
            state.end(Outcome.ERROR)
            if isinstance(exc, asyncio.CancelledError) and self._cancelled is not None:
                # The step has said it was cancelled (its text may quote the request).
                state.error, state.stop_reason = self._cancelled, "cancelled"
            else:
                state.error = self.stored_error(_crash_message(exc))
                state.stop_reason = "internal error"
            self.recorder.event(self.run_id, semconv.EVENT_RUN_ERROR, {"message": state.error})
            self._finish()
            self._checkpoint("crash")
            return
        if not state.finished:
            self.end(
                Outcome.ERROR,
                output="I'm sorry, I couldn't finish this request.",
                error="the run's code left the run scope without ending the run "
                "(no output step, no end())",
            )
        if state.status == "paused":
            self._checkpoint(state.outcome.value if state.outcome else "paused")
        self._finish()

    def _checkpoint(self, reason: str) -> None:
        """Checkpoint the run's state. Until ``on_input`` has let the input through (a run
        paused or crashed at or before it), the state keeps the input as the trace stores it:
        masked as the user channel's guards mask it, never as it came."""
        state = self.state
        state.risk_score, state.risk_categories = self.risk.score, sorted(self.risk.categories)
        if not self._input_checked and self.harness.redact_input is not None:
            state = state.model_copy(update={"input": self._stored_input()})
        self.recorder.checkpoint(state.schema_version, state.to_json(), reason)

    def _finish(self) -> None:
        if not self.tracing:
            return
        state, span, run = self.state, self._root, self._record
        assert span is not None and run is not None
        own = _Totals.of(state).minus(self._carried)  # a resumed run: what it did itself
        outcome = None if state.outcome is None else state.outcome.value
        span.attributes[semconv.TETHER_RUN_OUTCOME] = outcome
        span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] = own.input_tokens
        span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = own.output_tokens
        if not own.unpriced_calls:  # unknown is not zero: leave it out
            span.attributes[semconv.TETHER_COST_USD] = own.cost_usd
        unpriced = {semconv.TETHER_COST_UNPRICED: own.unpriced_calls} if own.unpriced_calls else {}
        span.attributes.update(unpriced)
        error = self._stored(state.error)
        if error and state.hint:
            error = f"{error}\n  hint: {state.hint}"
        self.recorder.end_span(span, error=error if state.status == "failed" else None)
        self.harness.sink.run_ended(
            RunRecord(
                trace_id=run.trace_id,
                run_id=run.run_id,
                agent_name=run.agent_name,
                agent_version=run.agent_version,
                started_ns=run.started_ns,
                status=state.status,
                outcome=outcome,
                input=self._stored(self._stored_input()),
                output=self._stored(state.output),
                ended_ns=span.end_ns,
                input_tokens=own.input_tokens,
                output_tokens=own.output_tokens,
                cached_input_tokens=own.cached_input_tokens,
                cost_usd=own.cost_usd,
                turns=own.turns,
                tool_calls=own.tool_calls,
                error=error,
                attributes={
                    **run.attributes,
                    "stop_reason": self._stored(state.stop_reason),
                    **unpriced,
                },
                project=run.project,
                kind=run.kind,
                entry_point=run.entry_point,
                caller=run.caller,
            )
        )

    def result(self) -> RunResult:
        """What the run came to (call it after the scope has closed, or once it has ended)."""
        return RunResult.from_state(self.state)

    # -- ending -----------------------------------------------------------------------------

    def end(
        self,
        outcome: Outcome,
        *,
        output: str,
        reason: str | None = None,
        error: str | None = None,
        hint: str | None = None,
    ) -> None:
        """End the run with ``outcome``: what the user is told (``output``), why it stopped,
        and for a failure what went wrong. Steps end the run themselves on a stop; call this
        for endings of the run's own logic (an empty answer, say).

        A run that has ended already (a control blocked a step, the output step gave the
        answer) keeps its first ending, as a step after the end changes nothing: a later
        ``end()`` must not turn a control's block into a final answer in the record, nor
        store the text an output guard blocked or masked as the run's output."""
        if self._held is not None:
            self.release_reply()
        state = self.state
        if state.finished:
            return
        state.end(outcome)
        state.output = output
        state.stop_reason = reason if reason is not None else error
        state.error, state.hint = error, hint
        if error is not None:
            attributes: dict[str, Any] = {"message": error}
            if hint:
                attributes["hint"] = hint
            self.recorder.event(self.run_id, semconv.EVENT_RUN_ERROR, attributes)

    def stored_text(self, text: str) -> str:
        """A text a decision quotes (its reason), as the trace may keep it: masked as the
        run's masking guards mask, on whatever channel (``Harness.redact_stored``)."""
        redact = self.harness.redact_stored
        return text if redact is None else redact(text)

    def stored_error(self, text: str) -> str:
        """An exception's text as the trace keeps it (``stored_text``), on a path that must
        not fail itself (a crash being recorded): if masking fails, not the raw text."""
        try:
            return self.stored_text(text)
        except Exception as exc:
            return f"[error not stored: masking it failed: {describe_exception(exc)}]"

    def _stopped_by(self, decision: Any) -> None:
        outcome = decision.outcome or Outcome.BLOCKED
        state = self.state
        state.end(outcome)
        state.stop_reason = f"{decision.control}: {self.stored_text(decision.reason)}"
        state.output = decision.message or _default_stop_message(outcome)

    def _timed_out(self) -> None:
        timeout = self.harness.limits.timeout_s
        self.recorder.event(
            self.run_id, semconv.EVENT_RUN_LIMIT, {"limit": "timeout_s", "value": timeout}
        )
        state = self.state
        state.end(Outcome.LIMIT_EXCEEDED)
        state.stop_reason = f"limits: timeout_s limit reached after {timeout:g}s"
        state.output = limit_message("timeout_s", timeout)

    def _provider_failed(self, exc: ProviderError) -> None:
        state = self.state
        state.end(Outcome.ERROR)
        said = self.stored_error(exc.message)  # it may quote the request
        state.error, state.hint = said, exc.hint
        state.stop_reason = f"model provider failed: {said}"
        state.output = _provider_failure_message(exc)
        attributes = error_attributes(exc, said)
        degraded = self.harness.degraded_answer
        if degraded is not None and exc.retryable:
            # Every model is down for now: the configured answer, not the built-in apology.
            state.output = degraded
            state.stop_reason += "; answered with the degraded answer (resilience.degraded_answer)"
            attributes["degraded_answer"] = True
        self.recorder.event(self.run_id, semconv.EVENT_RUN_ERROR, attributes)

    async def _step(
        self, work: Callable[[], Awaitable[T]], *, timed: bool = False, answer: bool = False
    ) -> Step[T]:
        """Run one step; every way the run can stop becomes an ended run and a stopped Step.
        Any other step than the answer's (``answer``) moves the run on from a held reply."""
        state = self.state
        if self._root is None:
            raise TetherError("the run scope is not open: use 'async with harness.open_run(...)'")
        if not answer and self._held is not None:
            self.release_reply()
        if state.finished:
            return Step(outcome=state.outcome or Outcome.ERROR)
        clock = self._clock
        deadline: Deadline | asyncio.Timeout | None = None
        try:
            if not timed:
                value = await work()
            elif clock is not None and not clock.active:
                # One timer for all the run's timed steps (see ``runtime/deadline.py``).
                deadline = clock
                clock.enter()
                try:
                    value = await work()
                except BaseException as exc:
                    if clock.exit(type(exc), keep=True):
                        raise TimeoutError from exc
                    raise
                clock.exit(None, keep=True)
            else:  # a timed step running beside another (two tasks): a timeout of its own
                deadline = asyncio.timeout_at(None if clock is None else clock.when)
                async with deadline:
                    value = await work()
        except Stop as stop:
            self._stopped_by(stop.decision)
            return Step(outcome=self.state.outcome, decision=stop.decision)
        except TimeoutError:
            if deadline is None or not _expired(deadline):
                raise  # some other timeout (a model integration's own): not the run's limit
            self._timed_out()
            return Step(outcome=Outcome.LIMIT_EXCEEDED)
        except ProviderError as exc:
            self._provider_failed(exc)
            return Step(outcome=Outcome.ERROR)
        except asyncio.CancelledError as exc:
            # The caller cancelled the run (a SIGTERM or Ctrl-C unwinding the event loop, a
            # task cancelled from outside). Say so: the bare exception's text is empty.
            # Kept on the scope, not in the run's state: a caller that catches it (its own
            # ``asyncio.wait_for`` around a step) goes on with the run, which must not end
            # up recorded as cancelled with a final answer.
            detail = f": {exc.args[0]}" if exc.args and exc.args[0] else ""
            self._cancelled = f"the run was cancelled before it finished{detail}"
            raise asyncio.CancelledError(self._cancelled) from exc
        return Step(value)

    # -- steps ------------------------------------------------------------------------------

    async def input(self, text: str | None = None) -> Step[str]:
        """The input step: ``on_input`` over the run's input (or ``text``), which then joins
        the conversation as the user's message. A ``text`` given once the run's input has
        been checked (the user's answer to a question of the agent) is a later message: the
        run's input, as its record keeps it, stays the first."""

        async def work() -> str:
            raw = self.state.input if text is None else scrub_surrogates(text)
            checked = raw
            if self.pipeline.asks(_ON_INPUT):
                ctx = self.hook_context(_ON_INPUT, self.run_id)
                decision, checked = await self.pipeline.check(ctx, raw)
                if decision.stops:
                    raise Stop(decision)
            if text is None or not self._input_checked:
                self.state.input = checked
                self._input_checked = True
            if self._user_texts is not None:  # a loop may send either: neither is new
                self._user_texts[raw] = self._user_texts[checked] = checked
            self.state.messages.append(Message(role="user", content=checked))
            return str(checked)

        return await self._step(work)

    async def model_call(
        self,
        request: ModelRequest | None = None,
        *,
        tools: bool = True,
        note: str | None = None,
        stream: StreamHandler | None = None,
    ) -> Step[ModelResponse]:
        """A model call over the chain (priced, with fallbacks). Without ``request`` it sends
        the run's conversation (with the tools unless ``tools=False``, and ``note`` as a last
        system message that stays out of the conversation). A given ``request`` becomes the
        conversation. The reply joins the conversation.

        With ``stream`` (a function or coroutine function taking each ``StreamEvent``) the
        reply is streamed to it as it comes; the step's value is still the whole reply, after
        ``after_model``. When a control may block or mask the answer
        (``Harness.holds_streamed_text``: an output guard that is not ``log``, or any
        ``on_output`` or ``after_model`` control) the text deltas and the end event (it carries the
        whole reply) are not sent at all: the step's value is the reply to show.

        A run whose input no input step has checked (a hand-written loop that skips
        ``input()``) has it checked here first, once: ``on_input`` over the run's input, as
        ``input()`` does (a block ends the run, the model not called; the checked input joins
        the conversation). When a control masked it, a given request's messages carry the
        masked text wherever they hold the input as given, in this call and every later one;
        a first request that does not hold it (the loop reworded it) is refused with a
        ``TetherError``, not sent with what the control masked.

        The first request's messages are the conversation the run was opened over (of a run
        opened without an input, they are its input, and checked). In a later request of the
        loop's own, a user message the run has not sent before (the loop reworded one, or
        appended the user's follow-up) is a new user text: ``on_input`` checks it before the
        call, as ``input(text)`` would (a block ends the run, the model not called; a masked
        text is sent masked)."""
        state = self.state
        if not self._input_checked and not state.finished:
            step = await self._input_first(request)
            if step is not None:
                return step
        if request is not None and self._input_masked is not None:
            request = _with_input_masked(request, *self._input_masked)
        given = request is not None  # it becomes the conversation once the step runs
        if request is None:
            messages = list(state.messages)
            if note:
                messages.append(Message(role="system", content=note))
            request = ModelRequest(
                messages=messages,
                # its own list, as each request had when pydantic copied it: a control may
                # change a request's tools
                tools=list(self.harness.tool_defs) if tools else [],
                settings=self.harness.settings,
            )
        elif request.tools is self.harness.tool_defs:
            # ``ModelRequest(messages=..., tools=harness.tool_defs)``, as a hand-written loop
            # writes it: a control changing this request's tools in place must not change
            # them for every later call and run of the harness.
            request = ModelRequest(
                messages=request.messages, tools=list(request.tools), settings=request.settings
            )
        sent = request

        async def work() -> ModelResponse:
            nonlocal sent
            if given:  # only once the step runs: a step after the end changes nothing
                if self._user_texts is not None and self.pipeline.asks(_ON_INPUT):
                    sent = await self._new_user_texts_checked(sent, self._user_texts)
                state.messages = list(sent.messages)
            known = self._user_texts if self._user_texts is not None else {}
            for m in sent.messages:
                if m.role == "user":
                    known.setdefault(m.content, m.content)
            self._user_texts = known
            response = await model_step(self, sent, _held_text(stream, self.harness))
            state.messages.append(response.as_message())
            return response

        return await self._step(work, timed=True)

    async def _input_first(self, request: ModelRequest | None) -> Step[ModelResponse] | None:
        """The input step, for a run that reaches its first model call without one: the
        stopped step when ``on_input`` stopped the run, else ``None`` (see ``model_call``)."""
        raw = self.state.input
        step = await self.input()
        if step.value is None:
            return Step(outcome=step.outcome, decision=step.decision)
        if step.value != raw:
            # (An empty input is "in" every message: nothing in them could be replaced.)
            if request is not None and not (
                raw and any(raw in m.content for m in request.messages)
            ):
                raise TetherError(
                    "an on_input control changed this run's input (it masked part of it), and "
                    "the model call's messages do not hold the input as given, so the change "
                    "cannot be made in them: call run.input() before the first model call and "
                    "send the text it returns"
                )
            self._input_masked = (raw, step.value)
        return None

    async def _new_user_texts_checked(
        self, request: ModelRequest, known: dict[str, str]
    ) -> ModelRequest:
        """``request`` with each user message the run has not sent before passed through
        ``on_input`` (``Stop`` when a control stops one), and every user text as the model
        got it before or the controls left it now; ``known`` learns the new ones."""
        changed = False
        for message in request.messages:
            text = message.content
            if message.role != "user":
                continue
            if text not in known:
                ctx = self.hook_context(_ON_INPUT, self.run_id)
                decision, result = await self.pipeline.check(ctx, text)
                if decision.stops:
                    raise Stop(decision)
                known[text] = str(result)
                known.setdefault(known[text], known[text])  # sent again as it is: not checked
            changed = changed or known[text] != text
        if not changed:
            return request
        messages = [
            m.model_copy(update={"content": known[m.content]})
            if m.role == "user" and known[m.content] != m.content
            else m
            for m in request.messages
        ]
        return ModelRequest(messages=messages, tools=request.tools, settings=request.settings)

    async def tool_calls(
        self, calls: Sequence[ToolCall], *, parent_id: str | None = None
    ) -> Step[list[Message]]:
        """One turn's tool calls (approved in order, run in parallel); the value is their
        messages in call order, also added to the conversation. Their spans are children of
        ``parent_id`` (default: the root span)."""
        return await self._step(lambda: tools_step(self, list(calls), parent_id), timed=True)

    async def tool_starting(self) -> None:
        """A tool call is about to run. The first in a resumed run is recorded first, and on
        disk before the tool does anything (written and synced, so that even a power cut
        keeps it): the run used its pause, and a resume whose process or machine then dies
        cannot be taken over to run the calls again (see ``tether.runtime.approvals``)."""
        if self._resume_unused:
            self._resume_unused = False
            self.recorder.event(self.run_id, semconv.EVENT_RESUME_TOOL_STARTED, {})
            await asyncio.to_thread(self.recorder.sync)

    async def tool_call(self, call: ToolCall) -> Step[Message]:
        """One tool call; the value is the tool message for the model."""
        step = await self.tool_calls([call])
        if step.value is None:
            return Step(outcome=step.outcome, decision=step.decision)
        return Step(step.value[0])

    async def output(self, text: str) -> Step[str]:
        """The output step: ``on_output`` over the answer; the run ends with a final answer."""

        async def work() -> str:
            checked = text
            if self.pipeline.asks(_ON_OUTPUT):
                ctx = self.hook_context(_ON_OUTPUT, self.run_id)
                decision, checked = await self.pipeline.check(ctx, text)
                self._answer_judged(text, decision, checked)
                if decision.stops:
                    raise Stop(decision)
            self.state.output = checked
            self.state.end(_FINAL_ANSWER)
            return str(checked)

        return await self._step(work, answer=True)

    def hold_reply(self, span: SpanRecord, reply: ModelResponse) -> None:
        """Keep back the chat span of a reply that may be the answer (it calls no tools)
        until ``on_output`` has judged the answer: a reply the output controls block or mask
        is then stored as they leave it, never as it came. The next step, ``end()`` or the
        scope's exit writes it as it is."""
        self.release_reply()
        span.end_ns = now_ns()
        self._held = (span, reply)

    def release_reply(self, reply: ModelResponse | None = None) -> None:
        """Write the held chat span (with ``reply`` as its reply, if given)."""
        held, self._held = self._held, None
        if held is None:
            return
        span, _ = held
        if reply is not None and self.tracing:
            span.attributes[semconv.GEN_AI_OUTPUT_MESSAGES] = output_messages(reply)
        self.recorder.end_span(span, ended_ns=span.end_ns)

    def _answer_judged(self, text: str, decision: Decision, checked: Any) -> None:
        """After ``on_output``: the answer's reply, in the conversation and on its held chat
        span, as the output controls left it: a marker in its place when they stopped it,
        their masking where they masked it."""
        if not decision.stops and decision.verdict is not Verdict.MODIFY:
            if self._held is not None:
                self.release_reply()  # let through as it is
            return
        reply = self._held[1] if self._held is not None else None
        last = next((m for m in reversed(self.state.messages) if m.role == "assistant"), None)
        kept: ModelResponse | None = None
        if decision.stops:
            if reply is not None:
                kept = withheld(reply, decision)
            if last is not None and not last.tool_calls:
                marker = withheld(ModelResponse(content=last.content), decision).content
                self._replace_last(last, marker)
        elif decision.verdict is Verdict.MODIFY and isinstance(checked, str) and text:
            if reply is not None and text in reply.content:
                kept = reply.model_copy(update={"content": reply.content.replace(text, checked)})
            if last is not None and text in last.content:
                self._replace_last(last, last.content.replace(text, checked))
        self.release_reply(kept)

    def _replace_last(self, message: Message, content: str) -> None:
        messages = self.state.messages
        for i in range(len(messages) - 1, -1, -1):
            if messages[i] is message:
                messages[i] = message.model_copy(update={"content": content})
                return

    @contextmanager
    def span(self, name: str, kind: str, attributes: dict[str, Any]) -> Iterator[SpanRecord]:
        """A span grouping steps (pass its ``span_id`` as their ``parent_id``)."""
        self.release_reply()
        span = self.recorder.start_span(name, kind, self.run_id, attributes)
        try:
            yield span
        finally:
            self.recorder.end_span(span)


def _with_input_masked(request: ModelRequest, raw: str, masked: str) -> ModelRequest:
    """``request`` with ``masked`` in place of ``raw`` in every message holding it: anywhere
    in a user's message; in the loop's own (system, assistant, tool), only where ``raw``
    stands as whole words (a template's "The user asked: {input}"): a control that rewrote
    a short input ("hi") spliced its text into every word of the system prompt holding it
    ("T<text>s is ...")."""
    if not any(raw in m.content for m in request.messages):
        return request
    whole = re.compile(
        (r"(?<!\w)" if _WORD.match(raw[:1]) else "")
        + re.escape(raw)
        + (r"(?!\w)" if _WORD.match(raw[-1:]) else "")
    )
    messages = []
    for m in request.messages:
        if raw in m.content:
            if m.role == "user":
                content = m.content.replace(raw, masked)
            else:
                content = whole.sub(lambda _: masked, m.content)
            m = m.model_copy(update={"content": content})
        messages.append(m)
    return ModelRequest(messages=messages, tools=request.tools, settings=request.settings)


_WORD = re.compile(r"\w")


def _expired(deadline: Deadline | asyncio.Timeout) -> bool:
    return deadline.expired if isinstance(deadline, Deadline) else deadline.expired()


def _provider_failure_message(exc: ProviderError) -> str:
    """What the user is told when the model provider failed: to try again only if that helps."""
    if exc.retryable:
        return (
            "I'm sorry, I can't answer right now: the language model is unavailable. "
            "Please try again shortly."
        )
    if exc.misconfigured or exc.status_code in (None, 401, 403, 404):  # a key, a model, a URL
        return (
            "I'm sorry, I can't answer: the language model service is not set up correctly on "
            "our side, so trying again won't help until that is fixed."
        )
    return (
        "I'm sorry, I can't answer: the language model service could not handle this request, "
        "and trying again won't help."
    )


def _default_stop_message(outcome: Outcome) -> str:
    if outcome.status == "paused":
        return "Your request needs a person's review; we'll follow up once it has been reviewed."
    return "I'm sorry, I can't help with that request."


def _held_text(stream: StreamHandler | None, harness: Harness) -> StreamHandler | None:
    """``stream`` without the reply's text (its deltas, and the end event, which carries the
    whole reply) when the harness holds the answer's text back: tool-call deltas still go."""
    if stream is None or not harness.holds_streamed_text:
        return stream
    handler = stream

    def without_text(event: StreamEvent) -> Awaitable[None] | None:
        return None if isinstance(event, (TextDelta, StreamEnd)) else handler(event)

    return without_text
