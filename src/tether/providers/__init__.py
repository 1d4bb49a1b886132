"""Model providers: the ``Model`` protocol, the offline ``ScriptedModel``, and an
OpenAI-compatible HTTP provider."""

from tether.providers.factory import build_model
from tether.providers.scripted import (
    Script,
    ScriptedModel,
    ScriptedToolCall,
    ScriptRule,
    ScriptStep,
)
from tether.providers.types import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolDefinition,
    Usage,
)

__all__ = [
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "Script",
    "ScriptRule",
    "ScriptStep",
    "ScriptedModel",
    "ScriptedToolCall",
    "ToolCall",
    "ToolDefinition",
    "Usage",
    "build_model",
]
