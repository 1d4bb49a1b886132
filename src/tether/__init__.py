"""Tether: every agent action through one policy pipeline, leaving one trace."""

from typing import TYPE_CHECKING

from tether.core import (
    AgentRef,
    Caller,
    EntryPoint,
    Outcome,
    ProviderError,
    RunKind,
    SpecError,
    StoreError,
    TetherError,
    ToolArgumentsError,
    ToolError,
)
from tether.core.lazy import lazy_exports

if TYPE_CHECKING:
    from tether.controls import (
        Approval,
        Control,
        Decision,
        Hook,
        HookContext,
        LimitsControl,
        LoopBreaker,
    )
    from tether.providers import (
        Message,
        Model,
        ModelRequest,
        ModelResponse,
        ModelSettings,
        OpenAIChatModel,
        ScriptedModel,
        ToolCall,
        Usage,
    )
    from tether.runtime import Agent, Harness, ModelChain, RunResult, RunScope, RunState, Step
    from tether.spec import AgentSpec, Limits, LoopBreakerConfig, ModelConfig, load_spec
    from tether.tools import FunctionTool, HttpTool, Tool, ToolResult, tool
    from tether.trace import TraceSink

# The rest of the API is imported on first use: `tether --help` must not wait for the store,
# the HTTP client and pydantic models it never touches.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "tether.controls": (
            "Approval",
            "Control",
            "Decision",
            "Hook",
            "HookContext",
            "LimitsControl",
            "LoopBreaker",
        ),
        "tether.providers": (
            "Message",
            "Model",
            "ModelRequest",
            "ModelResponse",
            "ModelSettings",
            "OpenAIChatModel",
            "ScriptedModel",
            "ToolCall",
            "Usage",
        ),
        "tether.runtime": (
            "Agent",
            "Harness",
            "ModelChain",
            "RunResult",
            "RunScope",
            "RunState",
            "Step",
        ),
        "tether.spec": ("AgentSpec", "Limits", "LoopBreakerConfig", "ModelConfig", "load_spec"),
        "tether.tools": ("FunctionTool", "HttpTool", "Tool", "ToolResult", "tool"),
        "tether.trace": ("TraceSink",),
    },
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentRef",
    "AgentSpec",
    "Approval",
    "Caller",
    "Control",
    "Decision",
    "EntryPoint",
    "FunctionTool",
    "Harness",
    "Hook",
    "HookContext",
    "HttpTool",
    "Limits",
    "LimitsControl",
    "LoopBreaker",
    "LoopBreakerConfig",
    "Message",
    "Model",
    "ModelChain",
    "ModelConfig",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OpenAIChatModel",
    "Outcome",
    "ProviderError",
    "RunKind",
    "RunResult",
    "RunScope",
    "RunState",
    "ScriptedModel",
    "SpecError",
    "Step",
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
