"""Demo scenario: a failing upstream served by the fallback while the circuit breaker opens.

An OpenAI-compatible upstream on 127.0.0.1 (served here, offline) answers 503 to every call;
the agent's primary model points at it, with a scripted fallback and a circuit breaker
(3 failures open it, 1 s cool-down). Runs 1-3 reach the upstream and fail over; the third
failure opens the circuit; runs 4-5 are refused at once (the upstream sees no request) and
still answered by the fallback; then the upstream recovers, the cool-down passes, and run 6
is the probe that the primary answers, closing the circuit.

``tether demo`` runs it as ``failing_upstream_scenario``; on its own::

    from tether.cli.demo_scenarios import print_failing_upstream, run_failing_upstream

    report = run_failing_upstream(trace=writer)      # a trace writer, or False
    print_failing_upstream(report, console)          # or report.to_json()
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from tether.cli.demo import _OrderHandler as _JsonHandler  # its JSON replies and silence
from tether.cli.demo_scenarios.report import ScenarioReport
from tether.controls import Control, Decision, HookContext
from tether.core import Outcome
from tether.providers import ModelResponse, ScriptedModel
from tether.resilience import CircuitBreakerModel, LocalBreakerStore
from tether.runtime import Agent, RunResult
from tether.runtime.scope import TraceTarget
from tether.spec import AgentSpec, CircuitBreakerConfig, ModelConfig, ResilienceConfig

PRIMARY = "gpt-4.1-mini"
BACKUP = "backup-model"
QUESTION = "Where is my order 1042?"
COOLDOWN_S = 1.0


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True
    failing = True
    requests = 0
    lock = threading.Lock()


class _UpstreamHandler(_JsonHandler):
    """The demo's JSON replies and silence, with chat completions that fail while
    ``failing``."""

    server: _Upstream

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests += 1
            failing = self.server.failing
        if failing:
            body: dict[str, Any] = {"error": {"message": "upstream overloaded", "type": "demo"}}
            self._reply(503, body)
            return
        message = {"role": "assistant", "content": "Order 1042 is in transit with DHL."}
        body = {
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "model": PRIMARY,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        }
        self._reply(200, body)


@contextmanager
def failing_upstream() -> Iterator[_Upstream]:
    """The failing upstream on 127.0.0.1 (a free port); set ``failing = False`` to recover."""
    server = _Upstream(("127.0.0.1", 0), _UpstreamHandler)
    thread = threading.Thread(target=server.serve_forever, name="demo-upstream", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _ServedBy(Control):
    """Notes which model answered each call (the reply's ``model``)."""

    name = "demo_served_by"

    def __init__(self) -> None:
        self.models: list[str] = []

    async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
        self.models.append(response.model)
        return Decision.allow()


@dataclass
class UpstreamRun:
    """One run of the scenario."""

    run: RunResult
    upstream: str
    """What the upstream was doing: ``failing`` or ``recovered``."""
    served_by: str
    """The model whose reply was the answer."""
    upstream_requests: int
    """Requests the upstream had received after this run (all runs so far)."""
    circuit: str
    """The primary's circuit after this run: ``closed``, ``open`` or ``half_open``."""


@dataclass
class FailingUpstreamReport:
    """What the scenario did, run by run."""

    endpoint: str
    """The primary's endpoint (what its circuit is kept per)."""
    runs: list[UpstreamRun] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        """Each run answered, the fallback while the upstream failed, the refused runs never
        reached the upstream, and the probe closed the circuit."""
        served = [r.served_by for r in self.runs]
        requests = [r.upstream_requests for r in self.runs]
        circuits = [r.circuit for r in self.runs]
        return (
            all(r.run.outcome == Outcome.FINAL_ANSWER for r in self.runs)
            and served == [BACKUP] * 5 + [PRIMARY]
            and requests == [1, 2, 3, 3, 3, 4]
            and circuits == ["closed", "closed", "open", "open", "open", "closed"]
        )

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "run_id": r.run.run_id,
                "upstream": r.upstream,
                "served_by": r.served_by,
                "upstream_requests": r.upstream_requests,
                "circuit": r.circuit,
                "outcome": r.run.outcome.value if r.run.outcome else None,
                "output": r.run.output,
            }
            for r in self.runs
        ]


