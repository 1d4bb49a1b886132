"""Specs refuse what would hurt later: YAML alias bombs, tool names the OpenAI API refuses,
optional URL fields, blank model names and non-HTTP base URLs; tools are ``external`` unless
declared otherwise; a tool whose function is missing is reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.specs import spec_error as load_error
from fakes.specs import write_spec as write
from tether import Agent
from tether.core import SpecError
from tether.spec import AgentSpec, HttpToolSpec, ModelConfig, PythonToolSpec, load_spec
from tether.tools import build_tools

# Line numbers are in the comments, so the expected ``file:line`` is checkable by eye.
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
"""

TOOLS_PY = "def lookup(query: str) -> str:\n    return query\n"
# BASE's HTTP tool on a public host name, for the tests that build the tools (127.0.0.1 is
# loopback, which an HTTP tool reaches only with allowed_networks); the lines stay the same.
PUBLIC = BASE.replace("127.0.0.1", "api.example.com")


# --- YAML anchors and aliases ------------------------------------------------------------------

# The shape of a "billion laughs" bomb, kept small: each level repeats the one before nine
# times, and nine levels of it (under 600 bytes) expand to 387 million strings.
ALIAS_BOMB = """\
name: bomb
model: {provider: scripted, name: m, script: s.yaml}
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
"""


def test_alias_bomb_is_refused_at_the_first_anchor(tmp_path: Path) -> None:
    message = load_error(tmp_path, ALIAS_BOMB)
    assert f"{tmp_path / 'agent.yaml'}:3:4: " in message
    assert "YAML anchors (&name) and aliases (*name) are not supported in specs" in message


def test_merge_keys_are_aliases_too(tmp_path: Path) -> None:
    text = BASE + "metadata:\n  base: &base {team: a}\n  more:\n    <<: *base\n"
    message = load_error(tmp_path, text)
    assert "agent.yaml:16:" in message
    assert "anchors (&name) and aliases (*name) are not supported" in message


def test_absurd_nesting_is_a_spec_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "metadata: " + "[" * 3000 + "]" * 3000 + "\n")
    assert "agent.yaml:1:" in message
    assert "nested deeper than" in message


def test_ampersand_and_star_inside_strings_are_plain_text(tmp_path: Path) -> None:
    text = BASE + "description: 'R&D *tools* & more'\ninstructions: a *b* &c\n"
    spec = load_spec(write(tmp_path, text))
    assert (spec.description, spec.instructions) == ("R&D *tools* & more", "a *b* &c")


# --- side effects default to the riskiest class ------------------------------------------------


def test_undeclared_side_effects_are_external(tmp_path: Path) -> None:
    write(tmp_path, TOOLS_PY, "tools.py")
    spec = load_spec(write(tmp_path, PUBLIC))
    assert [t.side_effects for t in spec.tools] == ["external", "external"]
    tools = build_tools(spec.tools, base_dir=tmp_path)
    assert {name: t.side_effects for name, t in tools.items()} == {
        "lookup": "external",
        "status": "external",
    }


def test_a_shell_function_is_not_read_only(tmp_path: Path) -> None:
    text = PUBLIC.replace("function: tools.py:lookup", "function: subprocess:getoutput")
    tools = build_tools(load_spec(write(tmp_path, text)).tools, base_dir=tmp_path)
    assert tools["lookup"].side_effects == "external"


def test_declared_side_effects_are_kept(tmp_path: Path) -> None:
    text = BASE.replace("  # 8\n", "  # 8\n    side_effects: read\n")
    assert [t.side_effects for t in load_spec(write(tmp_path, text)).tools] == [
        "read",
        "external",
    ]


# --- tool names the OpenAI API accepts ---------------------------------------------------------


@pytest.mark.parametrize("name", ["orders.lookup", "my tool", "x" * 65, "-lead", "ünï"])
def test_tool_names_the_openai_api_would_refuse(tmp_path: Path, name: str) -> None:
    message = load_error(tmp_path, BASE.replace("name: lookup ", f"name: '{name}'"))
    assert "agent.yaml:7: tools[0].name: String should match pattern" in message


@pytest.mark.parametrize("name", ["lookup-v2", "_private", "a" * 64, "Get_Order_2"])
def test_tool_names_the_openai_api_accepts(name: str) -> None:
    assert PythonToolSpec(name=name).name == name


