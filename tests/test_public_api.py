"""The public API changes only on purpose."""

from __future__ import annotations

import tether


def test_exported_names() -> None:
    assert sorted(tether.__all__) == sorted(
        [
            "Agent",
            "AgentSpec",
            "Control",
            "Decision",
            "FunctionTool",
            "Hook",
            "HookContext",
            "HttpTool",
            "Limits",
            "LimitsControl",
            "LoopBreaker",
            "Message",
            "Model",
            "ModelConfig",
            "ModelRequest",
            "ModelResponse",
            "Outcome",
            "ProviderError",
            "RunResult",
            "RunState",
            "ScriptedModel",
            "SpecError",
            "StoreError",
            "TetherError",
            "Tool",
            "ToolArgumentsError",
            "ToolCall",
            "ToolError",
            "ToolResult",
            "__version__",
            "load_spec",
            "tool",
        ]
    )
    for name in tether.__all__:
        assert getattr(tether, name) is not None


def test_one_root_exception() -> None:
    for name in ("SpecError", "ProviderError", "StoreError", "ToolError"):
        assert issubclass(getattr(tether, name), tether.TetherError)
    assert issubclass(tether.ToolArgumentsError, tether.ToolError)