def _spec(base_url: str) -> AgentSpec:
    return AgentSpec(
        name="resilient-support",
        persona="You are a support agent.",
        model=ModelConfig(
            provider="openai", name=PRIMARY, base_url=base_url, timeout_s=5, max_retries=0
        ),
        resilience=ResilienceConfig(
            circuit_breaker=CircuitBreakerConfig(
                failures=3, window_s=60, cooldown_s=COOLDOWN_S, shared="local"
            ),
        ),
    )


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """The report tells of the circuit's transitions: their log lines would repeat it."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def failing_upstream_demo(
    trace: TraceTarget = False, *, quiet: bool = True
) -> FailingUpstreamReport:
    """Run the scenario (six runs, about a second and a half) and say what happened.
    ``quiet`` keeps the breaker's log lines (``tether.resilience``) out meanwhile."""
    if not quiet:
        return await _scenario(trace)
    with _quiet(logging.getLogger("tether.resilience")):
        return await _scenario(trace)


async def _scenario(trace: TraceTarget) -> FailingUpstreamReport:
    served = _ServedBy()
    backup = ScriptedModel(
        [{"text": "Our order system is slow right now; order 1042 shipped and is on its way."}],
        name=BACKUP,
    )
    with failing_upstream() as upstream:
        base_url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
        agent = Agent(
            _spec(base_url),
            fallback_models=[backup],
            controls=[served],
            trace=trace,
            breaker_store=LocalBreakerStore(),  # the demo's own: nothing left from before
        )
        primary = agent.harness.chain.primary
        assert isinstance(primary, CircuitBreakerModel)
        report = FailingUpstreamReport(endpoint=primary.breaker.endpoint)
        async with agent:
            for i in range(6):
                if i == 5:  # the upstream recovers; the probe waits out the cool-down
                    upstream.failing = False
                    await asyncio.sleep(COOLDOWN_S)
                result = await agent.run(QUESTION, metadata={"demo": "failing upstream"})
                report.runs.append(
                    UpstreamRun(
                        run=result,
                        upstream="failing" if upstream.failing else "recovered",
                        served_by=served.models[-1] if served.models else "",
                        upstream_requests=upstream.requests,
                        circuit=(await primary.breaker.state()).state,
                    )
                )
    return report


def run_failing_upstream(
    trace: TraceTarget = False, *, quiet: bool = True
) -> FailingUpstreamReport:
    """:func:`failing_upstream_demo` from synchronous code (its own event loop)."""
    return asyncio.run(failing_upstream_demo(trace, quiet=quiet))


def print_failing_upstream(
    report: FailingUpstreamReport, console: Console, *, title: bool = True
) -> None:
    """The scenario, one line per run, for a terminal (``title``: with its name first)."""
    where = f"{escape(report.endpoint)} answers 503"
    console.print(f"\n[bold]failing upstream[/]: {where}" if title else f"upstream {where}")
    for i, r in enumerate(report.runs, 1):
        if r.upstream_requests == (report.runs[i - 2].upstream_requests if i > 1 else 0):
            reached = "refused at once: the upstream was not called"
        else:
            reached = f"upstream {'503' if r.upstream == 'failing' else '200'}"
        console.print(
            f"  run {i}: {reached}; answered by [cyan]{escape(r.served_by)}[/]; "
            f"circuit [bold]{escape(r.circuit)}[/]  [dim]{r.run.run_id}[/]",
            highlight=False,
        )
    console.print(
        f"  [dim]the circuit opened after 3 failures; after a {COOLDOWN_S:g}s cool-down one "
        "probe reached the recovered upstream and closed it[/]",
        highlight=False,
    )


async def failing_upstream_scenario(trace: TraceTarget, examples: Path) -> ScenarioReport:
    """The scenario as ``tether demo`` runs it (it needs none of the examples)."""
    report = await failing_upstream_demo(trace)
    return ScenarioReport(
        name="failing upstream",
        agent="resilient-support",
        as_expected=report.as_expected,
        show=lambda console: print_failing_upstream(report, console, title=False),
        data={"endpoint": report.endpoint, "runs": report.to_json()},
        runs=[r.run for r in report.runs],
        main=3 if len(report.runs) > 3 else -1,  # refused at once, answered by the fallback
    )
