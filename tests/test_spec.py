"""Agent specs: loading the YAML, content-hash versions, and errors that name file:line:field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fakes.specs import spec_error as load_error
from fakes.specs import write_spec as write
from tether.core import SpecError
from tether.spec import (
    AgentSpec,
    HttpToolSpec,
    Limits,
    ModelConfig,
    PythonToolSpec,
    load_spec,
)
from tether.spec.loader import MAX_SPEC_BYTES

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support" / "agent.yaml"

# Each line's number is in its comment so the expected ``file:line`` in the tests below is
# checkable by eye.
BASE = """\
name: demo                  # 1
model:                      # 2
  provider: scripted        # 3
  name: gpt-test            # 4
  script: demo.script.yaml  # 5
tools:                      # 6
  - name: lookup            # 7
    function: tools.py:lookup  # 8
  - name: status            # 9
    kind: http              # 10
    url: http://127.0.0.1/x/{id}  # 11
    allowed_hosts: [127.0.0.1]    # 12
    parameters:             # 13
      id: {type: integer}   # 14
limits:                     # 15
  max_turns: 4              # 16
"""


# --- the example and versions ------------------------------------------------------------------


def test_example_spec_loads() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.name == "support"
    assert spec.model == ModelConfig(
        provider="scripted", name="gpt-4.1-mini", script="support.script.yaml", temperature=0
    )
    assert [t.name for t in spec.tools] == ["kb_lookup", "order_status"]
    kb, order = spec.tools
    assert isinstance(kb, PythonToolSpec)
    assert kb.function == "tools.py:kb_lookup"
    assert isinstance(order, HttpToolSpec)
    assert order.url == "${ORDER_API_URL}/orders/{order_id}"
    assert order.allowed_hosts == ["127.0.0.1"]
    assert order.scopes == ["orders:read"]
    assert order.timeout_s == 5
    assert order.parameters["order_id"].type == "integer"
    assert spec.limits == Limits(max_turns=6, max_tool_calls=4, max_cost_usd=0.05, timeout_s=30)


def test_version_is_a_stable_16_hex_hash(tmp_path: Path) -> None:
    first = load_spec(EXAMPLE).version
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert load_spec(EXAMPLE).version == first
    # A copy elsewhere is the same content, so the same version.
    copy = tmp_path / "agent.yaml"
    shutil.copy(EXAMPLE, copy)
    assert load_spec(copy).version == first


def test_version_ignores_key_order_whitespace_comments_and_spelled_out_defaults(
    tmp_path: Path,
) -> None:
    reordered = """
# the same agent, written differently
limits: {max_turns: 4}
tools:
  - {function: "tools.py:lookup", name: lookup, kind: python}
  - kind: http
    parameters:
      id:
        type: integer
    allowed_hosts:
      - 127.0.0.1
    url: "http://127.0.0.1/x/{id}"
    name: status


