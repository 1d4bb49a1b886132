"""The OpenAI chat-completions wire format: request bodies, completions, and streamed completions.

Plain functions and classes with no HTTP client in them; the transport is ``openai_compat``.
The caller supplies how a problem becomes a ``ProviderError`` (an ``ErrorFactory``, or a
``WireErrors``), since only it knows the endpoint to name and the API key to redact.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from tether.core import ProviderError, scrub_surrogates
from tether.providers.streaming import (
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageUpdate,
)
from tether.providers.types import (
    MAX_CALL_TOKENS,
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolDefinition,
    Usage,
    decode_arguments,
)

EXCERPT_CHARS: Final = 200
"""How much of a response body an error message quotes."""
_REASONING_KEYS: Final = ("reasoning_content", "reasoning")
"""Where servers stream a reasoning model's thinking (vLLM and DeepSeek, OpenRouter): not
part of the reply, but progress: a model thinking for minutes is not stalled."""


class ErrorFactory(Protocol):
    """Builds the ``ProviderError`` to raise for ``message`` (redacting whatever is secret)."""

    def __call__(self, message: str, *, hint: str | None = None) -> ProviderError: ...


@dataclass(frozen=True, slots=True)
class WireErrors:
    """How wire-format problems become errors; supplied by the transport."""

    error: ErrorFactory
    garbage: Callable[[str, str], ProviderError]
    """``(what is wrong, the body's first characters)`` -> the error for a malformed response."""
    reported: Callable[[Any, str], Exception]
    """``(an "error" member the server sent, where: "returned an error", say)`` -> the
    failure to raise for it: transient when it says the server failed or was busy."""
    too_long: Callable[[int], ProviderError] = lambda limit: ProviderError(
        f"a stream event is longer than {limit:,} characters"
    )
    """``(the cap)`` -> the error for a stream event past it."""


def request_body(
    request: ModelRequest,
    *,
    model: str,
    temperature: float | None,
    seed: int | None,
    max_tokens: int | None,
    stream: bool,
    error: ErrorFactory,
) -> dict[str, Any]:
    """The chat-completions JSON body for ``request``; its settings override the defaults."""
    settings = request.settings
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_json(m, error) for m in request.messages],
    }
    if request.tools:
        body["tools"] = [tool_json(t) for t in request.tools]
    options = {
        "temperature": _first(settings.temperature, temperature),
        "seed": _first(settings.seed, seed),
        "max_tokens": _first(settings.max_tokens, max_tokens),
    }
    body.update({k: v for k, v in options.items() if v is not None})
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def body_bytes(body: dict[str, Any]) -> bytes:
    """A request body as UTF-8 JSON, as httpx would encode it, with any lone surrogate as
    U+FFFD: a message may hold one (a control's rewrite of the input, an application's request
    read with ``surrogateescape``), UTF-8 cannot carry it, and httpx's encoding raised a
    UnicodeEncodeError out of the run instead of sending the request."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return scrub_surrogates(text).encode()


def message_json(message: Message, error: ErrorFactory) -> dict[str, Any]:
    """One entry of the body's ``messages``."""
    if message.role == "tool":
        if not message.tool_call_id:
            raise error(
                "a 'tool' message has no tool_call_id",
                hint="every tool result must name the tool call it answers",
            )
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_text()},
            }
            for call in message.tool_calls
        ]
    return out


