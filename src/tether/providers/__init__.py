"""Model providers: the ``Model`` protocol, the offline ``ScriptedModel``, and an
OpenAI-compatible HTTP provider."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports
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

if TYPE_CHECKING:
    from tether.providers.openai_compat import OpenAIChatModel

# The HTTP provider loads httpx: only when it is used.
__getattr__, __dir__ = lazy_exports(globals(), {".openai_compat": ("OpenAIChatModel",)})

__all__ = [
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OpenAIChatModel",
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
