"""What the loop records about messages: OTel GenAI message attributes, clipped to size.

``gen_ai.input.messages`` and ``gen_ai.output.messages`` follow the OpenTelemetry GenAI
semantic conventions: arrays of ``{"role", "parts": [...]}`` whose parts are ``text``,
``tool_call`` and ``tool_call_response``. They are kept as lists of dicts in the span's
attributes, serialized once with them (stores written before held them as JSON text inside the
attributes' JSON: read either shape with ``tether.trace.messages.stored_messages``). Long
values are clipped so one tool result cannot make a span unstorable; a run's input, output
and error are clipped at ``TETHER_MAX_PAYLOAD_CHARS`` (``Settings.max_payload_chars``).
Clipped text ends with a marker giving the full size. Only what is stored is clipped: the run
itself, and the ``RunResult`` its caller gets, keep the whole text.
"""

from __future__ import annotations

from typing import Any, overload

from tether.core.jsontext import compact_json_encoder, json_bytes
from tether.core.settings import max_payload_chars_from_env
from tether.core.text import clip_text
from tether.providers import Message, ModelResponse, ToolCall

# Built once: json.dumps with options builds a new encoder on every call. Readable spacing
# for what a person reads (arguments shown as text); sizes are those of compact JSON.
_dumps = compact_json_encoder(ensure_ascii=False, separators=(", ", ": "))

MAX_ATTRIBUTE_CHARS = 8_000
"""Longer attribute values (tool arguments and results, message parts, errors) are clipped."""
MAX_INPUT_MESSAGES_CHARS = 32_000
"""A chat span's ``gen_ai.input.messages`` beyond this leaves out the oldest messages."""


def clip(text: str) -> str:
    """An attribute value as stored: at most ``MAX_ATTRIBUTE_CHARS``, then a marker."""
    return clip_text(text, MAX_ATTRIBUTE_CHARS)


@overload
def stored_payload(text: str) -> str: ...
@overload
def stored_payload(text: None) -> None: ...
def stored_payload(text: str | None) -> str | None:
    """A run's input, output or error as its trace stores it: clipped past
    ``TETHER_MAX_PAYLOAD_CHARS``, so one huge answer cannot make a row of many megabytes."""
    if text is None:
        return None
    return clip_text(text, max_payload_chars_from_env())


def arguments_text(call: ToolCall) -> str:
    """A call's arguments as the trace shows them: what the model sent, if not a JSON object.
    Characters stay characters (``世界``, not ``\\u4e16\\u754c``)."""
    raw = call.raw_arguments
    return clip(raw if raw is not None else _dumps(call.arguments))


def _longer_than_attribute(value: Any) -> bool:
    """Whether ``value`` as compact JSON has more than ``MAX_ATTRIBUTE_CHARS`` characters
    (counted in bytes first: never fewer than the characters)."""
    data = json_bytes(value)
    return len(data) > MAX_ATTRIBUTE_CHARS and len(data.decode()) > MAX_ATTRIBUTE_CHARS


def otel_parts(message: Message) -> list[dict[str, Any]]:
    """A message's parts in the OTel GenAI shape (text, tool_call, tool_call_response)."""
    if message.role == "tool":
        response = clip(message.content)
        return [{"type": "tool_call_response", "id": message.tool_call_id, "response": response}]
    return _parts(message.content, message.tool_calls)


def _parts(content: str, tool_calls: list[ToolCall]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if content:
        parts.append({"type": "text", "content": clip(content)})
    for call in tool_calls:
        raw = call.raw_arguments
        arguments: Any = call.arguments if raw is None else raw
        if raw is not None or _longer_than_attribute(arguments):
            arguments = arguments_text(call)
        part = {"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}
        parts.append(part)
    return parts


MessageCache = dict[int, tuple[Message, dict[str, Any], int, tuple[Any, ...]]]
"""Messages already converted in a run, by ``id()``, with their size as stored and what they
held then (``_held``): each turn resends the whole conversation, so without it a run's work
grows with the square of its length."""


def _held(message: Message) -> tuple[Any, ...]:
    """What a message holds, to tell later whether it was changed: a ``Message`` is mutable,
    and a loop that edits one in place (its system prompt, the last user message) between
    two calls must not have the second call's span show the first's text."""
    return (message.content, message.tool_calls, len(message.tool_calls), message.role)


def _unchanged(held: tuple[Any, ...], message: Message) -> bool:
    content, calls, n, role = held
    # By identity for the text and the list (a new text is a new object): cheap at any size.
    return (
        message.content is content
        and message.tool_calls is calls
        and len(calls) == n
        and message.role == role
    )


def _converted(message: Message, cache: MessageCache | None) -> tuple[dict[str, Any], int]:
    if cache is not None:
        hit = cache.get(id(message))
        if hit is not None and hit[0] is message and _unchanged(hit[3], message):
            return hit[1], hit[2]
    entry = {"role": message.role, "parts": otel_parts(message)}
    # As the store writes it, inside the span's attributes; in UTF-8 bytes, which is at least
    # the characters (and cheaper to get).
    size = len(json_bytes(entry))
    if cache is not None:
        # The message is kept: its id is not reused.
        cache[id(message)] = (message, entry, size, _held(message))
    return entry, size


def input_messages(
    messages: list[Message], cache: MessageCache | None = None
) -> tuple[list[dict[str, Any]], int]:
    """``gen_ai.input.messages`` (a list of OTel messages, stored as JSON once, with the rest
    of the span's attributes), and how many of the oldest messages it leaves out to stay
    within ``MAX_INPUT_MESSAGES_CHARS`` of JSON (system messages and the newest are kept).
    The messages of a run's cache are shared between its spans: read them, never change them."""
    converted = [_converted(m, cache) for m in messages]
    keep = [True] * len(converted)
    size = 1 + sum(entry_size + 1 for _entry, entry_size in converted)
    omitted = 0
    for i, message in enumerate(messages[:-1]):
        if size <= MAX_INPUT_MESSAGES_CHARS:
            break
        if message.role != "system":
            keep[i] = False
            size -= converted[i][1] + 1
            omitted += 1
    return [entry for (entry, _size), k in zip(converted, keep, strict=True) if k], omitted


def output_messages(response: ModelResponse) -> list[dict[str, Any]]:
    """``gen_ai.output.messages``: the reply, with its finish reason."""
    message = {
        "role": "assistant",
        "parts": _parts(response.content, response.tool_calls),
        "finish_reason": response.finish_reason,
    }
    return [message]
