"""``Agent``: a spec bound to its models, tools, controls and trace sink."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from tether.controls import CedarAuthorization, Control, LimitsControl, LoopBreaker, Pipeline
from tether.core import (
    Outcome,
    ProviderError,
    Settings,
    SpecError,
    TetherError,
    describe_exception,
    new_span_id,
    new_trace_id,
    now_ns,
    scrub_surrogates,
)
from tether.providers import Message, Model, ModelSettings, ScriptedModel, build_model
from tether.runtime.loop import RunContext, drive
from tether.runtime.result import RunResult
from tether.runtime.state import RunState
from tether.runtime.telemetry import stored_payload
from tether.spec import AgentSpec, load_spec
from tether.store import RunRecord
from tether.tools import HttpTool, Tool, build_tools, check_tools, definition_of
from tether.trace import PricingTable, default_pricing, semconv

if TYPE_CHECKING:
    from tether.trace import RunRecorder, TraceSink

# The trace writer and recorder (and with them the store and SQLAlchemy) load when an agent
# is built, not when this module is imported: `tether validate` never needs them.
TraceTarget: TypeAlias = "TraceSink | str | bool | None"


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Errors in what a spec points at (a script, a tool file, an environment variable, an
    API key) name the spec file."""
    try:
        yield
    except (SpecError, ProviderError) as exc:
        raise SpecError(f"{path}: {exc.message}", hint=exc.hint) from None


def _check_cost_limit(spec: AgentSpec, model_names: Sequence[str], pricing: PricingTable) -> None:
    if spec.limits.max_cost_usd is None:
        return
    unpriced = [name for name in model_names if pricing.price_for(name) is None]
    if unpriced:
        raise SpecError(
            f"limits.max_cost_usd is set but the pricing table (version {pricing.version}) "
            f"has no price for {', '.join(unpriced)}: the cost limit could never trip",
            hint="use a priced model name, pass Agent(pricing=...) with a table that prices "
            "it, or remove max_cost_usd",
        )


def _outcome_text(state: RunState) -> str | None:
    """The outcome as the plain string the store, the journal and checkpoints keep."""
    return None if state.outcome is None else state.outcome.value


