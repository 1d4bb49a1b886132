"""``kind: python_sandbox`` tools: the spec, the tool, and agent runs that use it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from fakes.cli import run_cli
from fakes.sandbox import require_sandbox
from tether import Agent, ScriptedModel
from tether.core import SpecError, ToolArgumentsError, ToolError
from tether.sandbox import SandboxLimits, SandboxResult
from tether.sandbox.command import BWRAP_ENV
from tether.spec import PythonSandboxToolSpec, load_spec
from tether.store import Store
from tether.tools import PythonSandboxTool, build_tools, check_tools, definition_of
from tether.tools.sandbox import DEFAULT_DESCRIPTION, TIMEOUT_GRACE_S, result_text
from tether.trace import semconv, writer_for

BARE_SPEC = """\
name: calculator
model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}
tools:
  - name: run_python
    kind: python_sandbox
"""
SPEC = (
    BARE_SPEC
    + """\
    side_effects: read
    timeout_s: 5
    memory_mb: 128
    max_processes: 4
"""
)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "script.yaml").write_text("steps:\n  - text: done\n", encoding="utf-8")
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sandbox_tool(**fields: object) -> PythonSandboxTool:
    return PythonSandboxTool(PythonSandboxToolSpec(kind="python_sandbox", name="py", **fields))  # type: ignore[arg-type]


# --- the spec ------------------------------------------------------------------------------


def test_the_spec_maps_onto_the_sandbox_limits(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, SPEC))
    tool_spec = spec.tools[0]
    assert isinstance(tool_spec, PythonSandboxToolSpec)
    assert tool_spec.sandbox_limits() == SandboxLimits(timeout_s=5, memory_mb=128, max_processes=4)
    defaults = PythonSandboxToolSpec(kind="python_sandbox", name="py")
    assert defaults.sandbox_limits() == SandboxLimits()
    assert defaults.side_effects == "external"  # undeclared: the riskiest class


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("    memory_mb: 1", "memory_mb", "greater than or equal to 32"),
        ("    timeout_s: .nan", "timeout_s", "Input should be"),
        ("    timeout_s: 99999", "timeout_s", "less than or equal to 3600"),
        ("    timeout_s: 0.0001", "timeout_s", "greater than or equal to 0.001"),
        ("    max_processes: 0", "max_processes", "greater than or equal to 1"),
        ("    network: true", "network", "Extra inputs are not permitted"),
        ("    max_output_bytes: lots", "max_output_bytes", "valid integer"),
    ],
)
def test_bad_limits_name_the_file_line_and_field(
    tmp_path: Path, line: str, field: str, message: str
) -> None:
    text = BARE_SPEC + line + "\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    error = str(info.value)
    assert f"agent.yaml:{text.count(chr(10))}: tools[0].{field}: " in error, error
    assert message in error, error


def test_an_unknown_kind_lists_python_sandbox(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="'python_sandbox'"):
        load_spec(write(tmp_path, SPEC.replace("kind: python_sandbox", "kind: sandbox")))


# --- the tool ------------------------------------------------------------------------------


def test_the_tool_offers_one_code_argument() -> None:
    tool = sandbox_tool(timeout_s=3, scopes=["compute"])
    definition = definition_of(tool)
    assert definition.description == DEFAULT_DESCRIPTION
    assert definition.parameters["required"] == ["code"]
    assert definition.parameters["properties"]["code"]["type"] == "string"
    assert tool.scopes == ("compute",) and tool.side_effects == "external"
    assert tool.timeout_s == 3 + TIMEOUT_GRACE_S  # the sandbox's own timeout answers first


async def test_bad_arguments_are_refused_before_anything_runs() -> None:
    tool = sandbox_tool()
    for arguments in ({}, {"code": 5}, {"code": "print(1)", "network": True}):
        with pytest.raises(ToolArgumentsError, match="invalid arguments for tool 'py'"):
            await tool.call(arguments)


async def test_a_run_is_a_json_result_and_a_failure_an_error_result() -> None:
    require_sandbox()
    tool = sandbox_tool()
    ok = await tool.call({"code": "print(6 * 7)"})
    assert not ok.is_error
    found = json.loads(ok.content)
    assert found["stdout"] == "42\n" and found["exit_code"] == 0
    assert ok.data == found
    failed = await tool.call({"code": "import sys; sys.exit('no')"})
    assert failed.is_error and json.loads(failed.content)["stderr"] == "no\n"
    slow = await sandbox_tool(timeout_s=0.5).call({"code": "while True: pass"})
    assert slow.is_error and json.loads(slow.content)["killed_reason"] == "timeout"


async def test_a_missing_sandbox_is_an_error_and_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(BWRAP_ENV, "/nonexistent/bwrap")
    spec = load_spec(write(tmp_path, SPEC))
    with caplog.at_level(logging.WARNING, logger="tether"):
        tools = build_tools(spec.tools, base_dir=tmp_path)
    assert "tools[0] 'run_python' (line 4): the sandbox cannot run here" in caplog.text
    marker = tmp_path / "ran"
    with pytest.raises(ToolError, match="bubblewrap \\(bwrap\\) is not installed"):
        await tools["run_python"].call({"code": f"open({str(marker)!r}, 'w')"})
    assert not marker.exists()
    check = check_tools(spec.tools, base_dir=tmp_path)
    assert any("the sandbox cannot run here" in w for w in check.warnings)
    assert isinstance(check.tools["run_python"], PythonSandboxTool)


def test_validate_shows_the_tool_and_warns_without_bwrap(tmp_path: Path) -> None:
    path = str(write(tmp_path, SPEC))
    env = {**os.environ, BWRAP_ENV: "/nonexistent/bwrap"}
    done = run_cli("validate", "--no-import", "--json", path, env=env)
    assert done.returncode == 0, done.stdout
    found = json.loads(done.stdout)
    assert found["tools"] == [{"name": "run_python", "side_effects": "read", "scopes": []}]
    assert any("the sandbox cannot run here" in w for w in found["warnings"])
    text = run_cli("validate", path, env=env)
    assert text.returncode == 0 and "the sandbox cannot run here" in text.stderr + text.stdout


# --- clipping the result for the model -----------------------------------------------------


def _result(stdout: str, stderr: str = "") -> SandboxResult:
    return SandboxResult(0, stdout, stderr, False, None, 12.5)


@pytest.mark.parametrize("max_chars", [300, 2000, 16000])
def test_a_long_result_is_clipped_to_valid_json_that_fits(max_chars: int) -> None:
    for stdout, stderr in [
        ("x" * 100_000, ""),
        ("\x01" * 50_000, "é" * 50_000),  # escapes make a character count for six
        ("line\n" * 10_000, "warning\n" * 10_000),
    ]:
        text = result_text(_result(stdout, stderr), max_chars)
        assert len(text) <= max_chars, (max_chars, len(text))
        found = json.loads(text)
        given = {"stdout": stdout, "stderr": stderr}
        clipped = [k for k in given if found[k] != given[k]]
        assert clipped
        for key in clipped:
            note = f"[clipped: {len(given[key]):,} characters in all]"
            assert found[key] == "" or found[key].endswith(note)
            assert given[key].startswith(found[key].removesuffix(note).removesuffix("\n… "))
    short = _result("hi\n")
    assert json.loads(result_text(short, 16000)) == short.to_json()


# --- an agent that uses it -----------------------------------------------------------------


async def test_an_agent_calculates_in_the_sandbox(tmp_path: Path) -> None:
    require_sandbox()
    model = ScriptedModel(
        [
            {
                "tool_calls": [
                    {"name": "run_python", "arguments": {"code": "print(sum(range(101)))"}}
                ]
            },
            {"text": "The sum is {result:run_python:stdout}"},
        ]
    )
    agent = Agent.from_yaml(write(tmp_path, SPEC), model=model, trace=False)
    result = await agent.run("add 0..100")
    assert result.outcome == "final_answer", result
    assert result.output.strip() == "The sum is 5050"


async def test_a_killed_run_is_an_error_result_recorded_in_the_trace(
    tmp_path: Path, sqlite_url: str
) -> None:
    require_sandbox()
    code = "import os\nos.write(1, b'\\xff partial\\n')\nwhile True: pass"
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "run_python", "arguments": {"code": code}}]},
            {"text": "killed: {result:run_python:killed_reason}"},
        ]
    )
    spec = SPEC.replace("timeout_s: 5", "timeout_s: 0.5")
    agent = Agent.from_yaml(write(tmp_path, spec), model=model, trace=sqlite_url)
    result = await agent.run("loop")
    assert result.output.strip() == "killed: timeout"
    writer_for(sqlite_url).flush()
    events = Store(sqlite_url).get_events(result.run_id)
    error = next(e for e in events if e.name == semconv.EVENT_TOOL_ERROR)
    recorded = json.loads(error.attributes["message"])
    assert recorded["killed_reason"] == "timeout" and recorded["timed_out"] is True
    assert recorded["stdout"] == "\ufffd partial\n"  # not UTF-8: replaced, not a traceback


def test_the_calculator_example_runs(tmp_path: Path) -> None:
    require_sandbox()
    example = Path(__file__).resolve().parents[1] / "examples" / "calculator" / "agent.yaml"
    env = {**os.environ, "TETHER_HOME": str(tmp_path / "home")}
    done = run_cli("run", str(example), "-i", "what is 25 factorial", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["output"] == "25! = 15511210043330985984000000"
    stopped = run_cli("run", str(example), "-i", "loop forever", "--json", env=env)
    assert "it was stopped (timeout)" in json.loads(stopped.stdout)["output"]
