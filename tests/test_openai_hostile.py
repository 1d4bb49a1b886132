"""``OpenAIChatModel`` against a hostile OpenAI-compatible upstream on 127.0.0.1
(``tests/fakes/openai_server``): bytes trickled in without any event, a head that takes its
time to end, JSON nested past the parser's depth. Each ends the call with a clear
``ProviderError`` within the per-call timeout, never a hang or a raw exception."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakes.openai_server import (
    FakeOpenAIServer,
    Reply,
    completion_body,
    stream_chunk,
    tool_call_json,
)
from fakes.traces import trace_of
from tether import Agent, Outcome, tool
from tether.core import ProviderError
from tether.providers import Message, ModelRequest, StreamAccumulator, StreamEvent, TextDelta
from tether.providers.openai_compat import OpenAIChatModel
from tether.providers.types import RAW_ARGUMENTS_KEY, describe_invalid_arguments
from tether.resilience import CircuitBreakerModel, LocalBreakerStore
from tether.trace import semconv

MakeModel = Callable[..., OpenAIChatModel]
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
DEEP = "[" * 100_000 + "]" * 100_000
"""Valid JSON nested deeper than Python's parser recurses."""


def user() -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content="hi")])


async def drain(model: OpenAIChatModel) -> tuple[StreamAccumulator, ProviderError | None]:
    reply = StreamAccumulator(model=model.name)
    try:
        async for event in model.stream(user()):
            reply.add(event)
    except ProviderError as exc:
        return reply, exc
    return reply, None


# ------------------------------------------------------------------ trickled bytes