def tool_json(tool: ToolDefinition) -> dict[str, Any]:
    """One entry of the body's ``tools``."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def parse_body(raw: bytes, errors: WireErrors, *, default_model: str) -> ModelResponse:
    """A non-streamed completion body as a ``ModelResponse``."""
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # nested past the parser's depth: not a reply either
        raise errors.garbage("the body is not JSON", text) from None
    return parse_completion(data, text, errors, default_model=default_model)


def parse_completion(
    data: Any, excerpt: str, errors: WireErrors, *, default_model: str
) -> ModelResponse:
    """A decoded completion as a ``ModelResponse`` (``excerpt`` is quoted if it is malformed)."""

    def bad(what: str) -> ProviderError:
        return errors.garbage(what, excerpt)

    if not isinstance(data, dict):
        raise bad("the body is not a JSON object")
    if data.get("error") is not None and "choices" not in data:
        raise errors.reported(data["error"], "returned an error")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise bad("'choices' is missing or empty")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise bad("'choices[0]' is not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise bad("'choices[0].message' is missing or not an object")

    content = _first(message.get("content"), "")
    if not isinstance(content, str):
        raise bad("'message.content' is not a string")
    refusal = message.get("refusal")
    if not content and isinstance(refusal, str):
        content = refusal

    raw_calls = _first(message.get("tool_calls"), [])
    if not isinstance(raw_calls, list):
        raise bad("'message.tool_calls' is not a list")
    tool_calls: list[ToolCall] = []
    for i, item in enumerate(raw_calls):
        if not isinstance(item, dict):
            raise bad(f"'tool_calls[{i}]' is not an object")
        function = item.get("function")
        if not isinstance(function, dict):
            raise bad(f"'tool_calls[{i}].function' is missing or not an object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"'tool_calls[{i}].function.name' is missing or not a string")
        call_id = item.get("id")
        if call_id is None or call_id == "":
            call_id = f"call_{uuid.uuid4().hex[:24]}"  # some servers omit ids
        if not isinstance(call_id, str):
            raise bad(f"'tool_calls[{i}].id' is not a string")
        arguments = decode_arguments(function.get("arguments"))
        if arguments is None:
            raise bad(f"'tool_calls[{i}].function.arguments' is not a string")
        tool_calls.append(ToolCall(id=call_id, name=name, arguments=arguments))

    usage = parse_usage(data.get("usage"), bad)
    usage_known = data.get("usage") is not None
    model = data.get("model")
    finish_reason = choice.get("finish_reason")
    response_id = data.get("id")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise bad("'finish_reason' is not a string")
    if finish_reason is None:
        finish_reason = "tool_calls" if tool_calls else "stop"
    return ModelResponse(
        content=content,
        tool_calls=tool_calls,
        usage=usage,
        model=model if isinstance(model, str) and model else default_model,
        finish_reason=finish_reason,
        response_id=response_id if isinstance(response_id, str) else None,
        usage_known=usage_known,
    )


def parse_usage(usage: Any, bad: Callable[[str], ProviderError]) -> Usage:
    """A completion's ``usage`` member (``None``: zeros) as ``Usage``; ``bad(what)`` is the
    error for a malformed one."""
    usage = _first(usage, {})
    if not isinstance(usage, dict):
        raise bad("'usage' is not an object")
    details = _first(usage.get("prompt_tokens_details"), {})
    if not isinstance(details, dict):
        raise bad("'usage.prompt_tokens_details' is not an object")
    counts: dict[str, int] = {}
    for label, source, key in (
        ("input_tokens", usage, "prompt_tokens"),
        ("output_tokens", usage, "completion_tokens"),
        ("cached_input_tokens", details, "cached_tokens"),
    ):
        value = _first(source.get(key), 0)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(f"'usage' field {key!r} is not an integer")
        if not 0 <= value <= MAX_CALL_TOKENS:
            raise bad(f"'usage' field {key!r} is out of range (0 to {MAX_CALL_TOKENS:,})")
        counts[label] = value
    return Usage(**counts)


class StreamState:
    """Turns the server-sent events (``text/event-stream``) of one streamed completion into
    stream events, and assembles the completion.

    Feed it each line (without its line break) with ``feed_line``, which returns the events
    that line completes, until ``done`` (``[DONE]`` came) or the lines run out; then ``flush``
    (an event the stream did not close with a blank line) and ``end``. Content and refusal
    text both become ``TextDelta``s, so the final content is all the text in arrival order.
    """

    def __init__(
        self, errors: WireErrors, *, default_model: str, max_event_chars: int | None = None
    ) -> None:
        self._errors = errors
        self._max_event = max_event_chars
        self._event_chars = 0
        self._default_model = default_model
        self.reply = StreamAccumulator(model=default_model)
        """Every event returned so far, folded."""
        self.usage: Any = None
        self.model: Any = None
        self.response_id: Any = None
        self.finish_reason: Any = None
        self.chunks = 0
        """``chat.completion.chunk`` events seen."""
        self.progress = 0
        """Chunks that carried something: text (or reasoning text), a tool-call delta, usage
        or a finish reason. A chunk without any (``{}``, a role alone, empty strings) is no
        progress: a server sending only those is stalled however fast it sends them."""
        self.done = False
        """Whether ``[DONE]`` came."""
        self._seen: list[str] = []  # the stream's first characters, for error messages
        self._seen_chars = 0
        self._data_lines: list[str] = []

    def feed_line(self, line: str) -> list[StreamEvent]:
        """Take one line; the events it completes (usually none or one)."""
        if self._seen_chars < EXCERPT_CHARS:
            self._seen.append(line + "\n")
            self._seen_chars += len(line) + 1
        if line == "":
            return self.flush()
        if line.startswith(":"):
            return []  # SSE comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            data = value[1:] if value.startswith(" ") else value
            self._event_chars += len(data) + 1
            if self._max_event is not None and self._event_chars > self._max_event:
                # Many ``data:`` lines with no blank line to end their event.
                raise self._errors.too_long(self._max_event)
            self._data_lines.append(data)
        return []

    def flush(self) -> list[StreamEvent]:
        """The events of the pending ``data:`` lines, if any (their event is complete)."""
        if not self._data_lines or self.done:
            return []
        payload = "\n".join(self._data_lines)
        self._data_lines = []
        self._event_chars = 0
        events = self._event(payload)
        for event in events:
            self.reply.add(event)
        return events

    def end(self) -> StreamEnd | None:
        """The lines ran out: the last event, or ``None`` if ``[DONE]`` never came (the stream
        was cut short). Raises for a stream that carried no completion at all."""
        excerpt = "".join(self._seen)
        if self.chunks == 0:
            if self.done:
                raise self._errors.garbage(
                    "the stream ended with [DONE] but carried no chunks", excerpt
                )
            raise self._errors.garbage("the stream carried no 'data:' events", excerpt)
        if not self.done:
            return None
        response = parse_completion(
            self.as_completion(), excerpt, self._errors, default_model=self._default_model
        )
        end = StreamEnd(response, usage_known=self.usage is not None)
        self.reply.add(end)
        return end

    def as_completion(self) -> dict[str, Any]:
        """The assembled stream in the shape of a non-streamed completion."""
        message: dict[str, Any] = {"role": "assistant", "content": self.reply.text}
        calls = self.reply.tool_calls()
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ]
        return {
            "id": self.response_id,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }

    def _event(self, payload: str) -> list[StreamEvent]:
        errors = self._errors
        if payload.strip() == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            raise errors.garbage("a stream event is not JSON", payload) from None
        if not isinstance(chunk, dict):
            raise errors.garbage("a stream event is not a JSON object", payload)
        if chunk.get("error") is not None:
            raise errors.reported(chunk["error"], "reported an error mid-stream")
        self.chunks += 1
        if chunk.get("id") is not None:
            self.response_id = chunk["id"]
        if chunk.get("model") is not None:
            self.model = chunk["model"]
        events: list[StreamEvent] = []
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
            usage = parse_usage(self.usage, lambda what: errors.garbage(what, payload))
            events.append(UsageUpdate(usage))
        choices = chunk.get("choices")
        moved = False
        if choices is None:
            if events:
                self.progress += 1
            return events
        if not isinstance(choices, list):
            raise errors.garbage("'choices' in a stream event is not a list", payload)
        for choice in choices:
            if not isinstance(choice, dict):
                raise errors.garbage("a stream choice is not an object", payload)
            if choice.get("index") not in (0, None, "0"):
                # Only the first choice is used (n=1); an index left out, null or written as
                # text ("0": its deltas were dropped without a word) is it.
                continue
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
                moved = True
            delta = choice.get("delta")
            if delta is None:
                continue
            if not isinstance(delta, dict):
                raise errors.garbage("'delta' in a stream event is not an object", payload)
            # The usage of a chunk comes after its deltas (servers that report usage in
            # every chunk report it for the text up to and including that chunk's).
            events[:0] = self._delta(delta, payload)
            if any(isinstance(delta.get(k), str) and delta[k] for k in _REASONING_KEYS):
                moved = True
        if events or moved:
            self.progress += 1
        return events

    def _delta(self, delta: dict[str, Any], payload: str) -> list[StreamEvent]:
        def bad(what: str) -> ProviderError:
            return self._errors.garbage(what, payload)

        events: list[StreamEvent] = []
        for key in ("content", "refusal"):
            text = delta.get(key)
            if text is None:
                continue
            if not isinstance(text, str):
                raise bad(f"'delta.{key}' is not a string")
            if text:
                events.append(TextDelta(text))
        calls = delta.get("tool_calls")
        if calls is None:
            return events
        if not isinstance(calls, list):
            raise bad("'delta.tool_calls' is not a list")
        for position, item in enumerate(calls):
            if not isinstance(item, dict):
                raise bad("a tool-call delta is not an object")
            index = item.get("index", position)
            if not isinstance(index, int) or isinstance(index, bool):
                raise bad("a tool-call delta's 'index' is not an integer")
            call_id = item.get("id") or None
            if call_id is not None and not isinstance(call_id, str):
                raise bad("a tool-call delta's 'id' is not a string")
            function = _first(item.get("function"), {})
            if not isinstance(function, dict):
                raise bad("a tool-call delta's 'function' is not an object")
            name = function.get("name") or None
            if name is not None and not isinstance(name, str):
                raise bad("a tool-call delta's 'function.name' is not a string")
            fragment = _first(function.get("arguments"), "")
            if not isinstance(fragment, str):
                raise bad("tool-call 'arguments' fragment is not a string")
            events.append(ToolCallDelta(index, call_id, name, fragment))
        return events


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def error_text(error: Any, redact: Callable[[str], str]) -> str:
    """The message of an ``error`` member (``{"message": ...}`` or a plain string), else the
    member itself as JSON, cut to ``EXCERPT_CHARS`` once ``redact`` hid its secrets."""
    message = _message_in(error)
    return message if message is not None else redact(json.dumps(error))[:EXCERPT_CHARS]


def api_error_message(text: str) -> str:
    """The message of an API error body (``error.message``, ``message`` or ``detail``: servers
    differ), else the body's first characters (hide secrets in ``text`` first: a secret cut
    in two is not found any more)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        for candidate in (data.get("error"), data.get("message"), data.get("detail")):
            message = _message_in(candidate)
            if message is not None:
                return message
    excerpt = text.strip()[:EXCERPT_CHARS]
    return repr(excerpt) if excerpt else "(empty body)"


def _message_in(error: Any) -> str | None:
    if isinstance(error, Mapping):
        error = error.get("message")
    return error if isinstance(error, str) and error else None
