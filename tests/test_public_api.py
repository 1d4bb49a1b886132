"""The public API changes only on purpose."""

from __future__ import annotations

import tether


def test_exported_names() -> None:
    assert sorted(tether.__all__) == sorted(
        [
            "Agent",
            "AgentRef",
            "AgentSpec",
            "Approval",
            "Caller",
            "EntryPoint",
            "Harness",
            "ModelChain",
            "ModelSettings",
            "OpenAIChatModel",
            "RunKind",
            "RunScope",
            "Step",
            "Control",
            "Decision",
            "FunctionTool",
            "Hook",
            "HookContext",
            "HttpTool",
            "Limits",
            "LimitsControl",
            "LoopBreaker",
            "LoopBreakerConfig",
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
            "TraceSink",
            "Usage",
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


def test_types_in_public_signatures_are_exported() -> None:
    """``RunResult.usage`` is a ``Usage`` and ``Agent(trace=...)`` takes a ``TraceSink``: both
    can be named from ``tether``."""
    import typing

    from tether.runtime.scope import TraceTarget
    from tether.trace.sink import TraceSink

    assert typing.get_type_hints(tether.RunResult)["usage"] is tether.Usage
    assert typing.get_type_hints(tether.RunState)["usage"] is tether.Usage
    assert "TraceSink" in str(TraceTarget)
    assert tether.TraceSink is TraceSink
