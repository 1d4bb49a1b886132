"""Script rules whose ``when`` pattern backtracks catastrophically: refused when loaded if the
shape is plain, else stopped by a time limit off the event loop; the run's own limits hold."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import Agent, ScriptedModel
from tether.core import ProviderError, SpecError
from tether.providers import Message, ModelRequest
from tether.providers.scripted import Script

EVIL_INPUT = "a" * 40 + "!"


def write_agent(folder: Path, when: str) -> Path:
    (folder / "script.yaml").write_text(
        textwrap.dedent(
            f"""\
            rules:
              - when: 'hello'
                steps: [{{text: hi}}]
              - when: '{when}'
                steps: [{{text: matched}}]
            steps: [{{text: no rule matched}}]
            """
        )
    )
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: patterns\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        "limits: {timeout_s: 30}\n"  # the 1 s pattern limit must trip first, even under load
    )
    return spec


def test_a_nested_repetition_is_refused_naming_the_script_file_and_line(tmp_path: Path) -> None:
    spec = write_agent(tmp_path, "(a+)+$")
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(spec, trace=False)
    message = info.value.message
    assert f"{spec}: invalid Script in {tmp_path / 'script.yaml'}:" in message
    assert f"{tmp_path / 'script.yaml'}:4: rules[1].when:" in message
    assert "repeats a group that is itself a repetition" in message


@pytest.mark.parametrize("when", [r"(a*)*", r"(\w+\s?)+$", r"^(\s*\w+)*$", r"(?:x|(y+))+"])
def test_classic_catastrophic_shapes_are_refused(when: str) -> None:
    with pytest.raises(ValueError, match="repeats a group that is itself a repetition"):
        Script.model_validate({"rules": [{"when": when, "steps": [{"text": "x"}]}]})


@pytest.mark.parametrize(
    "when",
    [
        r"(?:\d+,)*\d+",
        r"where is my order (?P<order>\d+)",
        r"(a+b)+",
        r"(?>a+)+",
        r"(a++)+",
        r"\d{3}-\d{4}",
        r"(?:ab){1,1000000}",
        r"x{100000}",
    ],
)
def test_safe_repetitions_are_accepted(when: str) -> None:
    Script.model_validate({"rules": [{"when": when, "steps": [{"text": "x"}]}]})


def test_a_catastrophic_pattern_ends_the_run_with_a_clear_error(tmp_path: Path) -> None:
    # Overlapping alternatives backtrack exponentially too, but do not have the nested shape.
    spec = write_agent(tmp_path, "(a|a)+$")
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "tether", "run", str(spec), "-i", EVIL_INPUT, "--json"],
        capture_output=True,
        text=True,
        timeout=120,  # before: the search ran for hours on the event loop, past timeout_s
        cwd=tmp_path,
        env={**env, "TETHER_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 1, done.stderr
    assert '"outcome": "error"' in done.stdout
    assert "the 'when' pattern of rules[1] ((a|a)+$) took more than 1s" in done.stdout


async def test_matching_does_not_hold_the_event_loop() -> None:
    model = ScriptedModel(
        Script.model_validate({"rules": [{"when": "(a|a)+$", "steps": [{"text": "matched"}]}]})
    )
    request = ModelRequest(messages=[Message(role="user", content=EVIL_INPUT)])
    task = asyncio.create_task(model.complete(request))
    turns = 0
    while not task.done():
        await asyncio.sleep(0.001)
        turns += 1
    # The loop went on turning while the pattern was searched (before: it stood still).
    assert turns > 1
    with pytest.raises(ProviderError, match="took more than 1s"):
        task.result()
