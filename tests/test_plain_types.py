"""The run path's per-step types (``RunState``, ``Message``, ``Usage``, ``ModelRequest``,
``ModelResponse``) are plain slotted dataclasses with pydantic's methods at the boundary."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from tether import Agent, Message, ModelRequest, ModelResponse, RunState, ToolCall, Usage


def test_model_validate_checks_what_the_constructor_takes_as_given() -> None:
    with pytest.raises(ValidationError, match="role"):
        Message.model_validate({"role": "nobody", "content": "hi"})
    with pytest.raises(ValidationError, match="input_tokens"):
        Usage.model_validate({"input_tokens": "lots"})
    request = ModelRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], "tools": []}
    )
    assert request.messages == [Message(role="user", content="hi")]


def test_model_validate_takes_pydantic_s_options() -> None:
    """``strict`` and ``context`` as ``BaseModel.model_validate(_json)`` take them (code
    written against the pydantic models passed them: a TypeError since the change)."""
    assert Usage.model_validate({"input_tokens": "5"}).input_tokens == 5
    with pytest.raises(ValidationError, match="input_tokens"):
        Usage.model_validate({"input_tokens": "5"}, strict=True)
    with pytest.raises(ValidationError, match="turns"):
        RunState.model_validate_json('{"trace_id": "t", "input": "i", "turns": "3"}', strict=True)
    message = Message.model_validate({"role": "user"}, strict=False, context={"from": "test"})
    assert message == Message(role="user")


def test_model_copy_replaces_fields_and_leaves_the_original() -> None:
    reply = ModelResponse(content="a", tool_calls=[ToolCall(id="c1", name="t")])
    copy = reply.model_copy(update={"content": "b"})
    assert (copy.content, reply.content) == ("b", "a")
    assert copy.tool_calls == reply.tool_calls
    deep = reply.model_copy(deep=True)
    deep.tool_calls.append(ToolCall(id="c2", name="t"))
    assert len(reply.tool_calls) == 1


def test_printed_and_dumped_as_the_pydantic_models_were() -> None:
    usage = Usage(input_tokens=5, output_tokens=7)
    assert str(usage) == "input_tokens=5 output_tokens=7 cached_input_tokens=0"
    assert repr(usage) == "Usage(input_tokens=5, output_tokens=7, cached_input_tokens=0)"
    assert usage.model_dump() == {"input_tokens": 5, "output_tokens": 7, "cached_input_tokens": 0}
    assert Message(role="user", content="hi").model_dump_json() == (
        '{"role":"user","content":"hi","tool_calls":[],"tool_call_id":null,"name":null}'
    )


def test_a_state_survives_pickle_and_json() -> None:
    state = RunState(trace_id="0" * 32, input="hi", messages=[Message(role="user", content="hi")])
    state.usage = state.usage + Usage(input_tokens=3)
    assert pickle.loads(pickle.dumps(state)) == state
    assert RunState.from_json(state.to_json()) == state
    with pytest.raises(AttributeError):
        state.no_such_field = 1  # type: ignore[attr-defined]


def test_a_state_with_lone_surrogates_checkpoints_them_as_replacement_characters() -> None:
    """Metadata is free-form (a caller's JSON-decoded payload may hold ``"\\ud800"``): the
    state's JSON has U+FFFD there, as the store writes every text, instead of failing."""
    state = RunState(
        trace_id="0" * 32,
        input="hi",
        metadata={"k\udcff": "v\ud800", "n": [1, "\udc80", {"x": ("\ud800",)}]},
    )
    loaded = RunState.from_json(state.to_json())
    assert loaded.metadata == {"k\ufffd": "v\ufffd", "n": [1, "\ufffd", {"x": ["\ufffd"]}]}
    assert state.metadata["k\udcff"] == "v\ud800"  # the state itself is left as it is


async def test_a_run_with_lone_surrogates_in_its_metadata_pauses_and_resumes(
    tmp_path: Path, sqlite_url: str
) -> None:
    """It raised PydanticSerializationError out of ``Agent.run`` when the paused run was
    checkpointed, and the run's record was never finished."""
    from test_approvals import agent_dir, refunds_made

    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    paused = await agent.run("please refund 500 on 7", metadata={"order": "7\ud800"})
    assert paused.outcome == "escalated"
    agent.approve(paused.run_id, by="alice")
    resumed = await agent.resume(paused.run_id)
    assert resumed.outcome == "final_answer" and refunds_made(tmp_path) == ["issue_refund 7 500"]
    assert resumed.state.metadata["order"] == "7\ufffd"
    await agent.aclose()


async def test_a_caller_with_lone_surrogates_runs_and_is_stored(
    tmp_path: Path, sqlite_url: str
) -> None:
    """An end user id is the application's text (maybe JSON-decoded): with a lone surrogate
    in it Cedar could not read the principal (the run ended control_error) and the store
    skipped the run's trace record. The run's caller has U+FFFD there, as its input does."""
    from fakes.traces import trace_of
    from test_approvals import agent_dir, refunds_made
    from tether import Caller

    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sqlite_url)
    caller = Caller(end_user="bob\ud800", roles=frozenset({"support\udcff"}))
    result = await agent.run("please refund 50 on 7", caller=caller)
    await agent.aclose()
    assert result.outcome == "final_answer", result.state.stop_reason
    assert refunds_made(tmp_path) == ["issue_refund 7 50"]
    assert result.state.caller.end_user == "bob\ufffd"
    assert result.state.caller.roles == frozenset({"support\ufffd"})
    run, _, _ = trace_of(sqlite_url, result.run_id)
    assert run.outcome == "final_answer"


async def test_a_run_result_has_every_field_and_stays_frozen() -> None:
    """``RunResult.from_state`` fills the instance directly (not through ``__init__``): every
    field must be there, equal to what the constructor would make of them."""
    import dataclasses

    from tether import Agent, AgentSpec, ModelConfig, ScriptedModel

    spec = AgentSpec(
        name="plain",
        instructions="Answer.",
        model=ModelConfig(provider="scripted", name="scripted", script="unused.yaml"),
    )
    result = await Agent(spec, model=ScriptedModel([{"text": "hi"}]), trace=False).run("x")
    names = [f.name for f in dataclasses.fields(result)]
    assert list(vars(result)) == names
    rebuilt = type(result)(**{n: getattr(result, n) for n in names})
    assert rebuilt == result and repr(rebuilt) == repr(result)
    assert result.ok and result.output == "hi" and result.usage.output_tokens > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.output = "changed"  # type: ignore[misc]