async def test_keep_alives_trickled_without_any_event_stall_the_stream(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Each comment comes well within timeout_s, so no wait for bytes times out; but no
    # event comes at all. (Without a cap on that, the call lasted as long as the server
    # cared to: here until it ran out of comments, then a different error.)
    openai_server.enqueue(Reply(sse=[": ping\n\n"] * 200, pace_s=0.02, sse_done=False))

    _, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is not None and error.retryable
    assert "stalled: no event for 0.3s after 0 chunk(s)" in error.message
    assert not openai_server.streams[0].finished


async def test_blanks_trickled_mid_stream_stall_it_and_the_partial_reply_stands(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    events: list[Any] = [
        stream_chunk({"content": "half "}),
        stream_chunk(usage=USAGE),
        *[b" "] * 200,
    ]
    openai_server.enqueue(Reply(sse=events, pace_s=0.02, sse_done=False))

    reply, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is not None and "stalled: no event for 0.3s after 2 chunk(s)" in error.message
    assert "part of the reply was already out" in error.message
    assert reply.text == "half " and reply.usage.input_tokens == 5  # what came stays
    assert not openai_server.streams[0].finished


async def test_a_head_trickled_a_byte_at_a_time_times_out(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Each byte of the head comes well within timeout_s; the head as a whole does not.
    late = [stream_chunk({"content": "late"}), stream_chunk(usage=USAGE)]
    openai_server.enqueue(Reply(sse=late, drip_head=200, pace_s=0.02))

    reply, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is not None and error.retryable
    assert "timed out after 0.3s" in error.message and reply.text == ""


async def test_a_plain_completion_trickled_in_answer_to_a_stream_times_out(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # The server ignores "stream" and sends a plain completion, 16 bytes at a time.
    openai_server.enqueue(Reply(json=completion_body(content="x" * 400), pace_s=0.02))

    reply, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is not None and "timed out after 0.3s" in error.message
    assert reply.text == ""


async def test_a_slow_consumer_is_not_taken_for_a_stalled_server(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # The whole stream is sent at once; the consumer takes longer than timeout_s over each
    # event: that is its own time, not the server's.
    openai_server.enqueue(
        Reply(
            sse=[
                stream_chunk({"content": "one "}),
                stream_chunk({"content": "two"}),
                stream_chunk(usage=USAGE),
            ]
        )
    )
    model = make_model(timeout_s=0.2, max_retries=0)

    texts: list[str] = []
    async for event in model.stream(user()):
        if isinstance(event, TextDelta):
            texts.append(event.text)
        await asyncio.sleep(0.3)

    assert texts == ["one ", "two"]


async def test_a_trickling_stream_falls_back_and_counts_against_the_circuit(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.enqueue(Reply(sse=[": ping\n\n"] * 200, pace_s=0.02, sse_done=False))
    (tmp_path / "backup.yaml").write_text("steps: [{text: backup answer}]\n")
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: trickled\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {openai_server.base_url}\n"
        "  timeout_s: 0.3\n"
        "  max_retries: 0\n"
        "fallback_models:\n"
        "  - {provider: scripted, name: backup, script: backup.yaml}\n"
        "resilience:\n"
        "  circuit_breaker: {failures: 1, window_s: 60, cooldown_s: 60}\n"
    )
    agent = Agent.from_yaml(spec, trace=False, breaker_store=LocalBreakerStore())
    shown: list[StreamEvent] = []

    result = await agent.run("hi", stream=shown.append)

    assert result.outcome == Outcome.FINAL_ANSWER and result.output == "backup answer"
    primary = agent.harness.chain.primary
    assert isinstance(primary, CircuitBreakerModel)
    assert (await primary.breaker.state()).state == "open"  # a stall is the endpoint's fault
    assert not openai_server.streams[0].finished
    await agent.aclose()


# ------------------------------------------------------------------ JSON nested too deeply


async def test_a_completion_nested_too_deeply_is_a_malformed_reply(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(
        Reply(raw=DEEP.encode(), headers={"Content-Type": "application/json"}),
        Reply(raw=DEEP.encode(), headers={"Content-Type": "application/json"}),
    )
    model = make_model(max_retries=0)

    try:
        await model.complete(user())
    except ProviderError as exc:
        error: ProviderError = exc
    assert "the body is not JSON" in error.message and not error.retryable

    _, error2 = await drain(model)  # the same, sent in answer to a stream
    assert error2 is not None and "the body is not JSON" in error2.message


async def test_an_error_body_nested_too_deeply_keeps_its_status(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(*[Reply(status=503, raw=DEEP.encode())] * 2)

    try:
        await make_model(max_retries=1).complete(user())
    except ProviderError as exc:
        error: ProviderError = exc
    assert "returned HTTP 503" in error.message and "gave up after 2 attempts" in error.message
    assert error.retryable and error.status_code == 503


async def test_a_stream_event_nested_too_deeply_is_a_malformed_chunk(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(
        Reply(sse=[stream_chunk({"content": "so far"}), f"data: {DEEP}\n\n"], sse_done=False)
    )

    reply, error = await drain(make_model(max_retries=0))

    assert error is not None and "a stream event is not JSON" in error.message
    assert reply.text == "so far"


async def test_tool_arguments_nested_too_deeply_are_kept_as_raw_text(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": DEEP}}
    openai_server.enqueue(Reply.completion(tool_calls=[call]))
    arguments_delta = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": DEEP}}
    openai_server.enqueue(
        Reply(sse=[stream_chunk({"tool_calls": [arguments_delta]}), stream_chunk(usage=USAGE)])
    )
    model = make_model(max_retries=0)

    response = await model.complete(user())
    reply, error = await drain(model)

    assert error is None
    for got in (response, reply.response()):
        assert got.tool_calls[0].arguments == {RAW_ARGUMENTS_KEY: DEEP}
    assert describe_invalid_arguments(DEEP).startswith("nested too deeply")
    assert json.loads(json.dumps(reply.response().tool_calls[0].arguments))  # storable


async def test_a_plain_completion_with_an_upper_case_media_type_is_streamed_in_one_piece(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Media types are case-insensitive: this one was read as server-sent events, found to
    # carry no 'data:' lines, and refused as not an OpenAI-compatible reply.
    body = json.dumps(completion_body(content="plain")).encode()
    openai_server.enqueue(
        Reply(raw=body, headers={"Content-Type": "Application/JSON; charset=UTF-8"})
    )

    reply, error = await drain(make_model(max_retries=0))

    assert error is None and reply.text == "plain" and reply.usage.input_tokens == 10


# ------------------------------------------------------------------ huge error bodies


async def test_a_5xx_with_a_huge_body_is_still_a_5xx(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # A 503 whose (HTML) body is past max_response_bytes: retried and then given up on as a
    # 503, quoting the start of its body; it was a "response too large", not retried.
    page = b"<html>" + b"<p>busy</p>" * 200_000  # 2.2 MB
    openai_server.enqueue(*[Reply(status=503, raw=page)] * 2)
    model = make_model(max_retries=1, max_response_bytes=1_000_000)

    try:
        await model.complete(user())
    except ProviderError as exc:
        error: ProviderError = exc
    assert error.status_code == 503 and error.retryable
    assert "returned HTTP 503: '<html><p>busy</p>" in error.message
    assert "gave up after 2 attempts" in error.message and model.last_attempts == 2


# ------------------------------------------------------------------ errors inside a reply

SERVER_ERROR = {
    "message": "The server had an error while processing your request.",
    "type": "server_error",
}


async def test_a_server_error_event_before_any_delta_is_retried_like_a_5xx(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # OpenAI reports a failure of its own mid-stream as an error event, after the 200.
    openai_server.enqueue(
        Reply(sse=[{"error": SERVER_ERROR}], sse_done=False),
        Reply(sse=[stream_chunk({"content": "fine"}), stream_chunk(usage=USAGE)]),
    )
    model = make_model(max_retries=1)

    reply, error = await drain(model)

    assert error is None and reply.text == "fine" and model.last_attempts == 2


async def test_error_events_mid_stream_say_whether_a_retry_may_help(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    busy = {"message": "busy", "code": "429"}  # LiteLLM sends its codes as text
    bad = {"message": "invalid 'tools[0].function.parameters'", "type": "invalid_request_error"}
    for error_body, retryable, status in (
        (SERVER_ERROR, True, None),
        (busy, True, 429),
        (bad, False, None),
    ):
        openai_server.enqueue(
            Reply(sse=[stream_chunk({"content": "so far"}), {"error": error_body}], sse_done=False)
        )
        reply, error = await drain(make_model(max_retries=0))
        assert error is not None and reply.text == "so far"
        assert error.retryable is retryable and error.status_code == status
        assert error_body["message"] in error.message


async def test_a_completion_carrying_a_server_error_is_retried(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(
        Reply(json={"error": SERVER_ERROR}), Reply.completion(content="second time")
    )
    model = make_model(max_retries=1)

    response = await model.complete(user())

    assert response.content == "second time" and model.last_attempts == 2


# ------------------------------------------------------------------ secrets cut in two

LONG_KEY = "sk-proj-" + "Ab3_" * 39  # as long as OpenAI's project keys (164 characters)


async def test_a_key_the_server_echoes_across_the_excerpts_end_is_hidden(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Error texts quote 200 characters of a body: the key straddling that cut was no longer
    # found whole, and 100+ of its characters were shown.
    echo = f"{'.' * 120} got header Authorization: Bearer {LONG_KEY} <- not accepted"
    openai_server.enqueue(
        Reply(status=401, raw=echo.encode()),
        Reply(raw=f"<html>{echo}</html>".encode(), headers={"Content-Type": "application/json"}),
        Reply(sse=[{"error": {"detail": echo}}], sse_done=False),
        Reply(sse=[f"{echo}\n\n"], sse_done=False),
    )
    model = make_model(api_key=LONG_KEY, max_retries=0)

    failures: list[ProviderError] = []
    for _ in range(2):
        try:
            await model.complete(user())
        except ProviderError as exc:
            failures.append(exc)
    for _ in range(2):
        _, error = await drain(model)
        assert error is not None
        failures.append(error)

    assert len(failures) == 4
    for error in failures:
        assert "[REDACTED]" in error.message, error.message
        assert LONG_KEY[:20] not in error.message and LONG_KEY[:20] not in str(error)


# ------------------------------------------------------------------ events not to lose


async def test_a_byte_order_mark_before_the_first_event_loses_nothing(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    first = "\ufeff" + f"data: {json.dumps(stream_chunk({'content': 'hello'}))}\n\n"
    openai_server.enqueue(
        Reply(sse=[first, stream_chunk({"content": " world"}), stream_chunk(usage=USAGE)])
    )

    reply, error = await drain(make_model())

    assert error is None and reply.text == "hello world"


@pytest.mark.parametrize("index", [None, "0"])
async def test_a_choice_whose_index_is_null_is_the_first_choice(
    openai_server: FakeOpenAIServer, make_model: MakeModel, index: object
) -> None:
    chunk = stream_chunk({"content": "kept"})
    chunk["choices"][0]["index"] = index
    openai_server.enqueue(Reply(sse=[chunk, stream_chunk(usage=USAGE)]))

    reply, error = await drain(make_model())

    assert error is None and reply.text == "kept"


# ------------------------------------------------------------------ redirects


async def test_a_redirect_is_not_followed_and_the_hint_names_where_to(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    target = "https://elsewhere.example/v1/chat/completions?api_key=leaked-if-shown"
    openai_server.enqueue(
        Reply(status=307, raw=b"", headers={"Location": target}),
        Reply(status=308, raw=b"", headers={"Location": "/keys/sk-test-redirected/v1"}),
    )
    model = make_model(api_key="sk-test-redirected", max_retries=2)

    try:
        await model.complete(user())
    except ProviderError as exc:
        error: ProviderError = exc
    assert "returned HTTP 307" in error.message and not error.retryable and error.misconfigured
    assert error.hint is not None
    assert "redirects to https://elsewhere.example/v1/chat/completions?api_key=***" in error.hint
    assert "leaked-if-shown" not in str(error) and len(openai_server.requests) == 1

    try:  # the server echoes the key in where it redirects to
        await model.complete(user())
    except ProviderError as exc:
        error = exc
    assert error.hint is not None and "/keys/[REDACTED]/v1" in error.hint
    assert "sk-test-redirected" not in str(error) and len(openai_server.requests) == 2


# ------------------------------------------------------------------ a reset connection


async def test_a_connection_reset_mid_stream_says_so(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # httpx's ReadError for a reset has no text of its own: the message ended in "ReadError: ".
    openai_server.enqueue(
        Reply(
            sse=[stream_chunk({"content": "so far"}), stream_chunk(usage=USAGE), stream_chunk()],
            sse_reset_after=2,
        )
    )

    reply, error = await drain(make_model(max_retries=0))

    assert error is not None and error.retryable
    assert "cut mid-stream after 2 chunk(s): ReadError: [Errno " in error.message
    assert "Connection reset by peer" in error.message
    assert reply.text == "so far" and reply.usage.input_tokens == 5


async def test_a_connection_reset_before_the_answer_says_so(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=[stream_chunk({"content": "never"})], sse_reset_after=0))

    _, error = await drain(make_model(max_retries=0))

    assert error is not None and "Connection reset by peer" in error.message


# ------------------------------------------------------------------ text UTF-8 cannot carry


@tool
def get_order(order_id: int) -> dict[str, object]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


@pytest.mark.parametrize("streamed", [False, True])
async def test_lone_surrogates_in_a_tool_calls_name_and_id_do_not_crash_the_run(
    openai_server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str, streamed: bool
) -> None:
    # JSON may escape a lone surrogate ("\ud800"), which UTF-8 cannot encode: in a tool
    # call's name it reached the unknown tool's error, whose hash raised UnicodeEncodeError
    # out of the run (arguments and text were already made storable).
    call = tool_call_json("call_\ud800", "get_order\ud800", '{"order_id": 7}')
    delta = {"index": 0, **call}
    first = (
        Reply(sse=[stream_chunk({"tool_calls": [delta]}), stream_chunk(usage=USAGE)])
        if streamed
        else Reply.completion(tool_calls=[call], model="gpt\udc00")
    )
    openai_server.enqueue(first, Reply.completion(content="Order 7 has shipped."))
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: surrogates\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {openai_server.base_url}\n"
        "  max_retries: 0\n"
    )
    agent = Agent.from_yaml(spec, tools=[get_order], trace=sqlite_url)
    shown: list[StreamEvent] = []

    result = await agent.run("where is order 7?", stream=shown.append if streamed else None)

    assert result.outcome == Outcome.FINAL_ANSWER, result.error
    assert result.output == "Order 7 has shipped."
    sent = openai_server.requests[1].json["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_order\ufffd"
    assert sent[-1]["tool_call_id"] == "call_\ufffd" and "unknown tool" in sent[-1]["content"]
    await agent.aclose()


# ------------------------------------------------------------------ accounting


async def test_usage_reported_before_a_stream_failed_is_charged_when_the_chain_falls_back(
    openai_server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    # The server reports usage, then the stream breaks off before any text: nothing was
    # shown, so the fallback answers; the tokens the provider said it used are still the
    # run's (they were dropped: the run showed only the fallback's).
    usage = {"prompt_tokens": 1_000, "completion_tokens": 400, "total_tokens": 1_400}
    openai_server.enqueue(
        Reply(sse=[stream_chunk({"role": "assistant"}), stream_chunk(usage=usage)], sse_done=False)
    )
    (tmp_path / "backup.yaml").write_text("steps: [{text: backup answer}]\n")
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: charged\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {openai_server.base_url}\n"
        "  max_retries: 0\n"
        "fallback_models:\n"
        "  - {provider: scripted, name: backup, script: backup.yaml}\n"
    )
    agent = Agent.from_yaml(spec, trace=sqlite_url)
    shown: list[StreamEvent] = []

    result = await agent.run("hi", stream=shown.append)

    assert result.output == "backup answer"
    assert result.usage.input_tokens >= 1_000 and result.usage.output_tokens >= 400
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    failed = next(s for s in spans if s.kind == "model" and "gpt-4.1-mini" in s.name)
    assert failed.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 1_000
    assert failed.attributes[semconv.TETHER_COST_USD] > 0  # priced: gpt-4.1-mini
    await agent.aclose()


# ------------------------------------------------------------------ 429s that are not alike


async def test_a_429_for_an_account_out_of_quota_is_not_retried_nor_counted(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # OpenAI answers an account without quota or credit with a 429 too; unlike a rate limit
    # it does not pass: it was retried with backoff, told "overloaded", opened the circuit,
    # and the degraded answer said to try again shortly.
    quota = {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing "
            "details.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    openai_server.enqueue(Reply(status=429, json=quota), Reply.error(429, "Rate limit reached"))
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: quota\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {openai_server.base_url}\n"
        "  max_retries: 0\n"
        "resilience:\n"
        "  circuit_breaker: {failures: 1, window_s: 60, cooldown_s: 60}\n"
    )
    agent = Agent.from_yaml(spec, trace=False, breaker_store=LocalBreakerStore())
    primary = agent.harness.chain.primary
    assert isinstance(primary, CircuitBreakerModel)

    result = await agent.run("hi")

    assert result.outcome == Outcome.ERROR
    assert result.hint is not None and "run out of quota" in result.hint
    assert (await primary.breaker.state()).state == "closed"  # the endpoint is fine

    result = await agent.run("hi")  # a rate limit is the endpoint's: counted

    assert result.outcome == Outcome.ERROR
    assert (await primary.breaker.state()).state == "open"
    await agent.aclose()


# ------------------------------------------------------------------ a head past h11's limit


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_head_past_the_clients_limit_is_a_malformed_reply_not_retried(
    openai_server: FakeOpenAIServer, make_model: MakeModel, streamed: bool
) -> None:
    # A 200 KB header (h11 reads at most 100 KiB of head: "Receive buffer too long"). It was
    # taken for a connection error: retried max_retries times, then blamed on a provider
    # "overloaded, slow or unreachable".
    for _ in range(3):
        openai_server.enqueue(
            Reply(json=completion_body(content="never read"), headers={"X-Junk": "a" * 200_000})
        )
    model = make_model(max_retries=2)

    with pytest.raises(ProviderError) as info:
        if streamed:
            await drain_or_raise(model)
        else:
            await model.complete(user())

    error = info.value
    assert not error.retryable
    assert error.message.startswith(f"malformed reply from {openai_server.base_url}")
    assert "head (status line and headers) is longer than the 102,400 bytes" in error.message
    assert error.hint is not None and f"server at {openai_server.base_url} " in error.hint
    assert "overloaded" not in error.hint
    assert len(openai_server.requests) == 1 and model.last_attempts == 1


async def drain_or_raise(model: OpenAIChatModel) -> None:
    _, error = await drain(model)
    if error is not None:
        raise error
