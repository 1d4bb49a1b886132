"""Structured answers: an answer that breaks the required JSON Schema (or pydantic model) is
re-asked, at most ``max_reasks`` times, each attempt a model call and an event in the trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import Agent, ScriptedModel
from tether.core import SpecError
from tether.runtime.paradigms import EVENT_OUTPUT_VALIDATION
from tether.runtime.structured import OutputSchema, unfenced

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "status": {"enum": ["processing", "in transit", "delivered"]},
    },
    "required": ["order_id", "status"],
    "additionalProperties": False,
}


def validations(url: str, run_id: str) -> list[dict[str, Any]]:
    _, _, events = trace_of(url, run_id)
    return [e.attributes for e in events if e.name == EVENT_OUTPUT_VALIDATION]


async def test_a_wrong_answer_is_re_asked_and_fixed(sqlite_url: str) -> None:
    model = ScriptedModel(
        [
            {"text": '{"order_id": "1042", "status": "shipped"}'},
            {"text": '```json\n{"order_id": 1042, "status": "in transit"}\n```'},
        ]
    )
    agent = Agent(make_spec(output={"json_schema": SCHEMA}), model=model, trace=sqlite_url)
    result = await agent.run("Where is order 1042?")

    assert result.outcome == "final_answer"
    assert json.loads(result.output) == {"order_id": 1042, "status": "in transit"}
    assert result.state.turns == 2
    # The model saw the schema up front and was told what was wrong.
    assert '"required":["order_id","status"]' in result.state.messages[0].content
    checks = validations(sqlite_url, result.run_id)
    assert [(c["attempt"], c["valid"]) for c in checks] == [(0, False), (1, True)]
    assert any("at /order_id" in p and "integer" in p for p in checks[0]["problems"])
    assert any("at /status" in p for p in checks[0]["problems"])
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    chats = [s for s in spans if s.kind == "model"]
    assert len(chats) == 2
    sent = json.dumps(chats[1].attributes)
    assert "does not match the required format" in sent


async def test_re_asks_are_bounded_and_the_run_fails_with_the_problems(sqlite_url: str) -> None:
    model = ScriptedModel([{"text": "It is in transit."}])
    agent = Agent(
        make_spec(output={"json_schema": SCHEMA, "max_reasks": 2}), model=model, trace=sqlite_url
    )
    result = await agent.run("Where is order 1042?")

    assert result.outcome == "error" and result.status == "failed"
    assert result.state.turns == 3  # the answer and two re-asks
    assert "required format" in result.output
    assert "after 2 re-asks" in (result.error or "")
    assert "not JSON" in (result.error or "")
    assert [c["attempt"] for c in validations(sqlite_url, result.run_id)] == [0, 1, 2]


async def test_zero_re_asks_fails_at_once(sqlite_url: str) -> None:
    agent = Agent(
        make_spec(output={"json_schema": SCHEMA, "max_reasks": 0}),
        model=ScriptedModel([{"text": "[]"}]),
        trace=sqlite_url,
    )
    result = await agent.run("x")
    assert result.outcome == "error" and result.state.turns == 1


class Order(BaseModel):
    order_id: int
    status: str


async def test_a_pydantic_model_from_python(sqlite_url: str) -> None:
    model = ScriptedModel(
        [{"text": '{"order_id": "abc"}'}, {"text": '{"order_id": 7, "status": "ok"}'}]
    )
    agent = Agent(make_spec(), model=model, output_schema=Order, trace=sqlite_url)
    result = await agent.run("x")
    assert Order.model_validate_json(result.output) == Order(order_id=7, status="ok")
    problems = validations(sqlite_url, result.run_id)[0]["problems"]
    assert any(p.startswith("at /order_id") for p in problems)
    assert any(p.startswith("at /status") for p in problems)


async def test_the_schema_from_a_file_next_to_the_spec(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "answer.schema.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "script.yaml").write_text(
        'steps: [{text: \'{"order_id": 1, "status": "delivered"}\'}]\n'
    )
    (tmp_path / "agent.yaml").write_text(
        "name: structured\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        "output: {json_schema: answer.schema.json, max_reasks: 1}\n"
    )
    agent = Agent.from_yaml(tmp_path / "agent.yaml", trace=sqlite_url)
    result = await agent.run("x")
    assert result.outcome == "final_answer"


def test_a_bad_schema_fails_at_load_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(
        "name: structured\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        "output:\n"
        "  json_schema:\n"
        "    type: object\n"
        "    properties: {code: {type: string, pattern: '(\\d+)+$'}}\n"
    )
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(tmp_path / "agent.yaml", trace=False)
    assert f"{tmp_path / 'agent.yaml'}:4: output.json_schema:" in info.value.message
    assert "/properties/code/pattern repeats a group" in info.value.message


def test_a_schema_file_that_is_not_a_schema_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "objekt"}')
    (tmp_path / "script.yaml").write_text("steps: [{text: hi}]\n")
    (tmp_path / "agent.yaml").write_text(
        "name: structured\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        "output: {json_schema: s.json}\n"
    )
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(tmp_path / "agent.yaml", trace=False)
    assert f"{tmp_path / 's.json'}: not a valid JSON Schema" in info.value.message


@pytest.mark.parametrize(
    "answer",
    ["", "\x00", "[" * 100_000 + "]" * 100_000, '{"order_id": ' + "9" * 5000 + "}", "\ud800"],
)
def test_hostile_answers_get_problems_not_crashes(answer: str) -> None:
    _, problems = OutputSchema(SCHEMA).check(answer)
    assert problems


def test_unfenced_takes_one_code_block_only() -> None:
    assert unfenced("```json\n{}\n```") == "{}"
    assert unfenced("  {}  ") == "{}"
    assert unfenced("see ```{}```") == "see ```{}```"
