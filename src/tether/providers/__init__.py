"""Model providers: the ``Model`` protocol, the offline ``ScriptedModel``, an
OpenAI-compatible HTTP provider, and streamed replies (``stream_of`` and its events)."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports
from tether.providers.call_events import call_events_to, report_call_event
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
    "call_events_to",
    "report_call_event",
    "response_events",
    "stream_of",
]