def test_agent_names_may_still_have_dots(tmp_path: Path) -> None:
    # Agent names are never sent to a model API; existing agents keep theirs.
    assert load_spec(write(tmp_path, BASE.replace("name: demo", "name: demo.v2"))).name == "demo.v2"


# --- unknown tool kinds and missing functions --------------------------------------------------


def test_unknown_tool_kind_lists_the_valid_kinds(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE.replace("kind: http", "kind: mcp"))
    assert (
        "agent.yaml:10: tools[1].kind: unknown tool kind 'mcp'; "
        "valid kinds are 'python' (the default), 'http' and 'python_sandbox'"
    ) in message
    assert "found using" not in message


def test_unknown_tool_kind_from_python() -> None:
    with pytest.raises(ValueError, match="unknown tool kind; valid kinds are 'python'"):
        AgentSpec.model_validate(
            {
                "name": "a",
                "model": {"name": "m", "script": "s"},
                "tools": [{"name": "t", "kind": 1}],
            }
        )


def test_missing_function_names_the_spec_line(tmp_path: Path) -> None:
    write(tmp_path, TOOLS_PY, "tools.py")
    write(tmp_path, "steps: [{text: hi}]\n", "demo.script.yaml")
    path = write(tmp_path, BASE.replace("tools.py:lookup", "tools.py:nope"))
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(path, trace=False)
    message = info.value.message
    assert message.startswith(f"{path}: tools[0] 'lookup' (line 8): function 'tools.py:nope'")
    assert "has no callable 'nope'" in message


def test_tool_specs_built_in_python_have_no_line() -> None:
    with pytest.raises(SpecError) as info:
        build_tools([PythonToolSpec(name="t", function="tools.py:f")], base_dir=Path("/nonexist"))
    assert info.value.message.startswith("tools[0] 't': function ")


def test_equal_specs_from_different_files_stay_equal(tmp_path: Path) -> None:
    first = load_spec(write(tmp_path, BASE))
    second = load_spec(write(tmp_path, "\n\n" + BASE, "other.yaml"))
    assert first == second and first.version == second.version


# --- HTTP tools: URL fields must be required parameters ----------------------------------------


def test_optional_parameter_in_the_url_path_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("id: {type: integer}", "id: {type: integer, required: false}")
    message = load_error(tmp_path, text)
    assert "agent.yaml:13: tools[1].parameters: url uses optional parameters ['id']" in message
    assert "must be required" in message


def test_optional_parameter_in_the_url_query_is_refused() -> None:
    with pytest.raises(ValueError, match=r"url uses optional parameters \['page'\]"):
        HttpToolSpec(
            kind="http",
            name="t",
            url="http://127.0.0.1/x?page={page}",
            allowed_hosts=["127.0.0.1"],
            parameters={"page": {"required": False}},
        )


def test_url_field_without_a_parameter_names_the_line(tmp_path: Path) -> None:
    text = BASE.replace("    parameters:             # 13\n      id: {type: integer}   # 14\n", "")
    message = load_error(tmp_path, text)
    # No 'parameters' key: the line is the tool's.
    assert "agent.yaml:9: tools[1].parameters: url uses ['id'] which are not in 'param" in message


# --- model config ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ['""', "'   '"])
def test_blank_model_name_is_refused(tmp_path: Path, name: str) -> None:
    message = load_error(tmp_path, BASE.replace("name: gpt-test", f"name: {name}"))
    assert "agent.yaml:4: model.name: must not be empty" in message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://x", "must be an http or https URL, not 'ftp://x'"),
        ("api.openai.com/v1", "must be an http or https URL"),
        ("http://", "'http://' has no host"),
        ("https://[::1/v1", "is not a valid URL"),
    ],
)
def test_base_url_must_be_http_with_a_host(tmp_path: Path, url: str, problem: str) -> None:
    text = BASE.replace("  script: demo.script.yaml  # 5\n", f"  base_url: '{url}'\n").replace(
        "provider: scripted", "provider: openai"
    )
    message = load_error(tmp_path, text)
    assert "agent.yaml:5: model.base_url: " in message
    assert problem in message


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://127.0.0.1:8080/v1"])
def test_http_base_urls_are_accepted(url: str) -> None:
    assert ModelConfig(provider="openai", name="m", base_url=url).base_url == url
