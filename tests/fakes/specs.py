"""Agent specs built in Python for tests."""

from __future__ import annotations

from typing import Any

from tether import AgentSpec, ModelConfig


def make_spec(**overrides: Any) -> AgentSpec:
    """A scripted agent's spec (the model is passed to ``Agent`` directly); fields overridable."""
    fields: dict[str, Any] = {
        "name": "tester",
        "persona": "You are a test agent.",
        "model": ModelConfig(provider="scripted", name="gpt-4.1-mini", script="unused.yaml"),
    }
    fields.update(overrides)
    return AgentSpec(**fields)
