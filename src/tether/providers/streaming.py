"""Streamed model replies: the events a stream yields, folding them into a response, and
streaming any model, including one that can only ``complete()``.

A stream is an ``AsyncIterator[StreamEvent]``: ``TextDelta`` and ``ToolCallDelta`` pieces as
they arrive, ``UsageUpdate`` when the provider reports usage, and last ``StreamEnd`` with the
assembled ``ModelResponse`` (the same one ``complete()`` returns for the same request). A
stream that fails raises ``ProviderError``; what it yielded before stays yielded, and a
``StreamAccumulator`` that saw those events still gives the partial reply and the usage known
so far. Close a stream you stop reading early (``contextlib.aclosing``), so its connection is
released at once rather than when the garbage collector gets to it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from tether.core import ProviderError
from tether.providers.types import (
    Model,
    ModelRequest,
    ModelResponse,
    ToolCall,
    Usage,
    decode_arguments,
    response_problem,
)

__all__ = [
    "INCOMPLETE",
    "PartialToolCall",
    "StreamAccumulator",
    "StreamEnd",
    "StreamEvent",
    "StreamingModel",
    "TextDelta",
    "ToolCallDelta",
    "UsageUpdate",
    "event_problem",
    "response_events",
    "stream_of",
]

INCOMPLETE: Final = "incomplete"
"""``finish_reason`` of a partial response: the stream has not ended (or never will)."""

_WORD: Final = re.compile(r"\s*\S+\s*|\s+")
_ARGUMENT_PIECE: Final = 16
"""Characters of a tool call's arguments per delta when a response is cut into pieces."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text, to append to what came before."""

    text: str
    """The new text."""


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one tool call; pieces of the same call share its ``index``."""

    index: int
    """Which call of the reply this piece belongs to (calls are ordered by it)."""
    id: str | None = None
    """The call's id, when this piece carries it (usually the first)."""
    name: str | None = None
    """The tool's name, when this piece carries it (usually the first)."""
    arguments_delta: str = ""
    """Text to append to the call's arguments (JSON once they are complete)."""


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    """Token usage the provider reported, for the whole call so far (it replaces, not adds
    to, an earlier update)."""

    usage: Usage
    """Usage so far."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The stream is complete: always its last event."""

    response: ModelResponse
    """The assembled reply with usage, model, finish reason and response id."""
    usage_known: bool = True
    """Whether the provider reported usage; when not (a server that ignores
    ``stream_options.include_usage``), ``response.usage`` is all zeros, not a count."""


StreamEvent = TextDelta | ToolCallDelta | UsageUpdate | StreamEnd
"""What a stream yields."""


@runtime_checkable
class StreamingModel(Model, Protocol):
    """A ``Model`` that can also stream its reply.

    Kept apart from ``Model`` so that a model written without ``stream`` still passes
    ``isinstance(m, Model)``. ``isinstance(m, StreamingModel)`` only checks that a ``stream``
    attribute exists; ``stream_of`` also checks that it can be called.
    """

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Run one chat completion, yielding its reply as it comes; ``StreamEnd`` last.
        Raises ``ProviderError`` on failure (after the events it already yielded)."""
        ...


@dataclass(frozen=True, slots=True)
class PartialToolCall:
    """A tool call as far as its deltas have come."""

    index: int
    """Its ``ToolCallDelta.index``."""
    id: str | None
    """Its id, once a delta carried one."""
    name: str
    """The tool's name (empty until a delta carried it)."""
    arguments: str
    """The arguments' text so far."""

    def as_tool_call(self) -> ToolCall:
        """As a ``ToolCall``: arguments parsed when they are a complete JSON object, else kept
        as text under ``RAW_ARGUMENTS_KEY``; an id not yet known is empty."""
        return ToolCall(
            id=self.id or "", name=self.name, arguments=decode_arguments(self.arguments) or {}
        )


class _CallParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name = ""
        self.arguments: list[str] = []


