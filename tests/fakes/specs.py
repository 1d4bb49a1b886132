"""Agent specs built in Python for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tether import AgentSpec, ModelConfig
from tether.core import SpecError
from tether.spec import load_spec


def make_spec(**overrides: Any) -> AgentSpec:
    """A scripted agent's spec (the model is passed to ``Agent`` directly); fields overridable."""
    fields: dict[str, Any] = {
        "name": "tester",
        "persona": "You are a test agent.",
        "model": ModelConfig(provider="scripted", name="gpt-4.1-mini", script="unused.yaml"),
    }
    fields.update(overrides)
    return AgentSpec(**fields)


def write_spec(
    tmp_path: Path, text: str, name: str = "agent.yaml", *, script: str | None = None
) -> Path:
    """A spec file of ``text`` in ``tmp_path``; with ``script``, the scripted model's script
    file ``demo.script.yaml`` beside it."""
    if script is not None:
        (tmp_path / "demo.script.yaml").write_text(script, encoding="utf-8")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(
    tmp_path: Path, text: str, name: str = "agent.yaml", *, script: str | None = None
) -> str:
    """The message of the ``SpecError`` loading that spec file raises (it must raise)."""
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, text, name, script=script))
    return str(info.value)
