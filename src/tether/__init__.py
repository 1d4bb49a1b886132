"""Tether: every agent action through one policy pipeline, leaving one trace."""

from typing import TYPE_CHECKING

from tether.core import (
    Outcome,
    ProviderError,
    SpecError,
    StoreError,
    TetherError,
    ToolArgumentsError,
    ToolError,
)
from tether.core.lazy import lazy_exports

if TYPE_CHECKING:
    from tether.controls import Control, Decision, Hook, HookContext, LimitsControl, LoopBreaker
    from tether.providers import (
        Message,
        Model,
        ModelRequest,
        ModelResponse,
        ScriptedModel,
        ToolCall,
        Usage,
    )
    from tether.runtime import Agent, RunResult, RunState
    from tether.spec import AgentSpec, Limits, LoopBreakerConfig, ModelConfig, load_spec
    from tether.tools import FunctionTool, HttpTool, Tool, ToolResult, tool
    from tether.trace import TraceSink

# The rest of the API is imported on first use: `tether --help` must not wait for the store,
# the HTTP client and pydantic models it never touches.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "tether.controls": (
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
            "ScriptedModel",
            "ToolCall",
            "Usage",
        ),
        "tether.runtime": ("Agent", "RunResult", "RunState"),
        "tether.spec": ("AgentSpec", "Limits", "LoopBreakerConfig", "ModelConfig", "load_spec"),
        "tether.tools": ("FunctionTool", "HttpTool", "Tool", "ToolResult", "tool"),
        "tether.trace": ("TraceSink",),
    },
)

__version__ = "0.1.0"

__all__ = [
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