class StreamAccumulator:
    """Folds a stream's events into the reply so far.

    ``response()`` is the final response once ``StreamEnd`` was added, else a partial one:
    the text so far, the tool calls so far, the usage reported so far (zeros if none),
    ``finish_reason`` ``INCOMPLETE``. Feed it every event (``add``); it never raises on events
    in an odd order (a delta after the end is kept in the partial fields but the final
    response stands).
    """

    def __init__(self, *, model: str = "") -> None:
        self._model = model
        self._text: list[str] = []
        self._calls: dict[int, _CallParts] = {}
        self._usage: Usage | None = None
        self._end: StreamEnd | None = None
        self.events = 0
        """Events added so far."""

    def add(self, event: StreamEvent) -> None:
        """Take one event."""
        self.events += 1
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self._calls.get(event.index)
            if call is None:
                call = self._calls[event.index] = _CallParts()
            if event.id:
                call.id = event.id
            if event.name and not call.name:
                call.name = event.name
            if event.arguments_delta:
                call.arguments.append(event.arguments_delta)
        elif isinstance(event, UsageUpdate):
            self._usage = event.usage
        else:
            self._end = event

    @property
    def ended(self) -> bool:
        """Whether ``StreamEnd`` was added."""
        return self._end is not None

    @property
    def text(self) -> str:
        """The reply's text so far (the final content once ended)."""
        return self._end.response.content if self._end is not None else "".join(self._text)

    @property
    def usage(self) -> Usage:
        """The usage known so far (the final usage once ended; zeros when none was reported)."""
        if self._end is not None:
            return self._end.response.usage
        return self._usage if self._usage is not None else Usage()

    @property
    def usage_known(self) -> bool:
        """Whether the provider reported usage (so far, or in the end)."""
        if self._end is not None:
            return self._end.usage_known
        return self._usage is not None

    def tool_calls(self) -> list[PartialToolCall]:
        """The tool calls so far, by index, with their arguments' text as it stands."""
        return [
            PartialToolCall(index, call.id, call.name, "".join(call.arguments))
            for index, call in sorted(self._calls.items())
        ]

    def response(self) -> ModelResponse:
        """The final response once ended, else the partial one (see the class)."""
        if self._end is not None:
            return self._end.response
        return ModelResponse(
            content="".join(self._text),
            tool_calls=[call.as_tool_call() for call in self.tool_calls()],
            usage=self.usage,
            model=self._model,
            finish_reason=INCOMPLETE,
            usage_known=self._usage is not None,
        )


def event_problem(event: object) -> str | None:
    """What makes ``event`` no stream event a run can take, in words to follow "the stream
    sent" ("a str, not a stream event"); None when it is one. Events are plain dataclasses
    that check nothing when made, and a model integration's own ``stream()`` yields them as
    it built them: anything else, or text that is not text, crashed the run past its step,
    and a usage past the store's columns had the run's end refused."""
    if isinstance(event, TextDelta):
        return None if isinstance(event.text, str) else "a TextDelta whose text is not text"
    if isinstance(event, ToolCallDelta):
        if type(event.index) is not int or not isinstance(event.arguments_delta, str):
            return "a ToolCallDelta whose index is not an int or arguments_delta not text"
        if not all(v is None or isinstance(v, str) for v in (event.id, event.name)):
            return "a ToolCallDelta whose id or name is not text"
        return None
    if isinstance(event, UsageUpdate):
        problem = response_problem(ModelResponse(usage=event.usage))
        return None if problem is None else f"a UsageUpdate whose {problem}"
    if isinstance(event, StreamEnd):
        problem = response_problem(event.response)
        return None if problem is None else f"a StreamEnd whose reply {problem}"
    return f"a {type(event).__name__}, not a stream event"


def response_events(
    response: ModelResponse, *, pieces: bool = False, usage_known: bool = True
) -> Iterator[StreamEvent]:
    """The events of a stream that delivers ``response``: its text, each tool call, then
    ``StreamEnd``. With ``pieces`` the text comes a word at a time (with the white space
    after it) and arguments 16 characters at a time, else each in one delta. Folding the
    events gives ``response`` back (``StreamEnd`` carries it)."""
    if response.content:
        texts = _WORD.findall(response.content) if pieces else [response.content]
        for text in texts:
            yield TextDelta(text)
    for index, call in enumerate(response.tool_calls):
        arguments = call.arguments_text()
        if not pieces:
            yield ToolCallDelta(index, call.id, call.name, arguments)
            continue
        yield ToolCallDelta(index, call.id, call.name)
        for start in range(0, len(arguments), _ARGUMENT_PIECE):
            yield ToolCallDelta(index, arguments_delta=arguments[start : start + _ARGUMENT_PIECE])
    yield StreamEnd(response, usage_known=usage_known and response.usage_known)


def stream_of(model: Model, request: ModelRequest) -> AsyncIterator[StreamEvent]:
    """Stream ``model``'s reply to ``request``: ``model.stream(request)`` when the model has
    a ``stream`` method, else ``complete`` with the whole reply as one text delta, a delta per
    tool call, and ``StreamEnd``. The iterator raises ``ProviderError`` as the model does;
    a ``stream`` that returns no async iterator is a ``ProviderError`` here."""
    stream = getattr(model, "stream", None)
    if not callable(stream):
        return _completed(model, request)
    events = stream(request)
    if not isinstance(events, AsyncIterator):
        if inspect.iscoroutine(events):
            events.close()  # never awaited: close it, or Python warns about it later
        raise ProviderError(
            f"model {model.name!r}: stream() returned {type(events).__name__}, "
            "not an async iterator",
            hint="write stream() as an async generator (async def with yield), "
            "or leave it out and Tether streams complete()'s reply",
        )
    return events


async def _completed(model: Model, request: ModelRequest) -> AsyncIterator[StreamEvent]:
    for event in response_events(await model.complete(request)):
        yield event
