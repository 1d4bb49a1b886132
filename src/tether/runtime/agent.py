"""``Agent``: a spec bound to its models, tools, controls and trace sink; a thin user of the run
scope (``runtime/scope.py``), where the run itself lives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tether.controls import CedarAuthorization, Control
from tether.controls.approvals import Approval
from tether.controls.budget_ledger import BudgetLedger
from tether.controls.budgets import resolve_budgets
from tether.controls.guard_build import build_guards
from tether.core import (
    AgentRef,
    Caller,
    EntryPoint,
    RunKind,
    TetherError,
    content_hash,
)
from tether.core.settings import project_from_env
from tether.providers import Model, ModelSettings, build_model
from tether.resilience import BreakerStore, resilient_models
from tether.runtime.chain import StreamHandler
from tether.runtime.paradigms import PARADIGMS
from tether.runtime.paradigms import resume as resume_paradigm
from tether.runtime.result import RunResult
from tether.runtime.scope import Harness, TraceTarget
from tether.runtime.spec_check import _check_cost_limit, _naming
from tether.runtime.structured import OutputSchema
from tether.spec import AgentSpec, load_spec
from tether.tools import Tool, build_tools
from tether.trace import AuditLog, PricingTable
from tether.trace.audit import POLICY_LOAD
from tether.trace.pricing import pricing_from_env

if TYPE_CHECKING:
    from tether.store import StoreReader

__all__ = ["Agent", "TraceTarget"]

# Enum members read once (see ``tether.controls.pipeline``: slow on Python 3.11).
_RUNTIME, _AGENT_RUN = EntryPoint.RUNTIME, RunKind.AGENT_RUN


def _audit_policy_load(harness: Harness, spec: AgentSpec, cedar: CedarAuthorization) -> None:
    """Record the policy set an agent loaded, by its content hash, in the audit log."""
    loaded = cedar.authorizer.loaded
    AuditLog(harness.sink).record(
        POLICY_LOAD,
        {"project": project_from_env(), "agent": spec.name, "agent_version": spec.version},
        {
            "files": list(spec.authorization.policies) if spec.authorization else [],
            "content_hash": content_hash(loaded.text),
            "policies": sorted(p.label for p in loaded.policies.values()),
        },
    )


class Agent:
    """An agent ready to run.

    ``trace`` says where traces go: ``None`` (default) uses ``TETHER_DATABASE_URL`` or the
    SQLite store in ``TETHER_HOME``; a database URL; any ``TraceSink``; or ``False`` for none.
    With the spec's ``resilience.circuit_breaker`` every model of the chain (built from the
    spec or given) gets a circuit breaker, kept in ``breaker_store`` if given, else where
    the spec's ``shared`` says. With the spec's ``budgets`` section every model call is checked
    against its budgets and rate limits, counted in ``budget_ledger`` if given, else where the
    section's ``backend`` says.
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
        output_schema: OutputSchema | type[BaseModel] | dict[str, Any] | None = None,
        breaker_store: BreakerStore | None = None,
        budget_ledger: BudgetLedger | None = None,
    ) -> None:
        self.spec = spec
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.model = model or build_model(spec.model, self.base_dir)
        self.fallback_models = (
            list(fallback_models)
            if fallback_models is not None
            else [build_model(c, self.base_dir) for c in spec.fallback_models]
        )
        pricing = pricing or pricing_from_env()
        _check_cost_limit(spec, [m.name for m in self._models()], pricing)
        self.output = _output_schema(spec, output_schema, self.base_dir)
        built = build_tools(spec.tools, base_dir=self.base_dir, provided=tools)
        own = list(controls)
        cedar: CedarAuthorization | None = None
        if spec.authorization is not None:  # last: it decides the call as other controls left it
            cedar = CedarAuthorization.from_spec(spec, built, self.base_dir)
            own.append(cedar)
        self.harness = Harness(
            # Behind circuit breakers when the spec's resilience section asks for them.
            models=resilient_models(self._models(), spec.resilience, breaker_store),
            tools=built,
            # The spec's guards (a policy file's first), then the controls above, then
            # spotlighting, which marks only what every control let through.
            controls=build_guards(spec.guards, base_dir=self.base_dir, model=self.model, extra=own),
            limits=spec.limits,
            loop_breaker=spec.loop_breaker,
            settings=ModelSettings(
                temperature=spec.model.temperature,
                seed=spec.model.seed,
                max_tokens=spec.model.max_tokens,
            ),
            trace=trace,
            pricing=pricing,
            degraded_answer=spec.resilience.degraded_answer,
            budgets=None if spec.budgets is None else resolve_budgets(spec.budgets, self.base_dir),
            budget_ledger=budget_ledger,
        )
        self._system_prompt = spec.system_prompt()
        if self.output is not None:
            self._system_prompt = "\n\n".join(
                p for p in (self._system_prompt, self.output.instruction()) if p
            )
        self._ref = AgentRef(name=spec.name, version=spec.version)
        if cedar is not None:
            _audit_policy_load(self.harness, spec, cedar)

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
        return self._ref.version

    @property
    def tools(self) -> dict[str, Tool]:
        return self.harness.tools

    @property
    def controls(self) -> list[Control]:
        """The pipeline's controls: the limits and the loop breaker, then the agent's own."""
        return self.harness.controls

    @property
    def sink(self) -> Any:
        return self.harness.sink

    @property
    def pricing(self) -> PricingTable:
        return self.harness.pricing

    async def run(
        self,
        input: str,
        *,
        trace_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        caller: Caller | None = None,
        stream: StreamHandler | None = None,
    ) -> RunResult:
        """Run the agent on one input. Always returns a result; stops are outcomes.

        ``trace_id`` (a W3C trace id) puts the run in a caller's trace, which other runs may
        share; the run's own id (``RunResult.run_id``) is its root span's id. ``caller`` says
        who the run is for (project, end user, roles), as controls see it. ``stream`` (a
        function or coroutine function) gets each model reply's events as they come
        (``TextDelta`` pieces of the answer among them); the result is the same."""
        scope = self.harness.open_run(
            input,
            agent=self._ref,
            caller=caller,
            entry_point=_RUNTIME,
            kind=_AGENT_RUN,
            trace_id=trace_id,
            metadata=metadata,
            system_prompt=self._system_prompt,
            paradigm=self.spec.paradigm,
        )
        async with scope as run:
            if not (await run.input()).stopped:
                await PARADIGMS[self.spec.paradigm](run, stream, self.output)
        return run.result()

    def approve(
        self, run_id: str, *, by: str, reason: str = "", call_id: str | None = None
    ) -> Approval:
        """Approve the tool call the paused run ``run_id`` waits on (a control escalated it),
        as ``by``; recorded in the audit log. :meth:`resume` then lets that call run, once."""
        from tether.runtime.approvals import decide

        return decide(
            self._store(), run_id, approved=True, approver=by, reason=reason,
            call_id=call_id, actor={"via": "sdk"},
        )  # fmt: skip

    def deny(
        self, run_id: str, *, by: str, reason: str = "", call_id: str | None = None
    ) -> Approval:
        """Deny the tool call the paused run ``run_id`` waits on, as ``by``; recorded in the
        audit log. :meth:`resume` then refuses that call (the model is told who denied it)."""
        from tether.runtime.approvals import decide

        return decide(
            self._store(), run_id, approved=False, approver=by, reason=reason,
            call_id=call_id, actor={"via": "sdk"},
        )  # fmt: skip

    async def resume(
        self,
        run_id: str,
        *,
        stream: StreamHandler | None = None,
        actor: dict[str, Any] | None = None,
    ) -> RunResult:
        """Go on with the run ``run_id``, paused on a tool call a control escalated, once a
        person has approved or denied that call (:meth:`approve`, ``tether approvals``).

        The run goes on as a new run in the same trace (its metadata ``resumed_from`` names
        the paused one), from the paused run's conversation, usage and counts, for the same
        caller. It starts with the calls the paused run stopped at: the approved call runs
        (once), a denied one is refused and the model is told who denied it; any other call
        that escalates asks again. A paused run is resumed once; it needs the store it was
        traced in, and this agent's spec version (what the approval was given under).
        ``actor`` says who resumes it in the audit log (default: ``{"via": "sdk"}``)."""
        from tether.runtime.approvals import answers_for, paused_state

        store = self._store()
        paused = paused_state(store, run_id)
        if (paused.agent_name, paused.agent_version) != (self.name, self.version):
            raise TetherError(
                f"run {paused.run_id} was paused in agent '{paused.agent_name}' version "
                f"{paused.agent_version}; this is agent '{self.name}' version {self.version}",
                hint="resume it with the spec it ran under",
            )
        pending = paused.awaiting_approval
        assert pending is not None
        answers = answers_for(store, paused)
        if pending.call_id not in answers:
            raise TetherError(
                f"nobody has approved or denied call {pending.call_id} ({pending.tool}) of run "
                f"{paused.run_id} yet",
                hint=f"tether approvals approve {paused.run_id} --by NAME (or deny)",
            )
        # The harness refuses a run resumed already, and its scope claims the paused run
        # once started (raising, its run recorded as failed, when another resume won).
        scope = self.harness.resume_run(paused, approvals=list(answers.values()), actor=actor)
        async with scope as run:
            await resume_paradigm(run, stream, self.output)
        return run.result()

    def _store(self) -> StoreReader:
        """The store this agent traces into (its queued records written first)."""
        return self.harness.store()

    async def aclose(self) -> None:
        """Close the HTTP clients of the agent's models and tools (they reopen when used)."""
        await self.harness.aclose()

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


def _output_schema(
    spec: AgentSpec,
    given: OutputSchema | type[BaseModel] | dict[str, Any] | None,
    base_dir: Path | None,
) -> OutputSchema | None:
    """The answer's required shape: the one passed in, else the spec's ``output``."""
    if isinstance(given, OutputSchema):
        return given
    if given is not None:
        max_reasks = spec.output.max_reasks if spec.output is not None else 2
        return OutputSchema(given, max_reasks=max_reasks)
    if spec.output is None:
        return None
    return OutputSchema.from_config(spec.output, base_dir)
