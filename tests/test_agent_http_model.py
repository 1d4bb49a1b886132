"""An agent on the OpenAI-compatible provider, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes.openai_server import FakeOpenAIServer, Reply, completion_body, tool_call_json
from tether import Agent, ScriptedModel, tool
from tether.cli import cli
from tether.store import Store
from tether.trace import close_writers, semconv, writer_for


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
    spans = Store(sqlite_url).get_spans(result.run_id)
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
    # Not a completion at all: a misconfigured endpoint, which retrying will not fix.
    assert "not set up correctly" in result.output and "try again shortly" not in result.output
    assert result.hint and "base_url" in result.hint
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


def invoke(db: str, *args: str) -> tuple[int, str]:
    """``tether --database-url DB ARGS`` in-process: exit code and output (stdout alone for
    ``--json``)."""
    result = CliRunner().invoke(cli, ["--database-url", db, *args], catch_exceptions=False)
    return result.exit_code, result.stdout if "--json" in args else result.output


API_KEY_HINT = "check the API key (model.api_key_env names the variable that holds it)"


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, API_KEY_HINT),
        (403, "the API key is not allowed to use this model or endpoint"),
        (404, "check model.name and model.base_url"),
    ],
)
def test_a_rejected_request_says_what_to_fix_everywhere(
    server: FakeOpenAIServer,
    tmp_path: Path,
    sqlite_url: str,
    status: int,
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-1234")  # a key was sent, and rejected
    server.enqueue(*[Reply.error(status, "Incorrect API key provided: sk-***") for _ in range(2)])
    spec = str(write_spec(tmp_path, server.base_url))

    code, out = invoke(sqlite_url, "run", spec, "-i", "hi")
    assert code == 1
    assert "try again shortly" not in out and "not set up correctly" in out
    assert f"hint: {hint}" in out
    assert len(server.requests) == 1  # a rejected request is not retried

    code, out = invoke(sqlite_url, "run", spec, "-i", "hi", "--json")
    data = json.loads(out)
    assert code == 1 and data["outcome"] == "error" and data["status"] == "failed"
    assert data["hint"] == hint and f"HTTP {status}" in data["error"]

    trace_id = data["trace_id"]
    code, out = invoke(sqlite_url, "traces", "show", trace_id)
    assert code == 0
    flat = " ".join(out.split())  # the tree may wrap long lines; no word may be cut
    assert f"hint: {hint}" in flat


async def test_a_rejected_request_keeps_its_hint_in_the_result_and_trace(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-1234")  # a key was sent, and rejected
    server.enqueue(Reply.error(401, "Incorrect API key provided"))
    agent = Agent.from_yaml(write_spec(tmp_path, server.base_url), trace=sqlite_url)
    result = await agent.run("hi")
    assert result.outcome == "error" and result.status == "failed"
    assert result.hint == API_KEY_HINT
    assert result.error and "HTTP 401" in result.error and "Incorrect API key" in result.error
    assert result.state.hint == API_KEY_HINT
    writer_for(sqlite_url).flush()
    events = Store(sqlite_url).get_events(result.run_id)
    run_error = next(e for e in events if e.name == semconv.EVENT_RUN_ERROR)
    assert run_error.attributes["hint"] == API_KEY_HINT
    assert run_error.attributes["status_code"] == 401
    assert run_error.attributes["retryable"] is False


async def test_a_transient_failure_still_asks_to_try_again(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply.error(503, "overloaded"), Reply.error(503, "overloaded"))
    agent = Agent.from_yaml(write_spec(tmp_path, server.base_url), trace=False)
    result = await agent.run("hi")
    assert result.outcome == "error" and "try again shortly" in result.output
    assert result.hint and "max_retries" in result.hint


def test_a_password_in_base_url_is_never_printed_nor_stored(tmp_path: Path) -> None:
    password = "s3cr3tpw"
    # Port 1 refuses the connection: the run fails with an error that names the endpoint.
    spec = str(write_spec(tmp_path, f"http://user:{password}@127.0.0.1:1/v1"))
    db = tmp_path / "traces.db"
    url = f"sqlite:///{db}"

    code, out = invoke(url, "run", spec, "-i", "hi")
    assert code == 1 and "cannot reach http://user:***@127.0.0.1:1/v1" in out
    code, json_out = invoke(url, "run", spec, "-i", "hi", "--json")
    data = json.loads(json_out)
    assert code == 1 and "user:***@127.0.0.1" in data["error"]
    code, shown = invoke(url, "traces", "show", data["trace_id"], "--json")
    assert code == 0 and "user:***@" in shown
    close_writers()

    for text in (out, json_out, shown):
        assert password not in text
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".yaml"]
    assert any(p.name.startswith("traces.db") for p in stored)
    for path in stored:  # the database, its WAL, and the crash journal
        assert password.encode() not in path.read_bytes(), path
    agent = Agent.from_yaml(spec, trace=False)
    assert password not in repr(agent.model) and "user:***@" in repr(agent.model)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('{"order_id": 7', 'not valid JSON: {"order_id": 7'),
        ("[1, 2]", "must be a JSON object, got an array: [1, 2]"),
    ],
)
async def test_invalid_tool_arguments_are_replayed_as_the_model_sent_them(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str, arguments: str, problem: str
) -> None:
    server.enqueue(
        Reply.completion(tool_calls=[tool_call_json("call_1", "get_order", arguments)]),
        Reply.completion(content="Sorry, which order?"),
    )
    agent = Agent.from_yaml(
        write_spec(tmp_path, server.base_url), tools=[get_order], trace=sqlite_url
    )
    result = await agent.run("where is my order?")
    assert result.ok

    second = server.requests[1].json["messages"]
    assistant = next(m for m in second if m["role"] == "assistant")
    assert assistant["tool_calls"][0]["function"]["arguments"] == arguments
    tool_msg = next(m for m in second if m["role"] == "tool")
    assert tool_msg["content"] == f"Error: invalid arguments for tool 'get_order': {problem}"
    writer_for(sqlite_url).flush()
    spans = Store(sqlite_url).get_spans(result.run_id)
    tool_span = next(s for s in spans if s.kind == "tool")
    assert tool_span.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] == arguments


def test_an_unpriced_model_shows_an_unknown_cost_not_zero(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.enqueue(
        Reply.completion(content="hi", model="my-local-llama"),
        Reply.completion(content="hi", model="my-local-llama"),
    )
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: local\nmodel:\n  provider: openai\n  name: my-local-llama\n"
        f"  base_url: {server.base_url}\n"
    )
    code, out = invoke(sqlite_url, "run", str(spec), "-i", "hi")
    assert code == 0 and "cost unpriced" in out and "$0.000000" not in out
    code, out = invoke(sqlite_url, "run", str(spec), "-i", "hi", "--json")
    data = json.loads(out)
    assert code == 0 and data["cost_usd"] is None
    code, out = invoke(sqlite_url, "traces", "show", data["trace_id"])
    assert code == 0 and "unpriced" in out and "$0.000000" not in out
    code, out = invoke(sqlite_url, "traces", "show", data["trace_id"], "--json")
    assert json.loads(out)["run"]["cost_usd"] is None
