"""Provider-neutral chat types: messages, tool calls, model requests and responses.

``Message``, ``Usage``, ``ModelRequest`` and ``ModelResponse`` are made several times per step
of a run: they are plain slotted dataclasses with pydantic's methods (``model_validate``,
``model_dump``, ``model_copy``: see ``tether.core.plain``), which serialize them into
``RunState`` and checkpoints as pydantic models did. Their constructors do not validate: code
building one from untrusted data uses ``model_validate``. ``ToolCall`` (frozen), the tool
definitions and the settings stay pydantic models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tether.core.plain import PlainData

RAW_ARGUMENTS_KEY: Final = "__raw__"
"""The key under which ``ToolCall.arguments`` keeps arguments that are not a JSON object."""


def describe_invalid_arguments(raw: str, *, limit: int = 200) -> str:
    """Why ``raw`` cannot be a tool call's arguments, in words the model can act on."""
    try:
        parsed = json.loads(raw)
    except RecursionError:
        return f"nested too deeply: {raw[:limit]}"
    except ValueError:
        return f"not valid JSON: {raw[:limit]}"
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(parsed), "a number"
    )
    return f"must be a JSON object, got {kind}: {raw[:limit]}"


def decode_arguments(value: Any) -> dict[str, Any] | None:
    """Tool-call arguments as ``ToolCall.arguments``: parsed when ``value`` is a JSON object
    (or its text), ``{"__raw__": value}`` when it is text that is not one (invalid JSON, an
    array, JSON cut short), ``{}`` when empty; ``None`` when ``value`` has the wrong type."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return {RAW_ARGUMENTS_KEY: value}
    return parsed if isinstance(parsed, dict) else {RAW_ARGUMENTS_KEY: value}


class ToolCall(BaseModel):
    """One tool call requested by a model."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Call id, unique within the run; tool results refer to it."""
    name: str
    """Name of the tool to call."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments as parsed JSON. Arguments that are not a JSON object (invalid JSON, an array)
    arrive as ``{"__raw__": "<the text the model sent>"}``."""

    @property
    def raw_arguments(self) -> str | None:
        """The model's arguments text when it was not a JSON object, else ``None``. It is sent
        back to the model unchanged in the conversation's history."""
        if len(self.arguments) == 1 and RAW_ARGUMENTS_KEY in self.arguments:
            raw = self.arguments[RAW_ARGUMENTS_KEY]
            return raw if isinstance(raw, str) else None
        return None

    def arguments_text(self) -> str:
        """The arguments as a model sends them: its own text when that was not a JSON object
        (a tool's error result tells it what was wrong), else the arguments as JSON."""
        raw = self.raw_arguments
        return raw if raw is not None else json.dumps(self.arguments)


@dataclass(slots=True, kw_only=True)
class Message(PlainData):
    """One chat message, in the OpenAI chat-completions shape."""

    role: Literal["system", "user", "assistant", "tool"]
    """Who speaks."""
    content: str = ""
    """Text content (for ``tool`` messages: the tool's result, serialized)."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    """Tool calls requested by an ``assistant`` message."""
    tool_call_id: str | None = None
    """For ``tool`` messages: the id of the call this result answers."""
    name: str | None = None
    """For ``tool`` messages: the tool's name."""


class ToolDefinition(BaseModel):
    """A tool as a model sees it: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class Usage(PlainData):
    """Token usage of one model call (or totals of a run)."""

    input_tokens: int = 0
    """Prompt tokens, including cached ones."""
    output_tokens: int = 0
    """Completion tokens."""
    cached_input_tokens: int = 0
    """Prompt tokens served from the provider's prompt cache (billed at a lower rate)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
        )


class ModelSettings(BaseModel):
    """Sampling settings for one request."""

    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None


@dataclass(slots=True, kw_only=True)
class ModelRequest(PlainData):
    """Everything a model call needs."""

    messages: list[Message]
    tools: list[ToolDefinition] = field(default_factory=list)
    settings: ModelSettings = field(default_factory=ModelSettings)


@dataclass(slots=True, kw_only=True)
class ModelResponse(PlainData):
    """A model's reply: text, tool calls, or both."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    """Model name the provider reports having used."""
    finish_reason: str = "stop"
    response_id: str | None = None
    usage_known: bool = True
    """Whether the provider reported the call's usage. When not (a server that leaves
    ``usage`` out, a stream cut off before its usage came), ``usage`` is zeros, not a count:
    the run records the call's cost as unknown, never as free."""

    def as_message(self) -> Message:
        return Message(role="assistant", content=self.content, tool_calls=list(self.tool_calls))


MAX_CALL_TOKENS: Final = 10**12
"""The most tokens (each of input, output, cached) a model call may report: far above any
model, and low enough that a run's totals stay in the store's signed 64-bit columns and
Cedar's Longs (2^70 failed the run's writes; a negative count read as spend given back). OTLP
ingest takes spans up to the same count (``tether.server.otlp_mapping.MAX_TOKENS``)."""
_COUNTS: Final = ("input_tokens", "output_tokens", "cached_input_tokens")


def response_problem(response: object) -> str | None:
    """What makes ``response`` no reply a run can go on with, in words to follow "the reply"
    ("content is a NoneType, not text"); None when it is one.

    A ``ModelResponse`` is a plain dataclass whose constructor checks nothing, and one made by
    code (a model integration's ``complete``, a control's ``Decision.respond``) reaches the
    run as it was built: content that is not text failed the run with an ``AttributeError``
    deep in the trace code, and a token count past the store's 64-bit columns had every write
    of the run's end refused (the run stayed ``running`` in the store for ever)."""
    if not isinstance(response, ModelResponse):
        return f"is a {type(response).__name__}, not a ModelResponse"
    if not isinstance(response.content, str):
        return f"content is a {type(response.content).__name__}, not text"
    calls = response.tool_calls
    if not isinstance(calls, list) or (calls and not all(isinstance(c, ToolCall) for c in calls)):
        return "tool_calls are not a list of ToolCall"
    usage = response.usage
    if not isinstance(usage, Usage):
        return f"usage is a {type(usage).__name__}, not a Usage"
    counts = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
    for name, count in zip(_COUNTS, counts, strict=True):
        if type(count) is not int or not 0 <= count <= MAX_CALL_TOKENS:
            return f"usage.{name} ({count!r}) is not a count from 0 to {MAX_CALL_TOKENS:,}"
    if not isinstance(response.model, str) or not isinstance(response.finish_reason, str):
        return "model or finish_reason is not text"
    if response.response_id is not None and not isinstance(response.response_id, str):
        return "response_id is not text"
    return None


@runtime_checkable
class Model(Protocol):
    """What the runtime needs from a model provider.

    A model may also stream (``stream(request)``, see ``StreamingModel`` in
    ``tether.providers.streaming``); that method is not part of this protocol, so a model
    written before streaming existed still is a ``Model``. ``stream_of(model, request)``
    streams any model.
    """

    @property
    def provider(self) -> str:
        """Provider name as OTel's ``gen_ai.provider.name`` expects (``openai``, ``scripted``)."""
        ...

    @property
    def name(self) -> str:
        """Requested model name (``gen_ai.request.model``)."""
        ...

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one chat completion. Raises ``ProviderError`` on failure."""
        ...
