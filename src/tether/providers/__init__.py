"""Model providers: the ``Model`` protocol, the offline ``ScriptedModel``, an
OpenAI-compatible HTTP provider, and streamed replies (``stream_of`` and its events)."""

from tether.providers.factory import build_model
from tether.providers.scripted import (
    Script,
    ScriptedModel,
    ScriptedToolCall,
    ScriptRule,
    ScriptStep,
)
from tether.providers.streaming import (
    PartialToolCall,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    StreamingModel,
    TextDelta,
    ToolCallDelta,
    UsageUpdate,
    response_events,
    stream_of,
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
    "PartialToolCall",
    "Script",
    "ScriptRule",
    "ScriptStep",
    "ScriptedModel",
    "ScriptedToolCall",
    "StreamAccumulator",
    "StreamEnd",
    "StreamEvent",
    "StreamingModel",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "Usage",
    "UsageUpdate",
    "build_model",
    "response_events",
    "stream_of",
]
