"""``OpenAIChatModel`` against a real HTTP server on 127.0.0.1 (``tests/fakes/openai_server``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

# tests/ is not a package: pytest puts tests/ itself on sys.path, so the fakes import as
# ``fakes``.
from fakes.openai_server import (
    FakeOpenAIServer,
    Reply,
    completion_body,
    stream_chunk,
    tool_call_json,
)
from tether.core import ProviderError
from tether.providers import (
    Message,
    Model,
    ModelRequest,
    ModelSettings,
    StreamEnd,
    ToolCall,
    ToolDefinition,
    build_model,
)
from tether.providers.openai_compat import OpenAIChatModel
from tether.spec import ModelConfig

SECRET = "sk-test-SECRET-0123456789"

MakeModel = Callable[..., OpenAIChatModel]


def user(text: str = "hello") -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)])


# --------------------------------------------------------------------------- happy paths


async def test_plain_text_reply(openai_server: FakeOpenAIServer, make_model: MakeModel) -> None:
    openai_server.enqueue(
        Reply.completion(content="Hi there!", prompt_tokens=12, completion_tokens=3)
    )
    model = make_model(name="gpt-4.1-mini")

    response = await model.complete(
        ModelRequest(
            messages=[
                Message(role="system", content="Be brief."),
                Message(role="user", content="hello"),
            ]
        )
    )

    assert response.content == "Hi there!"
    assert response.tool_calls == []
    assert response.model == "gpt-test-2025"
    assert response.finish_reason == "stop"
    assert response.response_id == "chatcmpl-test-1"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.usage.cached_input_tokens == 0
    assert model.last_attempts == 1

    [sent] = openai_server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
    }


async def test_a_lone_surrogate_in_a_message_is_sent_as_a_replacement_character(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    """A message holding a lone surrogate (a control's rewrite of the input, text an
    application read with ``surrogateescape``): httpx's JSON encoding raised a
    UnicodeEncodeError out of the run, streamed or not, instead of sending the request."""
    openai_server.enqueue(Reply.completion(content="ok"), Reply.completion(content="ok"))
    model = make_model(name="gpt-4.1-mini")
    request = ModelRequest(
        messages=[Message(role="user", content="file-\udc80.txt \ud800")],
        tools=[],
    )
    assert (await model.complete(request)).content == "ok"
    events = [event async for event in model.stream(request)]
    assert isinstance(events[-1], StreamEnd) and events[-1].response.content == "ok"
    for sent in openai_server.requests:
        assert sent.json["messages"] == [{"role": "user", "content": "file-\ufffd.txt \ufffd"}]
        assert sent.headers["content-type"] == "application/json"


async def test_model_protocol_and_trailing_slash(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply.completion(content="ok"))
    model = make_model(name="my-model", base_url=openai_server.base_url + "/")

    assert isinstance(model, Model)
    assert (model.provider, model.name) == ("openai", "my-model")
    assert (await model.complete(user())).content == "ok"
    assert openai_server.requests[0].path == "/v1/chat/completions"


async def test_settings_override_constructor_defaults(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply.completion(content="a"), Reply.completion(content="b"))
    model = make_model(temperature=0.2, seed=7, max_tokens=100)

    await model.complete(user())
    await model.complete(
        ModelRequest(
            messages=[Message(role="user", content="x")],
            settings=ModelSettings(temperature=0.9, max_tokens=5),
        )
    )

    first, second = (r.json for r in openai_server.requests)
    assert (first["temperature"], first["seed"], first["max_tokens"]) == (0.2, 7, 100)
    assert (second["temperature"], second["seed"], second["max_tokens"]) == (0.9, 7, 5)
    assert "stream" not in first and "tools" not in first


async def test_tool_calls_round_trip(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(
        Reply.completion(
            content=None,
            tool_calls=[
                tool_call_json("call_a", "get_weather", '{"city": "Paris"}'),
                tool_call_json("call_b", "get_time", '{"tz": "Europe/Paris", "fmt": 24}'),
            ],
        )
    )
    weather = ToolDefinition(
        name="get_weather",
        description="Current weather for a city.",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    request = ModelRequest(
        messages=[
            Message(role="system", content="You are helpful."),
            Message(role="user", content="Weather in Oslo?"),
            Message(
                role="assistant",
                tool_calls=[ToolCall(id="call_0", name="get_weather", arguments={"city": "Oslo"})],
            ),
            Message(role="tool", tool_call_id="call_0", name="get_weather", content='{"c": -3}'),
            Message(role="user", content="And Paris?"),
        ],
        tools=[weather],
    )

    response = await make_model().complete(request)

    assert response.content == ""
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == [
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_time", arguments={"tz": "Europe/Paris", "fmt": 24}),
    ]
    body = openai_server.requests[0].json
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    assistant, tool = body["messages"][2], body["messages"][3]
    assert assistant["role"] == "assistant"
    assert assistant["content"] is None
    [call] = assistant["tool_calls"]
    assert call["id"] == "call_0" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert tool == {"role": "tool", "tool_call_id": "call_0", "content": '{"c": -3}'}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"city": "Par', {"__raw__": '{"city": "Par'}),
        ("not json at all", {"__raw__": "not json at all"}),
        ("[1, 2]", {"__raw__": "[1, 2]"}),
        ("", {}),
    ],
)
async def test_invalid_tool_arguments_become_raw(
    openai_server: FakeOpenAIServer,
    make_model: MakeModel,
    arguments: str,
    expected: dict[str, Any],
) -> None:
    openai_server.enqueue(
        Reply.completion(tool_calls=[tool_call_json("call_x", "lookup", arguments)])
    )

    response = await make_model().complete(user())

    assert response.tool_calls == [ToolCall(id="call_x", name="lookup", arguments=expected)]


@pytest.mark.parametrize(("cached", "expected"), [(1024, 1024), (None, 0)])
async def test_usage_with_cached_tokens(
    openai_server: FakeOpenAIServer, make_model: MakeModel, cached: int | None, expected: int
) -> None:
    openai_server.enqueue(
        Reply.completion(
            content="x", prompt_tokens=2000, completion_tokens=40, cached_tokens=cached
        )
    )

    usage = (await make_model().complete(user())).usage

    assert (usage.input_tokens, usage.output_tokens) == (2000, 40)
    assert usage.cached_input_tokens == expected


# --------------------------------------------------------------------------- streaming


async def test_streaming_content_tool_call_deltas_and_usage(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    tc = "tool_calls"
    openai_server.enqueue(
        Reply(
            sse=[
                ": keep-alive\n\n",
                stream_chunk({"role": "assistant", "content": ""}),
                stream_chunk({"content": "Let me "}),
                stream_chunk({"content": "check."}),
                stream_chunk(
                    {
                        tc: [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                ),
                stream_chunk({tc: [{"index": 0, "function": {"arguments": '{"ci'}}]}),
                stream_chunk(
                    {
                        tc: [
                            {"index": 0, "function": {"arguments": 'ty": "Paris"}'}},
                            {
                                "index": 1,
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": "{}"},
                            },
                        ]
                    }
                ),
                stream_chunk(finish_reason="tool_calls"),
                stream_chunk(
                    usage={
                        "prompt_tokens": 50,
                        "completion_tokens": 20,
                        "total_tokens": 70,
                        "prompt_tokens_details": {"cached_tokens": 32},
                    }
                ),
            ]
        )
    )
    model = make_model(stream=True)

    response = await model.complete(user())

    assert response.content == "Let me check."
    assert response.tool_calls == [
        ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_2", name="get_time", arguments={}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.response_id == "chatcmpl-stream-1"
    assert response.model == "gpt-test-2025"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (50, 20, 32)
    body = openai_server.requests[0].json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streaming_truncated_stream_is_retried(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply(sse=[stream_chunk({"content": "Hal"})], sse_done=False),
        Reply(sse=[stream_chunk({"content": "Hello"}), stream_chunk(finish_reason="stop")]),
    )
    model = make_model(stream=True)

    response = await model.complete(user())

    assert response.content == "Hello"
    assert len(openai_server.requests) == 2
    assert model.last_attempts == 2


async def test_streaming_garbage_event_is_an_error(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(Reply(sse=["data: {not json\n\n"]), Reply.completion(content="no"))

    with pytest.raises(ProviderError) as info:
        await make_model(stream=True).complete(user())

    assert not info.value.retryable
    assert "not JSON" in str(info.value)
    assert "{not json" in str(info.value)
    assert len(openai_server.requests) == 1


# --------------------------------------------------------------------------- retries


async def test_429_with_retry_after_then_success(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply.error(429, "Rate limit reached", headers={"Retry-After": "2"}),
        Reply.completion(content="finally"),
    )
    model = make_model(backoff_max_s=10.0)

    response = await model.complete(user())

    assert response.content == "finally"
    assert len(openai_server.requests) == 2
    assert model.last_attempts == 2
    assert sleeps == [2.0]


async def test_retry_after_is_capped_at_backoff_max(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply.error(429, "slow down", headers={"Retry-After": "3600"}),
        Reply.completion(content="ok"),
    )

    await make_model(backoff_max_s=0.25).complete(user())

    assert sleeps == [0.25]


async def test_503_twice_then_success(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply.error(503, "overloaded"),
        Reply.error(503, "overloaded"),
        Reply.completion(content="made it"),
    )
    model = make_model(backoff_base_s=0.01, backoff_max_s=8.0)

    response = await model.complete(user())

    assert response.content == "made it"
    assert len(openai_server.requests) == 3
    assert model.last_attempts == 3
    # Full jitter: uniform(0, min(max, base * 2**attempt)).
    assert len(sleeps) == 2
    assert 0.0 <= sleeps[0] <= 0.01
    assert 0.0 <= sleeps[1] <= 0.02


async def test_retries_exhausted(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(*(Reply.error(502, "bad gateway") for _ in range(3)))
    model = make_model(max_retries=2)

    with pytest.raises(ProviderError) as info:
        await model.complete(user())

    error = info.value
    assert error.retryable
    assert error.status_code == 502
    assert "3 attempts" in str(error)
    assert "bad gateway" in str(error)
    assert len(openai_server.requests) == 3
    assert model.last_attempts == 3
    assert len(sleeps) == 2


async def test_400_is_not_retried(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply.error(400, "Invalid value for 'temperature': must be <= 2."),
        Reply.completion(content="must not be reached"),
    )
    model = make_model()

    with pytest.raises(ProviderError) as info:
        await model.complete(user())

    error = info.value
    assert error.status_code == 400
    assert not error.retryable
    assert "Invalid value for 'temperature': must be <= 2." in str(error)
    assert len(openai_server.requests) == 1
    assert openai_server.pending == 1
    assert model.last_attempts == 1
    assert sleeps == []


async def test_connection_dropped_then_success(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(Reply(disconnect=True), Reply.completion(content="back"))
    model = make_model()

    assert (await model.complete(user())).content == "back"
    assert len(openai_server.requests) == 2


async def test_unreachable_server_is_retryable(make_model: MakeModel, sleeps: list[float]) -> None:
    with FakeOpenAIServer() as other:
        dead_url = other.base_url  # nothing listens here once the server has stopped
    model = make_model(base_url=dead_url, max_retries=1)

    with pytest.raises(ProviderError) as info:
        await model.complete(user())

    assert info.value.retryable
    assert "2 attempts" in str(info.value)
    assert model.last_attempts == 2


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (Reply(raw=b"<html>502 Bad Gateway</html>"), "not JSON"),
        (Reply(json=["a", "list"]), "not a JSON object"),
        (Reply(json={"id": "x", "choices": []}), "'choices' is missing or empty"),
        (Reply(json={"id": "x"}), "'choices' is missing or empty"),
        (Reply(json={"choices": [{"message": "hi"}]}), "'choices[0].message'"),
        (Reply(json={"choices": [{"message": {"content": 42}}]}), "'message.content'"),
        (
            Reply(json={**completion_body(content="x"), "usage": {"prompt_tokens": "many"}}),
            "'prompt_tokens'",
        ),
        # A count no model call makes: 2^70 failed the run's writes with a raw OverflowError
        # (SQLite) and left it 'running'; a negative one was taken as spend given back.
        (
            Reply(json={**completion_body(content="x"), "usage": {"prompt_tokens": 2**70}}),
            "'prompt_tokens' is out of range",
        ),
        (
            Reply(json={**completion_body(content="x"), "usage": {"completion_tokens": -5}}),
            "'completion_tokens' is out of range",
        ),
        (
            Reply(
                json={
                    **completion_body(content="x"),
                    "usage": {"prompt_tokens_details": {"cached_tokens": 10**12 + 1}},
                }
            ),
            "'cached_tokens' is out of range",
        ),
        (
            Reply(json=completion_body(tool_calls=[{"id": "c", "function": {"arguments": "{}"}}])),
            "function.name",
        ),
    ],
)
async def test_garbage_body_is_a_provider_error(
    openai_server: FakeOpenAIServer, make_model: MakeModel, reply: Reply, what: str
) -> None:
    openai_server.enqueue(reply)

    with pytest.raises(ProviderError) as info:
        await make_model().complete(user())

    assert not info.value.retryable
    assert what in str(info.value)
    assert "body starts" in str(info.value)
    assert len(openai_server.requests) == 1


async def test_timeout(openai_server: FakeOpenAIServer, make_model: MakeModel) -> None:
    openai_server.enqueue(Reply(delay_s=30.0, json=completion_body(content="too late")))
    model = make_model(timeout_s=0.2, max_retries=0)

    with pytest.raises(ProviderError) as info:
        await model.complete(user())

    assert info.value.retryable
    assert "timed out after 0.2s" in str(info.value)
    assert model.last_attempts == 1


async def test_timeout_then_success(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    openai_server.enqueue(
        Reply(delay_s=30.0, json=completion_body(content="too late")),
        Reply.completion(content="in time"),
    )
    model = make_model(timeout_s=0.2, max_retries=1)

    assert (await model.complete(user())).content == "in time"
    assert len(openai_server.requests) == 2


# --------------------------------------------------------------------------- API key


async def test_api_key_sent_as_bearer_and_never_in_errors(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    # Hostile server: echoes the key back in every error it can.
    echo = f"invalid key {SECRET}"
    openai_server.enqueue(
        Reply.completion(content="ok"),
        Reply.error(401, echo),
        Reply(raw=echo.encode()),
        Reply.error(503, echo),
        Reply(sse=[f"data: {echo}\n\n"]),
    )
    model = make_model(api_key=SECRET, max_retries=0)
    streaming = make_model(api_key=SECRET, stream=True)

    await model.complete(user())
    errors: list[ProviderError] = []
    for m in (model, model, model, streaming):
        with pytest.raises(ProviderError) as info:
            await m.complete(user())
        errors.append(info.value)

    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in openai_server.requests)
    assert len(openai_server.requests) == 5
    assert errors[0].status_code == 401
    for error in errors:
        assert "invalid key" in str(error)  # the echo did arrive ...
        assert SECRET not in str(error)  # ... but the key was scrubbed
        assert SECRET not in repr(error)
        assert error.hint is None or SECRET not in error.hint
    assert SECRET not in repr(model)


async def test_credentials_in_base_url_are_hidden_in_errors_and_repr(
    openai_server: FakeOpenAIServer, make_model: MakeModel, sleeps: list[float]
) -> None:
    password = "s3cr3tpw"
    # A hostile server echoes the credentials it got (as Basic auth) back in the error.
    openai_server.enqueue(Reply.error(400, f"bad request from user:{password}"))
    model = make_model(base_url=f"http://user:{password}@127.0.0.1:{openai_server.port}/v1")
    with FakeOpenAIServer() as other:
        dead = f"http://user:{password}@127.0.0.1:{other.port}/v1"
    unreachable = make_model(base_url=dead, max_retries=0)

    errors: list[ProviderError] = []
    for m in (model, unreachable):
        with pytest.raises(ProviderError) as info:
            await m.complete(user())
        errors.append(info.value)

    assert "authorization" in openai_server.requests[0].headers  # the password is still used
    assert "user:***@127.0.0.1" in errors[1].message and "cannot reach" in errors[1].message
    for error in errors:
        assert password not in str(error)
    tokened = make_model(base_url="https://example.invalid/v1?api-key=qs3cr3t&api-version=1")
    for m in (model, unreachable, tokened):
        assert password not in repr(m) and "qs3cr3t" not in repr(m)
    assert "api-key=***&api-version=1" in repr(tokened)


def test_invalid_arguments_go_back_to_the_model_as_it_sent_them(make_model: MakeModel) -> None:
    sent = ToolCall(id="c1", name="lookup", arguments={"__raw__": "[1, 2]"})
    fine = ToolCall(id="c2", name="lookup", arguments={"city": "Oslo"})
    request = ModelRequest(
        messages=[
            Message(role="user", content="hi"),
            Message(role="assistant", tool_calls=[sent, fine]),
            Message(role="tool", tool_call_id="c1", content="Error: must be a JSON object"),
            Message(role="tool", tool_call_id="c2", content="sunny"),
        ]
    )
    calls = make_model().request_body(request)["messages"][1]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ["[1, 2]", '{"city": "Oslo"}']


async def test_from_config_reads_key_from_env(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_TEST_KEY", SECRET)
    openai_server.enqueue(Reply.completion(content="ok"))
    config = ModelConfig(
        provider="openai",
        name="gpt-env",
        base_url=openai_server.base_url,
        api_key_env="TETHER_TEST_KEY",
        temperature=0.5,
        seed=11,
        max_tokens=64,
    )

    async with OpenAIChatModel.from_config(config) as model:
        await model.complete(user())

    [sent] = openai_server.requests
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.json["model"] == "gpt-env"
    assert (sent.json["temperature"], sent.json["seed"], sent.json["max_tokens"]) == (0.5, 11, 64)


def test_from_config_without_key_for_remote_url_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_MISSING_KEY", raising=False)
    config = ModelConfig(provider="openai", name="gpt-4.1-mini", api_key_env="TETHER_MISSING_KEY")

    with pytest.raises(ProviderError) as info:
        OpenAIChatModel.from_config(config)

    assert "TETHER_MISSING_KEY" in str(info.value)
    assert info.value.hint is not None


async def test_build_model_for_local_server_needs_no_key(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_server.enqueue(Reply.completion(content="from build_model"))

    model = build_model(
        ModelConfig(provider="openai", name="local-llm", base_url=openai_server.base_url)
    )
    assert isinstance(model, OpenAIChatModel)
    try:
        response = await model.complete(user())
    finally:
        await model.aclose()

    assert response.content == "from build_model"
    [sent] = openai_server.requests
    assert sent.json["model"] == "local-llm"
    assert "authorization" not in sent.headers
