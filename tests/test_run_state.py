"""``RunState`` is persisted: golden fixtures of every schema version must keep loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tether import Outcome, RunState
from tether.runtime import RUN_STATE_SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures"


def test_v1_golden_fixture_loads_with_every_field() -> None:
    state = RunState.from_json((FIXTURES / "run_state_v1.json").read_text())
    assert state.schema_version == 1
    assert state.trace_id == "0" * 31 + "1"
    assert state.outcome is Outcome.FINAL_ANSWER and state.status == "completed"
    assert [m.role for m in state.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert [c.arguments for c in state.messages[2].tool_calls] == [{"key": "a"}, {"key": "b"}]
    assert state.messages[3].tool_call_id == state.messages[2].tool_calls[0].id
    assert len(state.tool_history) == 2 and state.tool_history[0].name == "lookup"
    assert state.usage.input_tokens > 0 and state.turns == 2 and state.tool_calls == 2
    assert state.metadata == {"ticket": "T-1"}


def test_round_trip_is_lossless() -> None:
    raw = json.loads((FIXTURES / "run_state_v1.json").read_text())
    state = RunState.model_validate(raw)
    dumped = json.loads(state.to_json())
    # Fields added since the fixture was written (with defaults) may appear; nothing it had
    # may change or disappear.
    assert {k: dumped[k] for k in raw} == raw
    assert RunState.from_json(state.to_json()) == state


def test_current_version_has_a_golden_fixture() -> None:
    assert (FIXTURES / f"run_state_v{RUN_STATE_SCHEMA_VERSION}.json").is_file()


def test_unknown_schema_version_is_refused() -> None:
    raw = json.loads((FIXTURES / "run_state_v1.json").read_text())
    raw["schema_version"] = 99
    with pytest.raises(ValidationError, match="schema_version"):
        RunState.model_validate(raw)
