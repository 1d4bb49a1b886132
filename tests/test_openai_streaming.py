"""``OpenAIChatModel.stream()`` against a real HTTP server on 127.0.0.1 speaking server-sent
events (``tests/fakes/openai_server``): deltas, usage, errors before and during the stream, a
cut connection, a stall, and the size cap."""

from __future__ import annotations

import contextlib
import gzip
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from fakes.openai_server import (
    FakeOpenAIServer,
    Reply,
    completion_body,
    litellm_unknown_model,
    stream_chunk,
    tool_call_json,
)
from tether.core import ProviderError
from tether.providers import (
    Message,
    ModelRequest,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    StreamingModel,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageUpdate,
    openai_compat,
    stream_of,
)
from tether.providers.http_client import ResponseTooLarge, lines_capped
from tether.providers.openai_compat import OpenAIChatModel
from tether.providers.streaming import INCOMPLETE

SECRET = "sk-test-SECRET-0123456789"
USAGE = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}

MakeModel = Callable[..., OpenAIChatModel]


def user(text: str = "hello") -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)])


async def drain(
    model: OpenAIChatModel, request: ModelRequest | None = None
) -> tuple[list[StreamEvent], ProviderError | None]:
    """Every event the stream yields, and the error it ends with (if any)."""
    events: list[StreamEvent] = []
    try:
        async for event in model.stream(request or user()):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None