def _crash_message(exc: BaseException) -> str:
    """What ended a run that did not finish, in words (a bare ``CancelledError:`` says little)."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled before it finished (the task was cancelled or the process stopped)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C) before it finished"
    if isinstance(exc, SystemExit):
        return f"the process exited (status {exc.code}) before the run finished"
    return describe_exception(exc)


@dataclass
class SpecCheck:
    """What :func:`check_spec` found: the spec, what it builds, and what the environment lacks."""

    path: Path
    spec: AgentSpec
    models: list[Model]
    """The models that could be built (a model whose API key is not set is left out)."""
    tools: dict[str, Tool]
    missing_env: list[str] = field(default_factory=list)
    """Environment variables the agent needs to run that are not set here."""
    warnings: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    """Python tools checked by reference only (``import_tools=False``): not in ``tools``."""


def check_spec(
    path: str | Path, *, pricing: PricingTable | None = None, import_tools: bool = True
) -> SpecCheck:
    """Check a spec file the way ``Agent.from_yaml`` would build it, without running it or
    opening a trace store. Missing environment variables (API keys, URLs of HTTP tools) are
    reported in ``missing_env`` instead of raised, so specs can be checked where secrets are
    not available (CI). Everything else raises ``SpecError`` naming the file.

    Building a Python tool imports its module, which runs that module's code: check only
    specs you trust, or pass ``import_tools=False`` to check tool references without
    importing them (see ``check_tools``)."""
    path = Path(path)
    spec = load_spec(path)
    base_dir = path.parent
    missing: set[str] = set()
    models: list[Model] = []
    with _naming(path):
        for config in (spec.model, *spec.fallback_models):
            try:
                models.append(build_model(config, base_dir))
            except ProviderError:
                if config.provider == "openai" and not os.environ.get(config.api_key_env):
                    missing.add(config.api_key_env)
                    continue
                raise
        not_imported: list[str] = []
        tool_warnings: list[str] = []
        if import_tools:
            tools = build_tools(spec.tools, base_dir=base_dir, strict_env=False)
        else:
            found = check_tools(spec.tools, base_dir=base_dir)
            tools, not_imported, tool_warnings = found.tools, found.not_imported, found.warnings
        _check_cost_limit(
            spec,
            [c.name for c in (spec.model, *spec.fallback_models)],
            pricing or default_pricing(),
        )
    missing.update(var for t in tools.values() if isinstance(t, HttpTool) for var in t.missing_env)
    check = SpecCheck(
        path=path,
        spec=spec,
        models=models,
        tools=tools,
        missing_env=sorted(missing),
        not_imported=not_imported,
    )
    if check.missing_env:
        check.warnings.append(
            f"not set in this environment: {', '.join(check.missing_env)} "
            "(needed to run, not to validate)"
        )
    check.warnings += tool_warnings
    check.warnings += _script_warnings(models, {*tools, *not_imported})
    check.warnings += _unsent_key_warnings(spec, missing)
    return check


def _unsent_key_warnings(spec: AgentSpec, missing: set[str]) -> list[str]:
    """A local server needs no key, so an unset ``api_key_env`` is no error there (nor in
    ``missing``); but one the spec names explicitly is wanted, and the server's answer to its
    absence can mislead (LiteLLM answers 500)."""
    unsent = [
        config
        for config in (spec.model, *spec.fallback_models)
        if config.provider == "openai"
        and "api_key_env" in config.model_fields_set
        and not (os.environ.get(config.api_key_env) or "").strip()
        and config.api_key_env not in missing
    ]
    if not unsent:
        return []
    from tether.providers.http_client import display_url  # loads httpx: only when needed

    return [
        f"model {config.name!r}: api_key_env {config.api_key_env} is not set, so no API key "
        f"will be sent to {display_url(config.base_url or '')}"
        for config in unsent
    ]


def _script_warnings(models: list[Model], tools: set[str]) -> list[str]:
    """Scripted models that call tools the agent does not have (the run would get errors)."""
    out = []
    for model in models:
        if not isinstance(model, ScriptedModel):
            continue
        script = model.script
        steps = [*script.steps, *(s for rule in script.rules for s in rule.steps)]
        called = {c.name for step in steps for c in step.tool_calls}
        for name in sorted(called - set(tools)):
            out.append(
                f"script of model '{model.name}' calls tool '{name}', which the agent does not have"
            )
    return out


_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def _resolve_sink(trace: TraceTarget) -> TraceSink:
    from tether.trace import NullSink, writer_for

    if trace is False:
        return NullSink()
    if trace is None or trace is True:
        return writer_for(Settings.from_env().database_url)
    if isinstance(trace, str):
        return writer_for(trace)
    return trace


class Agent:
    """An agent ready to run.

    ``trace`` says where traces go: ``None`` (default) uses ``TETHER_DATABASE_URL`` or the
    SQLite store in ``TETHER_HOME``; a database URL; any ``TraceSink``; or ``False`` for none.
    """

    def __init__(
        self,
        spec: AgentSpec,
        *,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        model: Model | None = None,
        fallback_models: Sequence[Model] | None = None,
        controls: Sequence[Control] = (),
        base_dir: str | Path | None = None,
        trace: TraceTarget = None,
        pricing: PricingTable | None = None,
    ) -> None:
        self.spec = spec
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.model = model or build_model(spec.model, self.base_dir)
        self.fallback_models = (
            list(fallback_models)
            if fallback_models is not None
            else [build_model(c, self.base_dir) for c in spec.fallback_models]
        )
        self.tools = build_tools(spec.tools, base_dir=self.base_dir, provided=tools)
        self.controls: list[Control] = [LimitsControl(), LoopBreaker(), *controls]
        if spec.authorization is not None:  # last: it decides the call as other controls left it
            self.controls.append(CedarAuthorization.from_spec(spec, self.tools, self.base_dir))
        self.sink = _resolve_sink(trace)
        self.pricing = pricing or default_pricing()
        self._tool_defs = [definition_of(t) for t in self.tools.values()]
        self._settings = ModelSettings(
            temperature=spec.model.temperature,
            seed=spec.model.seed,
            max_tokens=spec.model.max_tokens,
        )
        self._pipeline = Pipeline(self.controls)
        _check_cost_limit(spec, [m.name for m in self._models()], self.pricing)
        self._system_prompt = spec.system_prompt()
        self._version = spec.version

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Agent:
        """Load a spec file; relative paths in it (scripts, tool files) resolve from its folder."""
        path = Path(path)
        kwargs.setdefault("base_dir", path.parent)
        spec = load_spec(path)
        with _naming(path):
            return cls(spec, **kwargs)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        """Content hash of the spec this agent was built from."""
        return self._version

    async def run(
        self, input: str, *, trace_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> RunResult:
        """Run the agent on one input. Always returns a result; stops are outcomes.

        ``trace_id`` (a W3C trace id) puts the run in a caller's trace, which other runs may
        share; the run's own id (``RunResult.run_id``) is its root span's id."""
        if not isinstance(input, str):
            raise TetherError(f"input must be text, got {type(input).__name__}")
        input = scrub_surrogates(input)
        if trace_id is None:
            trace_id = new_trace_id()
        elif not _TRACE_ID.fullmatch(trace_id):
            raise TetherError(
                f"trace_id must be 32 lowercase hex characters (a W3C trace id), got {trace_id!r}"
            )
        run_id = new_span_id()
        state = RunState(
            trace_id=trace_id,
            run_id=run_id,
            agent_name=self.spec.name,
            agent_version=self.version,
            paradigm=self.spec.paradigm,
            input=input,
            started_ns=now_ns(),
            metadata=dict(metadata or {}),
        )
        from tether.trace import RunRecorder, new_run_record  # loads the store: see TraceTarget

        if self._system_prompt:
            state.messages.append(Message(role="system", content=self._system_prompt))
        recorder = RunRecorder(self.sink, trace_id, run_id)
        run = new_run_record(
            trace_id,
            self.spec.name,
            self.version,
            stored_payload(input),  # clipped past TETHER_MAX_PAYLOAD_CHARS, as output is
            {semconv.TETHER_PARADIGM: self.spec.paradigm, **state.metadata},
            run_id=run_id,
        )
        self.sink.run_started(run)
        span = recorder.start_span(
            f"{semconv.OP_INVOKE_AGENT} {self.spec.name}",
            "agent",
            None,
            {
                semconv.GEN_AI_OPERATION_NAME: semconv.OP_INVOKE_AGENT,
                semconv.GEN_AI_AGENT_NAME: self.spec.name,
                semconv.TETHER_AGENT_VERSION: self.version,
                semconv.TETHER_PARADIGM: self.spec.paradigm,
                semconv.GEN_AI_PROVIDER_NAME: self.model.provider,
                semconv.GEN_AI_REQUEST_MODEL: self.model.name,
            },
            span_id=run_id,  # a run is the subtree under its root span
        )
        rc = RunContext(
            models=self._models(),
            tools=self.tools,
            tool_defs=self._tool_defs,
            settings=self._settings,
            limits=self.spec.limits,
            loop_breaker=self.spec.loop_breaker,
            pipeline=self._pipeline.with_recorder(recorder),
            recorder=recorder,
            pricing=self.pricing,
            agent_span_id=span.span_id,
        )
        try:
            await drive(rc, state)
        except BaseException as exc:
            # A crash (a bug, a cancelled task) still leaves a complete trace and a checkpoint.
            state.end(Outcome.ERROR)
            if not (isinstance(exc, asyncio.CancelledError) and state.stop_reason == "cancelled"):
                state.error = _crash_message(exc)  # else the loop has said it was cancelled
                state.stop_reason = "internal error"
            recorder.event(span.span_id, semconv.EVENT_RUN_ERROR, {"message": state.error})
            self._finish(recorder, span, run, state)
            recorder.checkpoint(state.schema_version, state.to_json(), "crash")
            raise
        if state.status == "paused":
            recorder.checkpoint(
                state.schema_version, state.to_json(), _outcome_text(state) or "paused"
            )
        self._finish(recorder, span, run, state)
        return RunResult.from_state(state)

    def _finish(self, recorder: RunRecorder, span: Any, run: RunRecord, state: RunState) -> None:
        outcome = _outcome_text(state)
        span.attributes[semconv.TETHER_RUN_OUTCOME] = outcome
        span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] = state.usage.input_tokens
        span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = state.usage.output_tokens
        if not state.unpriced_calls:  # unknown is not zero: leave it out
            span.attributes[semconv.TETHER_COST_USD] = state.cost_usd
        unpriced = (
            {semconv.TETHER_COST_UNPRICED: state.unpriced_calls} if state.unpriced_calls else {}
        )
        span.attributes.update(unpriced)
        error = stored_payload(state.error)
        if error and state.hint:
            error = f"{error}\n  hint: {state.hint}"
        recorder.end_span(span, error=error if state.status == "failed" else None)
        self.sink.run_ended(
            RunRecord(
                trace_id=run.trace_id,
                run_id=run.run_id,
                agent_name=run.agent_name,
                agent_version=run.agent_version,
                started_ns=run.started_ns,
                status=state.status,
                outcome=outcome,
                input=stored_payload(state.input),
                output=stored_payload(state.output),
                ended_ns=span.end_ns,
                input_tokens=state.usage.input_tokens,
                output_tokens=state.usage.output_tokens,
                cached_input_tokens=state.usage.cached_input_tokens,
                cost_usd=state.cost_usd,
                turns=state.turns,
                tool_calls=state.tool_calls,
                error=error,
                attributes={
                    **run.attributes,
                    "stop_reason": stored_payload(state.stop_reason),
                    **unpriced,
                },
            )
        )

    async def aclose(self) -> None:
        """Close the HTTP clients of the agent's models and tools (they reopen when used)."""
        for part in (*self._models(), *self.tools.values()):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()

    def _models(self) -> list[Model]:
        return [self.model, *self.fallback_models]

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def run_sync(self, input: str, **kwargs: Any) -> RunResult:
        """Blocking :meth:`run` for scripts and notebooks without an event loop. Each call runs
        its own event loop and closes the HTTP clients it opened before returning."""

        async def run_and_close() -> RunResult:
            try:
                return await self.run(input, **kwargs)
            finally:
                await self.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run_and_close())
        raise TetherError(
            "run_sync() was called inside a running event loop", hint="use 'await agent.run(...)'"
        )