model: {script: demo.script.yaml,   name: gpt-test, provider: scripted}
paradigm: react      # the default, spelled out
name: demo
"""
    original = load_spec(write(tmp_path, BASE, "a.yaml"))
    same = load_spec(write(tmp_path, reordered, "b.yaml"))
    assert same == original
    assert same.version == original.version


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("name: demo  ", "name: demo2 "),
        ("name: gpt-test  ", "name: gpt-4.1   "),
        ("max_turns: 4", "max_turns: 5"),
        ("id: {type: integer}", "id: {type: string} "),
        ("allowed_hosts: [127.0.0.1]", "allowed_hosts: [localhost]"),
        ("function: tools.py:lookup", "function: tools.py:lookup2"),
        ("provider: scripted        # 3", "provider: scripted\n  temperature: 0.5"),
    ],
)
def test_version_changes_when_any_field_changes(tmp_path: Path, old: str, new: str) -> None:
    assert old in BASE
    original = load_spec(write(tmp_path, BASE, "a.yaml"))
    changed = load_spec(write(tmp_path, BASE.replace(old, new, 1), "b.yaml"))
    assert changed != original
    assert changed.version != original.version


def test_version_follows_a_copied_spec(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    before = spec.version
    renamed = spec.model_copy(update={"name": "renamed"})
    assert renamed.version != before
    assert renamed.version == AgentSpec.model_validate(renamed.model_dump()).version
    assert spec.version == before


# --- malformed files ---------------------------------------------------------------------------


def test_bad_indentation_names_file_line_and_column(tmp_path: Path) -> None:
    message = load_error(tmp_path, "name: x\nmodel:\n  provider: scripted\n    name: y\n")
    assert f"{tmp_path / 'agent.yaml'}:4:9: malformed YAML" in message


def test_unclosed_bracket_names_file_line_and_column(tmp_path: Path) -> None:
    text = "name: x\ntools: [a, b\nlimits:\n  max_turns: 3\n"
    message = load_error(tmp_path, text)
    assert f"{tmp_path / 'agent.yaml'}:3:7: malformed YAML" in message
    assert "flow sequence" in message


def test_unclosed_quote_is_malformed_yaml(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'name: "abc\nx: 1\n')
    assert re.search(r"agent\.yaml:\d+:\d+: malformed YAML: .*quoted scalar", message)


@pytest.mark.parametrize(
    ("text", "found"),
    [("- name: a\n- name: b\n", "a list"), ("", "empty"), ("# only a comment\n", "empty")],
)
def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path: Path, text: str, found: str) -> None:
    message = load_error(tmp_path, text)
    assert "agent.yaml:1: expected a mapping of fields" in message
    assert found in message


def test_a_scalar_file_is_rejected(tmp_path: Path) -> None:
    assert "found a str" in load_error(tmp_path, "just some words\n")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="file not found") as info:
        load_spec(missing)
    assert str(missing) in str(info.value)


def test_a_directory_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read") as info:
        load_spec(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"name: x\n" + b"#" * MAX_SPEC_BYTES)
    with pytest.raises(SpecError, match=f"limited to {MAX_SPEC_BYTES}") as info:
        load_spec(path)
    assert str(path) in str(info.value)
    # Exactly at the limit is allowed (and then fails only on content).
    path.write_bytes(b"name: x\n" + b"#" * (MAX_SPEC_BYTES - 8))
    with pytest.raises(SpecError, match="model: Field required"):
        load_spec(path)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8") as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert "byte 9" in str(info.value)


# --- validation errors name file, line and field ----------------------------------------------


def test_invalid_limit_names_line_and_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("max_turns: 4", "max_turns: 0"))
    assert "invalid AgentSpec" in message
    assert f"{tmp_path / 'agent.yaml'}:16: limits.max_turns:" in message
    assert "greater than 0" in message


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        ("max_turns: 1000000", "max_turns", "less than or equal to 100000"),
        ("max_total_tokens: 1180591620717411303424", "max_total_tokens", "less than or equal"),
        ("max_cost_usd: 1e305", "max_cost_usd", "less than or equal to 10000000"),
        ("max_cost_usd: .inf", "max_cost_usd", "finite number"),
        ("timeout_s: .nan", "timeout_s", "finite number"),
        ("timeout_s: 1e9", "timeout_s", "less than or equal to 604800"),
    ],
)
def test_limits_past_any_sensible_value_are_refused(
    tmp_path: Path, line: str, field: str, says: str
) -> None:
    """A limit no run could mean (2^70 tokens, infinite dollars, a NaN timeout) is a typo:
    refused at load with its line, not carried into what reads it (Cedar's 64-bit Longs, the
    run's clock)."""
    message = load_error(tmp_path, BASE.replace("max_turns: 4", line))
    assert f"limits.{field}:" in message and says in message, message


def test_unknown_key_is_rejected_by_name(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("max_turns: 4", "max_turn: 4"))
    assert "agent.yaml:16: limits.max_turn: Extra inputs are not permitted" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE + "instructons: be nice\n")
    assert "agent.yaml:17: instructons: Extra inputs are not permitted" in message


def test_error_in_second_tool_names_index_and_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("id: {type: integer}", "id: {type: int}"))
    assert "agent.yaml:14: tools[1].parameters.id.type: Input should be" in message
    assert "http" not in message.split("tools[1]", 1)[1].split(":", 1)[0]


def test_python_tool_error_names_its_field(tmp_path: Path) -> None:
    text = BASE.replace("function: tools.py:lookup", "side_effects: delete")
    message = load_error(tmp_path, text)
    assert "agent.yaml:8: tools[0].side_effects: Input should be 'read', 'write' or" in message


def test_tool_parameter_named_like_a_tool_kind(tmp_path: Path) -> None:
    # The union tags ("python", "http") are stripped from error locations, but a field that
    # really is called "http" must stay in the path.
    text = BASE.replace("id: {type: integer}", "id: {type: integer}\n      http: {type: url}")
    message = load_error(tmp_path, text)
    assert "agent.yaml:15: tools[1].parameters.http.type: Input should be" in message


def test_unknown_tool_kind(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("kind: http", "kind: grpc"))
    assert (
        "agent.yaml:10: tools[1].kind: unknown tool kind 'grpc'; "
        "valid kinds are 'python' (the default), 'http' and 'python_sandbox'"
    ) in message
    assert "found using" not in message and "_tool_kind()" not in message


def test_http_tool_without_allowed_hosts(tmp_path: Path) -> None:
    text = BASE.replace("    allowed_hosts: [127.0.0.1]    # 12\n", "")
    message = load_error(tmp_path, text)
    assert "agent.yaml:9: tools[1].allowed_hosts: Field required" in message


