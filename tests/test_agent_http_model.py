"""An agent on the OpenAI-compatible provider, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAIServer, Reply, completion_body, tool_call_json
from tether import Agent, ScriptedModel, tool
from tether.store import Store
from tether.trace import semconv, writer_for


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


@tool
def get_order(order_id: int) -> dict[str, object]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


def write_spec(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: http-agent\n"
        "instructions: Be brief.\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {base_url}\n"
        "  timeout_s: 0.5\n"
        "  max_retries: 1\n" + extra
    )
    return spec


async def test_tool_calling_conversation_over_http(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.enqueue(
        Reply.completion(
            tool_calls=[tool_call_json("call_1", "get_order", '{"order_id": 7}')],
            prompt_tokens=120,
            cached_tokens=100,
            model="gpt-4.1-mini-2025-04-14",
        ),
        Reply.completion(content="Order 7 has shipped.", prompt_tokens=150, completion_tokens=8),
    )
    agent = Agent.from_yaml(
        write_spec(tmp_path, server.base_url), tools=[get_order], trace=sqlite_url
    )
    result = await agent.run("where is order 7?")

    assert result.ok and result.output == "Order 7 has shipped."
    assert result.usage.input_tokens == 270 and result.usage.cached_input_tokens == 100
    assert result.cost_usd > 0
    second = server.requests[1].json
    tool_msg = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == "call_1"
    assert '"status":"shipped"' in tool_msg["content"]
    assert second["tools"][0]["function"]["name"] == "get_order"

    writer_for(sqlite_url).flush()
    spans = Store(sqlite_url).get_spans(result.trace_id)
    first_chat = next(s for s in spans if s.kind == "model")
    assert first_chat.attributes[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert first_chat.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4.1-mini-2025-04-14"
    assert first_chat.attributes[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 100


async def test_garbage_from_the_provider_is_a_clean_error_outcome(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.enqueue(
        Reply(raw=b"<html>502 Bad Gateway</html>", headers={"Content-Type": "text/html"})
    )
    agent = Agent.from_yaml(write_spec(tmp_path, server.base_url), trace=sqlite_url)
    result = await agent.run("hi")
    assert result.outcome == "error" and result.status == "failed"
    assert "the body is not JSON" in (result.state.error or "")
    assert "Bad Gateway" in (result.state.error or "")
    assert "language model is unavailable" in result.output
    writer_for(sqlite_url).flush()
    run = Store(sqlite_url).get_run(result.trace_id)
    assert run.status == "failed" and run.error


async def test_provider_timeout_falls_back_to_the_next_model(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    late = completion_body(content="too late")
    server.enqueue(Reply(json=late, delay_s=2.0), Reply(json=late, delay_s=2.0))
    (tmp_path / "backup.yaml").write_text("steps: [{text: backup answer}]\n")
    spec = write_spec(
        tmp_path,
        server.base_url,
        "fallback_models:\n  - {provider: scripted, name: backup, script: backup.yaml}\n",
    )
    agent = Agent.from_yaml(spec, trace=False)
    assert isinstance(agent.fallback_models[0], ScriptedModel)
    result = await agent.run("hi")
    assert result.ok and result.output == "backup answer"
    assert len(server.requests) == 2  # one try plus one retry, both timed out
