"""Build a ``Model`` from a spec's ``ModelConfig``."""

from __future__ import annotations

from pathlib import Path

from tether.core import SpecError
from tether.providers.scripted import ScriptedModel
from tether.providers.types import Model
from tether.spec import ModelConfig


def build_model(config: ModelConfig, base_dir: Path | None = None) -> Model:
    """The provider for ``config``; relative paths resolve against ``base_dir`` (the spec's
    directory)."""
    if config.provider == "scripted":
        assert config.script is not None  # enforced by ModelConfig's validator
        path = Path(config.script)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return ScriptedModel.from_yaml(path, name=config.name)
    if config.provider == "openai":
        from tether.providers.openai_compat import OpenAIChatModel

        return OpenAIChatModel.from_config(config)
    raise SpecError(f"unknown model provider {config.provider!r}")  # pragma: no cover
