"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether import Agent, RunResult
from tether.runtime import check_spec

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


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_spec_format_example_validates(tmp_path: Path) -> None:
    """The annotated spec under "Writing an agent" loads as written (with the files it names),
    `spotlight: off` included: YAML reads an unquoted off as false."""
    example = yaml_blocks(README.read_text())[0]
    assert example.startswith("name: support")
    agent = tmp_path / "agent"
    (agent / "policies").mkdir(parents=True)
    (tmp_path / "policies").mkdir()
    (agent / "agent.yaml").write_text(example)
    (agent / "support.script.yaml").write_text("steps: [{text: hi}]\n")
    (agent / "tools.py").write_text("def kb_lookup(query: str) -> str:\n    return query\n")
    (agent / "answer.schema.json").write_text('{"type": "string"}')
    (agent / "policies" / "tools.cedar").write_text(
        '@id("reads")\npermit(principal, action in Tether::Action::"call", resource)\n'
        'when { resource.side_effects == "read" };\n'
    )
    (tmp_path / "policies" / "shop.yaml").write_text("guards:\n  - guard: pii\n    action: mask\n")
    check = check_spec(agent / "agent.yaml")
    assert check.spec.guards.spotlight == "off"
    assert set(check.tools) == {"kb_lookup", "order_status", "run_python"}
    assert check.authorization is not None


def test_the_controls_example_escalates_a_refund(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "class NoRefunds" in b and "from_yaml" in b)
    monkeypatch.setenv("TETHER_DATABASE_URL", sqlite_url)
    refunds = README.parent / "examples" / "refunds"
    monkeypatch.chdir(refunds)  # the example loads "agent.yaml": the refunds agent's
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    agent = namespace["agent"]
    assert isinstance(agent, Agent)
    result = agent.run_sync("Please refund 20 on order 1002.")
    assert result.outcome == "escalated"
    assert "refunds need a person's approval" in (result.stop_reason or "")


def test_the_streaming_example_prints_the_reply_and_its_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "stream_of(model, request)" in b)
    exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Your order ships tomorrow."
    assert printed[1].startswith("input_tokens=") and "output_tokens=" in printed[1]
