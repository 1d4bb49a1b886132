"""``OpenAIChatModel``'s streams against a hostile OpenAI-compatible upstream on 127.0.0.1
(``tests/fakes/openai_server``): chunks that carry nothing sent for ever, a key refused inside
the stream, one endless event, an attempt that fails after its usage came. Each ends with a
clear ``ProviderError`` (or is charged), never a hang, a bare message or a lost count."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAIServer, Reply, stream_chunk
from fakes.traces import trace_of
from test_openai_hostile import USAGE, drain, user
from tether import Agent, Outcome
from tether.core import ProviderError
from tether.providers.openai_compat import MAX_EVENT_CHARS, OpenAIChatModel
from tether.trace import semconv

MakeModel = Callable[..., OpenAIChatModel]


# ------------------------------------------------------------------ chunks that carry nothing


async def test_empty_chunks_sent_for_ever_stall_the_stream(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Each `data: {}` is a chunk, well within timeout_s of the one before; none carries
    # anything. They counted as progress: the stream lasted as long as the server cared to
    # send them (here until it ran out, then a different error).
    openai_server.enqueue(Reply(sse=[{}] * 300, pace_s=0.02, sse_done=False))

    _, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is not None and error.retryable
    assert "stalled: no event for 0.3s" in error.message
    assert "does not count" in error.message
    assert not openai_server.streams[0].finished


async def test_chunks_without_content_mid_stream_stall_it_and_the_partial_reply_stands(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    nothing: list[Any] = [
        stream_chunk({"role": "assistant"}),
        stream_chunk({"content": ""}),
        stream_chunk({}),
        {"choices": []},
        {"id": "chatcmpl-x", "choices": [{"index": 0, "delta": {"tool_calls": []}}]},
    ]
    events: list[Any] = [stream_chunk({"content": "half "}), *nothing * 60]
    openai_server.enqueue(Reply(sse=events, pace_s=0.02, sse_done=False))

    reply, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is not None and "stalled: no event for 0.3s" in error.message
    assert reply.text == "half "
    assert not openai_server.streams[0].finished


async def test_a_reasoning_model_thinking_longer_than_the_timeout_is_not_stalled(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Its thinking streams as `reasoning_content` (vLLM, DeepSeek): not part of the reply,
    # but progress; thinking past timeout_s in all is no stall.
    thinking = [stream_chunk({"reasoning_content": "hmm "})] * 40
    events = [*thinking, stream_chunk({"content": "42"}, finish_reason="stop")]
    openai_server.enqueue(Reply(sse=[*events, stream_chunk(usage=USAGE)], pace_s=0.02))

    reply, error = await drain(make_model(timeout_s=0.3, max_retries=0))

    assert error is None
    assert reply.text == "42"


# ------------------------------------------------------------------ a key refused mid-stream


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (
            {
                "message": "Incorrect API key provided: sk-abc***",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            },
            401,
        ),
        ({"message": "Authentication failed", "type": "authentication_error"}, 401),
        ({"message": "Forbidden", "code": 403}, 403),
        ({"message": "not allowed", "type": "permission_error", "code": "403"}, 403),
    ],
)
async def test_a_key_refused_by_an_error_event_gets_the_same_hint_as_the_status(
    openai_server: FakeOpenAIServer,
    make_model: MakeModel,
    error: dict[str, Any],
    status: int,
) -> None:
    # The same refusal as an HTTP status to complete(), then as an error event inside a
    # streamed 200: the stream's error said only the server's words, with no hint.
    openai_server.enqueue(
        Reply.error(status, error["message"]),
        Reply(sse=[stream_chunk({"role": "assistant"}), {"error": error}]),
    )
    model = make_model(api_key="sk-test-key", api_key_env="MY_KEY_VAR", max_retries=2)
    with pytest.raises(ProviderError) as as_status:
        await model.complete(user())

    _, streamed = await drain(model)

    assert streamed is not None and streamed.hint is not None
    assert streamed.hint == as_status.value.hint
    assert "api_key" in streamed.hint or "not allowed" in streamed.hint
    assert streamed.misconfigured and not streamed.retryable
    assert streamed.status_code == status
    assert len(openai_server.requests) == 2  # not retried: a key does not get better


async def test_a_key_refused_mid_stream_names_the_variable_when_no_key_was_sent(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    openai_server.enqueue(
        Reply(sse=[{"error": {"message": "No API key provided", "code": "invalid_api_key"}}])
    )

    _, error = await drain(make_model(api_key_env="MY_KEY_VAR", max_retries=0))

    assert error is not None and error.hint is not None
    assert "export MY_KEY_VAR=" in error.hint


async def test_an_agent_streaming_a_refused_key_shows_the_hint(
    openai_server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R31_KEY", "sk-wrong")
    refused = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
    openai_server.enqueue(Reply(sse=[stream_chunk({"content": "Hel"}), {"error": refused}]))
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: refused\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {openai_server.base_url}\n"
        "  api_key_env: R31_KEY\n"
        "  max_retries: 0\n"
    )
    agent = Agent.from_yaml(spec, trace=False)

    result = await agent.run("hi", stream=lambda event: None)

    assert result.outcome == Outcome.ERROR
    assert result.hint is not None and "model.api_key_env" in result.hint
    assert os.environ["R31_KEY"] not in (result.error or "")
    await agent.aclose()


# ------------------------------------------------------------------ one endless event


async def test_an_endless_event_line_fails_at_the_event_cap_without_holding_it(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # 40 MB of one `data:` line with no line break: it was held whole up to the response
    # cap (32 MiB of text, several copies of it at once) before the call failed.
    piece = b"x" * 65_536
    openai_server.enqueue(Reply(sse=[b"data: ", *[piece] * 640], sse_done=False))
    model = make_model(max_retries=0)

    tracemalloc.start()
    try:
        _, error = await drain(model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error is not None and not error.retryable
    assert f"longer than {MAX_EVENT_CHARS:,} characters" in error.message
    assert peak < 4 * MAX_EVENT_CHARS
    assert not openai_server.streams[0].finished


async def test_data_lines_that_never_end_their_event_fail_at_the_event_cap(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # Each line is short; no blank line ever ends the event, so its lines pile up.
    line = b"data: " + b"y" * 60_000 + b"\n"
    openai_server.enqueue(Reply(sse=[line] * 100, sse_done=False))

    _, error = await drain(make_model(max_retries=0))

    assert error is not None
    assert f"longer than {MAX_EVENT_CHARS:,} characters" in error.message


async def test_a_long_event_under_the_cap_is_read(
    openai_server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    # A proxy faking a stream sends a whole reply as one event: 1 MB of it is fine.
    text = "z" * 1_000_000
    openai_server.enqueue(Reply(sse=[stream_chunk({"content": text}), stream_chunk(usage=USAGE)]))

    reply, error = await drain(make_model(max_retries=0))

    assert error is None and reply.text == text


# ------------------------------------------------------------------ failed attempts' usage


def _streaming_spec(tmp_path: Path, server: FakeOpenAIServer, retries: int) -> Path:
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: retried\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {server.base_url}\n"
        "  stream: true\n"
        f"  max_retries: {retries}\n"
    )
    return spec


async def test_usage_of_a_streamed_attempt_retried_after_it_broke_is_charged(
    openai_server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    # model.stream: complete() reads the reply as a stream. The first attempt reports its
    # usage, then breaks off; the retry answers. The first attempt's tokens were dropped:
    # the run was charged only the retry's 10 + 5.
    usage = {"prompt_tokens": 1_000, "completion_tokens": 400, "total_tokens": 1_400}
    broken = Reply(
        sse=[stream_chunk({"content": "partial "}), stream_chunk(usage=usage)], sse_done=False
    )
    answer = Reply(sse=[stream_chunk({"content": "done"}), stream_chunk(usage=USAGE)])
    openai_server.enqueue(broken, answer)
    agent = Agent.from_yaml(_streaming_spec(tmp_path, openai_server, 1), trace=sqlite_url)

    result = await agent.run("hi")

    assert result.output == "done"
    assert result.usage.input_tokens == 1_005 and result.usage.output_tokens == 403
    _, spans, events = trace_of(sqlite_url, result.run_id)
    chat = next(s for s in spans if s.kind == "model")
    assert chat.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 5  # the answering attempt
    failed = [e for e in events if e.name == semconv.EVENT_MODEL_ATTEMPT_FAILED]
    assert len(failed) == 1 and failed[0].span_id == chat.span_id
    assert failed[0].attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 1_000
    assert failed[0].attributes[semconv.TETHER_COST_USD] > 0  # priced: gpt-4.1-mini
    assert result.cost_usd is not None
    assert result.cost_usd >= failed[0].attributes[semconv.TETHER_COST_USD]
    await agent.aclose()


async def test_usage_of_a_streamed_attempt_that_failed_for_good_is_charged(
    openai_server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    usage = {"prompt_tokens": 2_000, "completion_tokens": 10, "total_tokens": 2_010}
    openai_server.enqueue(
        Reply(sse=[stream_chunk({"content": "x"}), stream_chunk(usage=usage)], sse_done=False)
    )
    agent = Agent.from_yaml(_streaming_spec(tmp_path, openai_server, 0), trace=sqlite_url)

    result = await agent.run("hi")

    assert result.outcome == Outcome.ERROR
    assert result.usage.input_tokens == 2_000
    _, _, events = trace_of(sqlite_url, result.run_id)
    assert [e.name for e in events].count(semconv.EVENT_MODEL_ATTEMPT_FAILED) == 1
    await agent.aclose()


async def test_usage_of_a_streamed_attempt_cut_by_the_runs_timeout_is_charged(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # The usage came, then the server went silent; the run's own timeout ends the call
    # before the model's: the tokens the provider reported are still the run's.
    usage = {"prompt_tokens": 3_000, "completion_tokens": 7, "total_tokens": 3_007}
    openai_server.enqueue(
        Reply(
            sse=[stream_chunk({"content": "x"}), stream_chunk(usage=usage), stream_chunk({})],
            sse_stall_after=2,
        )
    )
    spec = _streaming_spec(tmp_path, openai_server, 0)
    spec.write_text(spec.read_text() + "limits:\n  timeout_s: 0.5\n")
    agent = Agent.from_yaml(spec, trace=False)

    result = await agent.run("hi")

    assert result.outcome == Outcome.LIMIT_EXCEEDED
    assert result.usage.input_tokens == 3_000
    await agent.aclose()
