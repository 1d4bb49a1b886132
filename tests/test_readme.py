"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether import RunResult

README = Path(__file__).parents[1] / "README.md"


def test_python_api_example_runs(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "Agent.from_yaml" in b and "run_sync" in b)
    monkeypatch.setenv("ORDER_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TETHER_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(README.parent)
    namespace: dict[str, object] = {}
    exec(compile(example.replace("print(", "_ = ("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, RunResult) and result.outcome == "final_answer"
    # The answer comes from the kb_lookup defined in the README, not the example's own.
    assert result.output == "Standard shipping takes 3-5 business days."


def test_quick_start_has_exactly_the_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make \w+", quick, re.M)
    assert commands == ["make demo", "make test"]