def test_http_tool_with_empty_allowed_hosts(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("[127.0.0.1]", "[]"))
    assert "agent.yaml:12: tools[1].allowed_hosts:" in message
    assert "at least 1" in message


def test_scripted_model_without_script(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("  script: demo.script.yaml  # 5\n", ""))
    assert "agent.yaml:2: model:" in message
    assert "a scripted model needs 'script'" in message


def test_script_on_a_non_scripted_model(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("provider: scripted", "provider: openai"))
    assert "agent.yaml:2: model:" in message
    assert "'script' applies only to provider 'scripted'" in message


def test_fallback_model_error_names_its_index(tmp_path: Path) -> None:
    text = (
        BASE + "fallback_models:\n  - {provider: openai, name: a}\n  - {name: b, max_retries: 99}\n"
    )
    message = load_error(tmp_path, text)
    assert "agent.yaml:19: fallback_models[1].max_retries:" in message


def test_duplicate_tool_names(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("name: status", "name: lookup"))
    assert "tool name 'lookup' is declared twice" in message
    assert "agent.yaml" in message


def test_invalid_agent_name(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("name: demo  ", "name: 'my agent'"))
    assert "agent.yaml:1: name: String should match pattern" in message


def test_every_error_is_reported(tmp_path: Path) -> None:
    text = BASE.replace("max_turns: 4", "max_turns: -1").replace(
        "kind: http", "kind: http\n    x: 1"
    )
    lines = load_error(tmp_path, text).splitlines()
    assert lines[0].startswith("invalid AgentSpec in ")
    assert any("tools[1].x: Extra inputs" in line for line in lines)
    assert any("limits.max_turns:" in line for line in lines)


# --- the system prompt -------------------------------------------------------------------------


def test_system_prompt_orders_persona_goal_instructions() -> None:
    spec = AgentSpec(
        name="a",
        model=ModelConfig(name="m", script="s.yaml"),
        instructions="  Be brief.\nCite sources.\n",
        goal=" Answer questions. ",
        persona="\nYou are Ada.\n",
    )
    assert (
        spec.system_prompt()
        == "You are Ada.\n\nGoal: Answer questions.\n\nBe brief.\nCite sources."
    )


def test_system_prompt_skips_empty_parts() -> None:
    spec = AgentSpec(name="a", model=ModelConfig(name="m", script="s.yaml"), instructions="Go.")
    assert spec.system_prompt() == "Go."
    blank = AgentSpec(name="a", model=ModelConfig(name="m", script="s.yaml"), goal="  ")
    assert blank.system_prompt() == ""


def test_example_system_prompt() -> None:
    prompt = load_spec(EXAMPLE).system_prompt()
    persona = prompt.index("You are Tess")
    goal = prompt.index("Goal: Resolve the customer's question")
    instructions = prompt.index("Use kb_lookup for policy questions")
    assert persona == 0 < goal < instructions
    assert prompt.endswith("what to do next.")


def test_adding_a_defaulted_field_keeps_versions() -> None:
    """A later release that adds a field with a default must not re-version every agent."""
    from pydantic import Field, create_model

    base = AgentSpec(name="v", model={"provider": "scripted", "name": "m", "script": "s.yaml"})
    Extended = create_model(
        "Extended", __base__=AgentSpec, policies=(list[str], Field(default_factory=list))
    )
    extended = Extended(name="v", model={"provider": "scripted", "name": "m", "script": "s.yaml"})
    assert extended.version == base.version
    changed = Extended(
        name="v", model={"provider": "scripted", "name": "m", "script": "s.yaml"}, policies=["p"]
    )
    assert changed.version != base.version


@pytest.mark.parametrize(
    ("section", "field"),
    [
        (
            "model: {provider: scripted, name: m, script: s.yaml, timeout_s: true}\n",
            "model.timeout_s",
        ),
        (
            "model: {provider: scripted, name: m, script: s.yaml, max_tokens: yes}\n",
            "model.max_tokens",
        ),
        (
            "model: {provider: scripted, name: m, script: s.yaml}\nlimits: {max_turns: true}\n",
            "limits.max_turns",
        ),
        (
            "model: {provider: scripted, name: m, script: s.yaml}\nlimits: {max_cost_usd: true}\n",
            "limits.max_cost_usd",
        ),
    ],
)
def test_true_where_a_number_goes_is_refused(tmp_path: Path, section: str, field: str) -> None:
    # YAML reads true/yes as a bool, which pydantic took as 1: a one-second per-call timeout,
    # a one-turn run, a one-dollar limit, without a word.
    message = load_error(tmp_path, "name: demo\n" + section)
    assert f"{field}: must be a number, not true/false" in message, message
