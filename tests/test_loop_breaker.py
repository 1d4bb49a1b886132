"""The spec's ``loop_breaker`` section, through real agent runs on a ScriptedModel: its
threshold, tools exempt from it, its load errors and its place in the spec version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import Agent, FunctionTool, Harness, RunResult, ScriptedModel, tool
from tether.controls import LoopBreaker
from tether.core import SpecError
from tether.runtime.paradigms import react
from tether.spec import GuardsConfig, load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support" / "agent.yaml"

SPEC = """\
name: poller
model: {provider: scripted, name: gpt-4.1-mini, script: unused.yaml}
tools:
  - name: job_status
  - name: lookup
"""


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def repeated(name: str, times: int) -> ScriptedModel:
    """A model that calls ``name`` with the same arguments ``times`` times, then answers."""
    step = {"tool_calls": [{"name": name, "arguments": {"key": "same"}}]}
    return ScriptedModel([step] * times + [{"text": "done"}])


def counting_tools() -> tuple[list[str], list[FunctionTool]]:
    """``job_status`` and ``lookup``, each returning the same answer every time."""
    ran: list[str] = []

    @tool
    def job_status(key: str) -> str:
        """A job's status: polled on purpose."""
        ran.append("job_status")
        return "running"

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        ran.append("lookup")
        return "same value"

    return ran, [job_status, lookup]


async def run(tmp_path: Path, spec_text: str, model: ScriptedModel) -> tuple[RunResult, list[str]]:
    ran, tools = counting_tools()
    agent = Agent.from_yaml(write_spec(tmp_path, spec_text), model=model, tools=tools, trace=False)
    return await agent.run("go"), ran


async def test_an_exempt_tool_is_polled_past_three_identical_calls(tmp_path: Path) -> None:
    exempt = SPEC + "loop_breaker:\n  exempt_tools: [job_status]\n"
    result, ran = await run(tmp_path, exempt, repeated("job_status", 6))
    assert result.outcome == "final_answer" and result.output == "done"
    assert ran == ["job_status"] * 6
    # Not exempt: the same polling stops on the third call.
    result, ran = await run(tmp_path, SPEC, repeated("job_status", 6))
    assert result.outcome == "loop_detected"
    assert ran == ["job_status"] * 2


async def test_exempting_one_tool_still_counts_the_others(tmp_path: Path) -> None:
    exempt = SPEC + "loop_breaker:\n  exempt_tools: [job_status]\n"
    result, ran = await run(tmp_path, exempt, repeated("lookup", 6))
    assert result.outcome == "loop_detected"
    assert ran == ["lookup"] * 2


async def test_max_repeats_five_trips_on_the_fifth_identical_call(tmp_path: Path) -> None:
    five = SPEC + "loop_breaker:\n  max_repeats: 5\n"
    result, ran = await run(tmp_path, five, repeated("lookup", 10))
    assert result.outcome == "loop_detected"
    assert ran == ["lookup"] * 4  # the fifth identical call never ran
    assert "'lookup' called 5 times" in result.state.stop_reason
    # Four identical calls stay under the threshold.
    result, ran = await run(tmp_path, five, repeated("lookup", 4))
    assert result.outcome == "final_answer" and ran == ["lookup"] * 4


async def test_a_loop_breaker_given_as_a_control_replaces_the_built_in_one() -> None:
    """``LoopBreaker(exempt_tools=..., max_repeats=...)`` among a harness's controls (its
    values override the spec's, says its docstring) ran beside the built-in one, which came
    first in the pipeline and stopped the run on the third identical call regardless."""
    ran, tools = counting_tools()
    harness = Harness(
        models=[repeated("job_status", 6)],
        tools=tools,
        controls=[LoopBreaker(exempt_tools=["job_status"])],
        trace=False,
    )
    assert sum(isinstance(c, LoopBreaker) for c in harness.controls) == 1
    async with harness.open_run("go") as scope:
        await react(scope)
    assert scope.result().outcome == "final_answer" and ran == ["job_status"] * 6
    ran.clear()
    harness = Harness(
        models=[repeated("lookup", 10)],
        tools=tools,
        controls=[LoopBreaker(max_repeats=5)],
        trace=False,
    )
    async with harness.open_run("go") as scope:
        await react(scope)
    assert scope.result().outcome == "loop_detected" and ran == ["lookup"] * 4


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "loop_breaker:\n  max_repeats: 1\n",
            "agent.yaml:7: loop_breaker.max_repeats: Input should be greater than or equal to 2",
        ),
        (
            "loop_breaker:\n  exempt_tools: [job_status, job_stauts]\n",
            "agent.yaml:6: loop_breaker: exempt_tools[1]: 'job_stauts' is not a tool of this "
            "agent (declared under 'tools': job_status, lookup)",
        ),
        (
            "loop_breaker:\n  max_repeat: 5\n",
            "agent.yaml:7: loop_breaker.max_repeat: Extra inputs are not permitted",
        ),
        (
            "loop_breaker: 3\n",
            "agent.yaml:6: loop_breaker: Input should be a valid dictionary or instance of "
            "LoopBreakerConfig",
        ),
    ],
)
def test_a_bad_section_fails_at_load_naming_the_line(
    tmp_path: Path, section: str, expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, SPEC + section))
    assert expected in str(info.value)


def test_the_section_left_out_or_spelled_out_as_its_defaults_keeps_the_version(
    tmp_path: Path,
) -> None:
    # The example's version from before the section existed: agents that do not use it keep
    # their versions.
    # (The example has since opted in to its loopback order API and gained a guards section:
    # that line and that section left out, it is the same spec as then.)
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    text = "".join(line for line in lines if not line.startswith("    allowed_networks:"))
    example = load_spec(write_spec(tmp_path, text))
    assert example.model_copy(update={"guards": GuardsConfig()}).version == "d1fd1ee83d28d3c9"
    without = load_spec(write_spec(tmp_path, SPEC)).version
    defaults = SPEC + "loop_breaker:\n  max_repeats: 3\n  exempt_tools: []\n"
    assert load_spec(write_spec(tmp_path, defaults)).version == without
    changed = SPEC + "loop_breaker:\n  max_repeats: 4\n"
    assert load_spec(write_spec(tmp_path, changed)).version != without
