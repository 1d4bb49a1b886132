"""``Outcome``: one type for how a run ends, whose status is the status real runs store.

Each outcome is produced by a real run (``ScriptedModel``, ``FailingModel``, real controls and
tools) traced into a real SQLite file; the stored run, its span and its checkpoints keep plain
strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from fakes.models import FailingModel
from fakes.specs import make_spec
from tether import (
    Agent,
    Control,
    Decision,
    HookContext,
    Limits,
    Outcome,
    RunState,
    ScriptedModel,
    ToolCall,
    tool,
)
from tether.cli.render import OUTCOME_STYLE, result_json
from tether.spec import BudgetsConfig
from tether.store import Store
from tether.trace import semconv, writer_for


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value-of-{key}"


def _call(key: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "lookup", "arguments": {"key": key}}]}


class _Stopper(Control):
    """Stops the run before the first tool call with the decision it was built with."""

    name = "stopper"

    def __init__(self, decide: Callable[[], Decision]) -> None:
        self.decide = decide

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        return self.decide()


class _Raising(Control):
    name = "raising"

    async def on_input(self, ctx: HookContext, text: str) -> Decision:
        raise RuntimeError("classifier unavailable")


def _two_turns() -> list[dict[str, Any]]:
    return [_call("a"), {"text": "done"}]


def _agent_for(outcome: Outcome, url: str) -> Agent:
    """An agent whose run ends with ``outcome``, built the way the other tests produce it."""
    answer = ScriptedModel([_call("a"), {"text": "done"}])
    if outcome is Outcome.FINAL_ANSWER:
        return Agent(make_spec(), model=answer, tools=[lookup], trace=url)
    if outcome is Outcome.LIMIT_EXCEEDED:
        steps = [_call(f"k{i}") for i in range(5)]
        spec = make_spec(limits=Limits(max_turns=2))
        return Agent(spec, model=ScriptedModel(steps), tools=[lookup], trace=url)
    if outcome in (Outcome.BUDGET_EXCEEDED, Outcome.RATE_LIMITED):
        # The first model call's worst case (its input and 100 output tokens) has no room
        # (counted in the store's own database, next to the trace).
        limit = (
            {"limits": [{"scope": "run", "tokens": 50}]}
            if outcome is Outcome.BUDGET_EXCEEDED
            else {"rate_limits": [{"scope": "run", "tpm": 50}]}
        )
        spec = make_spec(budgets=BudgetsConfig(max_output_tokens=100, **limit))
        return Agent(spec, model=ScriptedModel(_two_turns()), tools=[lookup], trace=url)
    if outcome is Outcome.LOOP_DETECTED:
        return Agent(make_spec(), model=ScriptedModel([_call("same")]), tools=[lookup], trace=url)
    stops: dict[Outcome, Callable[[], Decision]] = {
        Outcome.BLOCKED: lambda: Decision.block("not allowed", outcome=Outcome.BLOCKED),
        Outcome.ESCALATED: lambda: Decision.escalate("needs approval"),
        Outcome.DEFERRED: lambda: Decision.defer("later"),
    }
    if outcome in stops:
        controls = [_Stopper(stops[outcome])]
        return Agent(make_spec(), model=answer, tools=[lookup], controls=controls, trace=url)
    if outcome is Outcome.CONTROL_ERROR:
        return Agent(make_spec(), model=answer, controls=[_Raising()], trace=url)
    if outcome is Outcome.EMPTY_ANSWER:
        return Agent(make_spec(), model=ScriptedModel([{"text": ""}]), trace=url)
    assert outcome is Outcome.ERROR
    return Agent(make_spec(), model=FailingModel(), trace=url)


@pytest.mark.parametrize("outcome", list(Outcome), ids=str)
async def test_every_outcomes_status_is_what_a_real_run_stores(
    sqlite_url: str, outcome: Outcome
) -> None:
    result = await _agent_for(outcome, sqlite_url).run("hi")
    assert result.outcome is outcome and result.state.outcome is outcome
    assert result.status == outcome.status == result.state.status

    writer_for(sqlite_url).flush()
    store = Store(sqlite_url)
    run = store.get_run(result.run_id)
    assert (run.outcome, run.status) == (outcome.value, outcome.status)
    assert type(run.outcome) is str
    root = next(s for s in store.get_spans(result.run_id) if s.span_id == result.run_id)
    assert root.attributes[semconv.TETHER_RUN_OUTCOME] == outcome.value
    assert type(root.attributes[semconv.TETHER_RUN_OUTCOME]) is str
    for checkpoint in store.get_checkpoints(result.run_id):  # paused runs: escalated, deferred
        assert checkpoint.reason == outcome.value
        assert json.loads(checkpoint.state_json)["outcome"] == outcome.value
        assert RunState.from_json(checkpoint.state_json).outcome is outcome
    assert bool(store.get_checkpoints(result.run_id)) == (outcome.status == "paused")


def test_statuses() -> None:
    assert {o.value: o.status for o in Outcome} == {
        "final_answer": "completed",
        "limit_exceeded": "completed",
        "loop_detected": "completed",
        "budget_exceeded": "completed",
        "rate_limited": "completed",
        "blocked": "completed",
        "escalated": "paused",
        "deferred": "paused",
        "control_error": "failed",
        "empty_answer": "failed",
        "error": "failed",
    }


async def test_run_result_outcome_still_equals_its_string() -> None:
    """Code written against the strings keeps working."""
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "hello"}]), trace=False)
    result = await agent.run("hi")
    assert isinstance(result.outcome, Outcome) and result.ok
    assert result.outcome == "final_answer" and result.outcome != "error"
    assert result.outcome in ("final_answer", "limit_exceeded")
    assert {"final_answer": "ok"}[result.outcome] == "ok"
    assert f"{result.outcome}" == str(result.outcome) == "final_answer"
    assert json.dumps(result.outcome) == '"final_answer"'
    match result.outcome:
        case "final_answer":
            matched = True
        case _:
            matched = False
    assert matched
    as_json = result_json(result)
    assert type(as_json["outcome"]) is str and as_json["outcome"] == "final_answer"


def test_run_state_serializes_outcomes_as_plain_strings() -> None:
    state = RunState(trace_id="0" * 31 + "1", agent_name="a", agent_version="1", input="x")
    state.end(Outcome.LOOP_DETECTED)
    assert (state.outcome, state.status) == (Outcome.LOOP_DETECTED, "completed")
    dumped = json.loads(state.to_json())
    assert dumped["outcome"] == "loop_detected" and dumped["status"] == "completed"
    assert RunState.from_json(state.to_json()).outcome is Outcome.LOOP_DETECTED


def test_a_decision_takes_an_outcome_or_its_string_and_refuses_a_misspelt_one() -> None:
    assert Decision.block("r", outcome="blocked").outcome is Outcome.BLOCKED
    assert Decision.block("r", outcome=Outcome.LIMIT_EXCEEDED).outcome is Outcome.LIMIT_EXCEEDED
    assert Decision.block("r").outcome is None
    assert Decision.escalate("e").outcome is Outcome.ESCALATED
    assert Decision.defer("d").outcome is Outcome.DEFERRED
    with pytest.raises(ValueError, match="unknown outcome 'limit_exeeded': one of final_answer"):
        Decision.block("r", outcome="limit_exeeded")


async def test_a_control_naming_an_unknown_outcome_fails_closed() -> None:
    stopper = _Stopper(lambda: Decision.block("r", outcome="nope"))
    model = ScriptedModel([_call("a"), {"text": "done"}])
    agent = Agent(make_spec(), model=model, tools=[lookup], controls=[stopper], trace=False)
    result = await agent.run("hi")
    assert result.outcome is Outcome.CONTROL_ERROR and result.status == "failed"
    assert "unknown outcome 'nope'" in (result.stop_reason or "")


def test_the_cli_has_a_style_for_every_outcome() -> None:
    assert set(OUTCOME_STYLE) == set(Outcome)
