"""Agent specs: the pydantic models and their YAML loader."""

from pathlib import Path

from tether.spec.loader import load_model, read_yaml, validation_message
from tether.spec.model import (
    AgentSpec,
    HttpToolSpec,
    Limits,
    ModelConfig,
    PythonToolSpec,
    ToolParameter,
    ToolSpec,
)


def load_spec(path: str | Path) -> AgentSpec:
    """Load and validate an agent spec from a YAML file."""
    return load_model(AgentSpec, path)


__all__ = [
    "AgentSpec",
    "HttpToolSpec",
    "Limits",
    "ModelConfig",
    "PythonToolSpec",
    "ToolParameter",
    "ToolSpec",
    "load_model",
    "load_spec",
    "read_yaml",
    "validation_message",
]