def texts(events: list[StreamEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def fold(events: list[StreamEvent]) -> StreamAccumulator:
    acc = StreamAccumulator(model="gpt-test")
    for event in events:
        acc.add(event)
    return acc


TC = "tool_calls"
TOOL_STREAM: list[dict[str, Any] | str] = [
    ": keep-alive\n\n",
    stream_chunk({"role": "assistant", "content": ""}),
    stream_chunk({"content": "Let me "}),
    stream_chunk({"content": "check."}),
    stream_chunk(
        {TC: [{"index": 0, "id": "call_1", "function": {"name": "weather", "arguments": ""}}]}
    ),
    stream_chunk({TC: [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    stream_chunk(
        {
            TC: [
                {"index": 0, "function": {"arguments": 'ty": "Paris"}'}},
                {"index": 1, "id": "call_2", "function": {"name": "clock", "arguments": "{}"}},
            ]
        }
    ),
    stream_chunk(finish_reason="tool_calls"),
    stream_chunk(usage={**USAGE, "prompt_tokens_details": {"cached_tokens": 32}}),
]


# --------------------------------------------------------------------------- happy paths


async def test_stream_yields_deltas_usage_and_the_assembled_end(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=TOOL_STREAM))
    model = make_model()
    assert isinstance(model, StreamingModel)

    events, error = await drain(model)

    assert error is None
    assert events[:3] == [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallDelta(0, "call_1", "weather", ""),
    ]
    assert events[3:6] == [
        ToolCallDelta(0, None, None, '{"ci'),
        ToolCallDelta(0, None, None, 'ty": "Paris"}'),
        ToolCallDelta(1, "call_2", "clock", "{}"),
    ]
    usage = Usage(input_tokens=50, output_tokens=20, cached_input_tokens=32)
    assert events[6] == UsageUpdate(usage)
    end = events[7]
    assert isinstance(end, StreamEnd) and len(events) == 8
    assert end.usage_known
    response = end.response
    assert response.content == "Let me check."
    assert response.tool_calls == [
        ToolCall(id="call_1", name="weather", arguments={"city": "Paris"}),
        ToolCall(id="call_2", name="clock", arguments={}),
    ]
    assert (response.finish_reason, response.response_id) == ("tool_calls", "chatcmpl-stream-1")
    assert response.model == "gpt-test-2025"
    assert fold(events).response() == response
    body = openai_server.requests[0].json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert model.last_attempts == 1


async def test_stream_and_complete_with_stream_setting_agree(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=TOOL_STREAM), Reply(sse=TOOL_STREAM))

    events, _ = await drain(make_model())
    completed = await make_model(stream=True).complete(user())

    assert isinstance(events[-1], StreamEnd) and events[-1].response == completed
    assert "stream" not in make_model().request_body(user())


def _sse_of(body: dict[str, Any], rng: random.Random, *, usage: bool) -> list[dict[str, Any]]:
    """A completion body as a server could stream it, cut into random pieces."""
    message = body["choices"][0]["message"]
    kwargs = {"model": body["model"], "response_id": body["id"]}
    chunks = [stream_chunk({"role": "assistant"}, **kwargs)]
    content = message.get("content") or ""
    while content:
        n = rng.randrange(1, 8)
        chunks.append(stream_chunk({"content": content[:n]}, **kwargs))
        content = content[n:]
    for index, call in enumerate(message.get("tool_calls") or []):
        head = {"index": index, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(stream_chunk({TC: [head]}, **kwargs))
        arguments = call["function"]["arguments"]
        while arguments:
            n = rng.randrange(1, 6)
            piece = {"index": index, "function": {"arguments": arguments[:n]}}
            chunks.append(stream_chunk({TC: [piece]}, **kwargs))
            arguments = arguments[n:]
    chunks.append(stream_chunk(finish_reason=body["choices"][0]["finish_reason"], **kwargs))
    if usage:
        chunks.append(stream_chunk(usage=body["usage"], **kwargs))
    return chunks


def _random_body(rng: random.Random) -> dict[str, Any]:
    alphabet = 'abc xyz\n\t"\\{}é😀'
    content = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
    calls = [
        tool_call_json(
            f"call_{i}",
            f"tool_{i}",
            rng.choice([json.dumps({"q": content, "n": i}), "{}", "[1, 2", "not json", ""]),
        )
        for i in range(rng.randrange(0, 3))
    ]
    return completion_body(
        content=content or None,
        tool_calls=calls or None,
        prompt_tokens=rng.randrange(0, 10_000),
        completion_tokens=rng.randrange(0, 1_000),
        cached_tokens=rng.choice([None, 0, 64]),
        response_id=f"chatcmpl-{rng.randrange(10**6)}",
    )


@pytest.mark.parametrize("seed", range(12))
async def test_property_streamed_end_equals_complete(
    openai_server: FakeOpenAIServer, make_model: MakeModel, seed: int
) -> None:
    """For the same reply, ``stream()``'s end is what ``complete()`` returns, however the
    server cuts it into chunks (and the deltas fold into it too)."""
    rng = random.Random(seed)
    body = _random_body(rng)
    openai_server.enqueue(Reply(json=body), Reply(sse=_sse_of(body, rng, usage=True)))
    model = make_model()

    completed = await model.complete(user())
    events, error = await drain(model)

    assert error is None
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.response == completed
    partial = fold(events[:-1]).response()
    assert (partial.content, partial.tool_calls) == (completed.content, completed.tool_calls)
    assert partial.usage == completed.usage


async def test_server_without_usage_chunk_gives_zeros_marked_unknown(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    rng = random.Random(1)
    body = completion_body(content="plain answer")
    openai_server.enqueue(Reply(sse=_sse_of(body, rng, usage=False)))

    events, error = await drain(make_model())

    assert error is None
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.response.content == "plain answer"
    assert end.response.usage == Usage() and not end.usage_known
    assert not any(isinstance(e, UsageUpdate) for e in events)
    assert not fold(events).usage_known


async def test_server_that_ignores_stream_is_streamed_in_one_piece(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply.completion(content="not streamed", prompt_tokens=3))

    events, error = await drain(make_model())

    assert error is None
    assert texts(events) == ["not streamed"]
    assert isinstance(events[-1], StreamEnd) and events[-1].response.usage.input_tokens == 3


async def test_crlf_lines_and_utf8_split_across_writes(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    encoded = f"data: {json.dumps(stream_chunk({'content': 'héllo 😀'}), ensure_ascii=False)}"
    raw = encoded.encode()
    cut = raw.index("😀".encode()) + 2  # inside the emoji's four bytes
    openai_server.enqueue(
        Reply(
            sse=[
                raw[:cut],
                raw[cut:] + b"\r\n\r",
                b"\ndata: " + json.dumps(stream_chunk(finish_reason="stop")).encode() + b"\r\r",
            ]
        )
    )

    events, error = await drain(make_model())

    assert error is None
    assert texts(events) == ["héllo 😀"]


async def test_lines_capped_splits_lines_at_any_chunk_boundary() -> None:
    """Every way of cutting a body into two chunks gives the same lines."""
    body = "a\r\nbé\rc\n\nd😀\r\n\re".encode()
    expected = ["a", "bé", "c", "", "d😀", "", "e"]
    for cut in range(len(body) + 1):

        async def chunks(cut: int = cut) -> AsyncIterator[bytes]:
            yield body[:cut]
            yield body[cut:]

        response = httpx.Response(200, content=chunks())
        assert [line async for line in lines_capped(response, 1000)] == expected, cut


async def test_lines_capped_stops_an_endless_line() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 4096

    response = httpx.Response(200, content=endless())
    with pytest.raises(ResponseTooLarge):
        async for _ in lines_capped(response, 100_000):
            pass


async def test_refusal_streams_as_text_like_complete(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    refusal = "I can't help with that."
    body = completion_body(content=None)
    body["choices"][0]["message"]["refusal"] = refusal
    openai_server.enqueue(
        Reply(json=body),
        Reply(
            sse=[
                stream_chunk({"role": "assistant", "content": None, "refusal": ""}),
                stream_chunk({"refusal": "I can't "}),
                stream_chunk({"refusal": "help with that."}),
                stream_chunk(finish_reason="stop"),
            ]
        ),
    )
    model = make_model()

    completed = await model.complete(user())
    events, error = await drain(model)

    assert error is None and completed.content == refusal
    assert texts(events) == ["I can't ", "help with that."]
    assert isinstance(events[-1], StreamEnd) and events[-1].response.content == refusal


# ---------------------------------------------------------------------- errors before the stream


async def test_server_that_never_answers(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(delay_s=30.0, sse=[stream_chunk({"content": "too late"})]))

    events, error = await drain(make_model(timeout_s=0.2, max_retries=0))

    assert events == [] and error is not None and error.retryable
    assert "timed out after 0.2s (gave up after 1 attempt)" in str(error)


async def test_http_error_before_the_stream_is_the_same_error_as_complete(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(litellm_unknown_model("gpt-test"), litellm_unknown_model("gpt-test"))
    model = make_model()

    with pytest.raises(ProviderError) as completed:
        await model.complete(user())
    events, streamed = await drain(model)

    assert events == [] and streamed is not None
    assert str(streamed) == str(completed.value)
    assert streamed.hint == completed.value.hint and streamed.hint is not None
    assert "model.name" in streamed.hint
    assert (streamed.status_code, streamed.misconfigured, streamed.retryable) == (400, True, False)


async def test_transient_failures_before_the_first_event_are_retried(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply.error(503, "overloaded"),
        Reply(disconnect=True),
        Reply(sse=[stream_chunk({"content": "partial"})], sse_done=False, sse_cut_after=0),
        Reply(sse=[stream_chunk({"content": "made it"}), stream_chunk(finish_reason="stop")]),
    )
    model = make_model(max_retries=3)

    events, error = await drain(model)

    assert error is None
    assert texts(events) == ["made it"]
    assert model.last_attempts == 4 and len(sleeps) == 3


async def test_retries_exhausted_before_the_stream(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(Reply.error(502, "bad gateway"), Reply.error(502, "bad gateway"))

    events, error = await drain(make_model(max_retries=1))

    assert events == [] and error is not None
    assert error.retryable and error.status_code == 502
    assert "gave up after 2 attempts" in str(error) and "bad gateway" in str(error)


# --------------------------------------------------------------------------- errors mid-stream


PARTIAL = [stream_chunk({"content": "Hello "}), stream_chunk({"content": "wor"})]


async def test_error_event_mid_stream(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    error_event = {"error": {"message": f"The server had an error (key {SECRET})"}}
    openai_server.enqueue(Reply(sse=[*PARTIAL, error_event, stream_chunk({"content": "ld"})]))

    events, error = await drain(make_model(api_key=SECRET))

    assert texts(events) == ["Hello ", "wor"]
    assert error is not None
    assert "reported an error mid-stream: The server had an error" in str(error)
    assert SECRET not in str(error) and "[REDACTED]" in str(error)
    assert len(openai_server.requests) == 1


async def test_malformed_chunk_mid_stream(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=[*PARTIAL, "data: {oops\n\n"]))

    events, error = await drain(make_model())

    assert texts(events) == ["Hello ", "wor"]
    assert error is not None and not error.retryable
    assert "a stream event is not JSON" in str(error) and "{oops" in str(error)


@pytest.mark.parametrize(
    ("chunk", "what"),
    [
        (stream_chunk(usage={"prompt_tokens": "lots"}), "'prompt_tokens' is not an integer"),
        (stream_chunk({TC: [{"index": "0"}]}), "'index' is not an integer"),
        (stream_chunk({TC: [{"index": 0, "id": 7}]}), "'id' is not a string"),
        (stream_chunk({TC: [{"index": 0, "function": {"name": 1}}]}), "'function.name'"),
        (stream_chunk({"content": 5}), "'delta.content' is not a string"),
    ],
)
async def test_malformed_fields_mid_stream(
    openai_server: FakeOpenAIServer, make_model: MakeModel, chunk: dict[str, Any], what: str
) -> None:
    openai_server.enqueue(Reply(sse=[*PARTIAL, chunk]))

    events, error = await drain(make_model())

    assert texts(events) == ["Hello ", "wor"]
    assert error is not None and what in str(error)


async def test_tool_call_without_a_name_is_refused_at_the_end(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(
        Reply(sse=[stream_chunk({TC: [{"index": 0, "id": "c", "function": {"arguments": "{}"}}]})])
    )

    events, error = await drain(make_model())

    assert events == [ToolCallDelta(0, "c", None, "{}")]
    assert error is not None and "'tool_calls[0].function.name' is missing" in str(error)


async def test_connection_cut_mid_stream_keeps_what_came(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply(sse=[*PARTIAL, stream_chunk(usage=USAGE), "x"], sse_cut_after=3),
        Reply.completion(content="must not be asked for"),
    )
    model = make_model(max_retries=3)
    acc = StreamAccumulator(model=model.name)

    with pytest.raises(ProviderError) as info:
        async for event in model.stream(user()):
            acc.add(event)

    error = info.value
    assert "was cut mid-stream after 3 chunk(s)" in str(error)
    assert "not retried, since part of the reply was already out" in str(error)
    assert error.retryable
    partial = acc.response()
    assert (partial.content, partial.finish_reason) == ("Hello wor", INCOMPLETE)
    assert (partial.usage.input_tokens, partial.usage.output_tokens) == (50, 20)
    assert len(openai_server.requests) == 1 and sleeps == []


async def test_stream_ending_without_done_is_an_error(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=[*PARTIAL, stream_chunk(finish_reason="stop")], sse_done=False))

    events, error = await drain(make_model())

    assert texts(events) == ["Hello ", "wor"]
    assert not any(isinstance(e, StreamEnd) for e in events)
    assert error is not None and error.retryable
    assert "ended without [DONE] after 3 chunk(s)" in str(error)


async def test_stall_mid_stream(openai_server: FakeOpenAIServer, make_model: MakeModel) -> None:
    never = stream_chunk({"content": "never"})
    openai_server.enqueue(Reply(sse=[*PARTIAL, never], sse_stall_after=2))

    events, error = await drain(make_model(timeout_s=0.3))

    assert texts(events) == ["Hello ", "wor"]
    assert error is not None and error.retryable
    assert "stalled: no event for 0.3s after 2 chunk(s)" in str(error)


async def test_stall_before_the_first_event_is_retried(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply(sse=[stream_chunk({"role": "assistant"}), *PARTIAL], sse_stall_after=1),
        Reply(sse=[stream_chunk({"content": "second try"}), stream_chunk(finish_reason="stop")]),
    )
    model = make_model(timeout_s=0.3, max_retries=1)

    events, error = await drain(model)

    assert error is None and texts(events) == ["second try"]
    assert model.last_attempts == 2


async def test_consumer_that_stops_early_releases_the_connection(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    def many() -> Iterator[dict[str, Any]]:
        for i in range(200_000):
            yield stream_chunk({"content": f"{i} " + "x" * 100})

    openai_server.enqueue(Reply(sse=many()), Reply.completion(content="next call"))
    model = make_model()

    async with contextlib.aclosing(stream_of(model, user())) as events:
        async for event in events:
            assert event == TextDelta("0 " + "x" * 100)
            break

    assert (await model.complete(user())).content == "next call"
    assert not openai_server.streams[0].finished


# --------------------------------------------------------------------------- size cap


def _big_stream(total_bytes: int) -> Iterator[dict[str, Any]]:
    piece = "y" * 65_536
    for _ in range(total_bytes // len(piece) + 1):
        yield stream_chunk({"content": piece})
    yield stream_chunk(finish_reason="stop")


async def test_a_50_mb_stream_is_cut_at_the_cap(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=_big_stream(50_000_000)))
    model = make_model()
    received = 0

    with pytest.raises(ProviderError) as info:
        async for event in model.stream(user()):
            assert isinstance(event, TextDelta)
            received += len(event.text)

    assert f"larger than {openai_compat.MAX_RESPONSE_BYTES:,} bytes" in str(info.value)
    assert not info.value.retryable
    assert 0 < received <= openai_compat.MAX_RESPONSE_BYTES
    assert not openai_server.streams[0].finished
    assert openai_server.streams[0].bytes_sent < 50_000_000


async def test_cap_applies_to_complete_streamed_or_not(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    big = completion_body(content="z" * 300_000)
    openai_server.enqueue(
        Reply(json=big), Reply(sse=_big_stream(300_000)), Reply(raw=b"e" * 300_000, status=500)
    )
    model = make_model(max_response_bytes=100_000, max_retries=0)
    streaming = make_model(max_response_bytes=100_000, stream=True)

    errors = []
    for m in (model, streaming, model):
        with pytest.raises(ProviderError) as info:
            await m.complete(user())
        errors.append(str(info.value))

    assert all("larger than 100,000 bytes" in e for e in errors[:2])
    # An error body is read for its message only (64 KiB at most): the 500 stays a 500.
    assert "returned HTTP 500: 'eeee" in errors[2] and "larger than" not in errors[2]
    assert len(openai_server.requests) == 3


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_response_bytes"):
        OpenAIChatModel("m", base_url="http://127.0.0.1:1/v1", max_response_bytes=0)


async def test_a_compressed_body_is_capped_after_decompression(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    """A small gzip body that inflates to 200 MB stops at the cap, streamed or not."""
    line = f"data: {json.dumps(stream_chunk({'content': ' ' * 60_000}))}\n\n".encode()
    bomb = gzip.compress(line * (200_000_000 // len(line)), compresslevel=9)
    assert len(bomb) < 1_000_000
    gzipped = {"Content-Encoding": "gzip"}
    openai_server.enqueue(
        Reply(sse=[bomb], sse_done=False, headers=gzipped),
        Reply(raw=bomb, headers=gzipped),
    )
    model = make_model(max_response_bytes=1_000_000, max_retries=0)

    events, streamed = await drain(model)
    with pytest.raises(ProviderError) as completed:
        await model.complete(user())

    assert streamed is not None and "larger than 1,000,000 bytes" in str(streamed)
    assert "larger than 1,000,000 bytes" in str(completed.value)
    assert sum(len(t) for t in texts(events)) <= 1_000_000
