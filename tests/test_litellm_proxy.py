"""Found against LiteLLM's proxy, tried as a new user would: an unknown model answered with
HTTP 400, a named but unset key answered with HTTP 500 and a multi-line error, an unpriced run,
a fallback to the same model name on another server. The fake server answers as LiteLLM does
(``FakeOpenAIServer(models=..., require_key=...)``); the CLI runs as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAIServer, Reply
from tether import Agent
from tether.core import ProviderError
from tether.providers import Message, ModelRequest
from tether.providers.openai_compat import OpenAIChatModel
from tether.store import Store
from tether.trace import semconv, writer_for

SERVED = "gpt-4.1-mini"


@pytest.fixture
def proxy() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models={SERVED}) as server:
        yield server


def spec_file(tmp_path: Path, base_url: str, *, name: str = SERVED, extra: str = "") -> Path:
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: proxied\nmodel:\n  provider: openai\n"
        f"  name: {name}\n  base_url: {base_url}\n  max_retries: 0\n{extra}"
    )
    return spec


def tether(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``tether`` CLI, with no API key in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", db, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


# ---------------------------------------------------------------------- (a) unknown model


async def test_an_unknown_model_answered_with_400_is_a_setup_error_naming_model_name(
    proxy: FakeOpenAIServer,
) -> None:
    async with OpenAIChatModel("gpt-nope", base_url=proxy.base_url) as model:
        with pytest.raises(ProviderError) as caught:
            await model.complete(ModelRequest(messages=[Message(role="user", content="hi")]))
    error = caught.value
    assert error.status_code == 400 and not error.retryable
    assert "Invalid model name passed in model=gpt-nope" in error.message
    assert error.hint is not None and "model.name" in error.hint and "'gpt-nope'" in error.hint
    assert error.misconfigured
    assert len(proxy.requests) == 1


async def test_a_400_that_only_mentions_a_model_is_not_taken_for_an_unknown_model(
    proxy: FakeOpenAIServer,
) -> None:
    proxy.enqueue(
        Reply.error(400, "This model's maximum context length is 8192 tokens, you asked 9000")
    )
    async with OpenAIChatModel(SERVED, base_url=proxy.base_url) as model:
        with pytest.raises(ProviderError) as caught:
            await model.complete(ModelRequest(messages=[Message(role="user", content="hi")]))
    error = caught.value
    assert not error.misconfigured
    assert error.hint is not None and "the server rejected the request" in error.hint


async def test_a_run_on_an_unknown_model_tells_the_user_it_is_not_set_up(
    proxy: FakeOpenAIServer, tmp_path: Path
) -> None:
    agent = Agent.from_yaml(spec_file(tmp_path, proxy.base_url, name="gpt-nope"), trace=False)
    result = await agent.run("hi")
    assert result.status == "failed"
    assert result.output is not None and "not set up correctly" in result.output
    assert result.hint is not None and "check model.name" in result.hint


# ---------------------------------------------------------------------- (b) + (e) no key sent


def test_validate_warns_about_a_named_key_that_is_unset_for_a_local_server(
    tmp_path: Path, sqlite_url: str
) -> None:
    extra = "  api_key_env: LITELLM_TEST_KEY\n"
    spec = spec_file(tmp_path, "http://127.0.0.1:4000/v1", extra=extra)
    done = tether(sqlite_url, "validate", str(spec))
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert "LITELLM_TEST_KEY is not set, so no API key will be sent to" in flat

    done = tether(sqlite_url, "validate", str(spec), "--json")
    warnings = json.loads(done.stdout)["warnings"]
    assert any("LITELLM_TEST_KEY" in w for w in warnings)

    # The default variable, not named in the spec: a local server needs no key, no warning.
    spec = spec_file(tmp_path, "http://127.0.0.1:4000/v1")
    done = tether(sqlite_url, "validate", str(spec), "--json")
    assert json.loads(done.stdout)["warnings"] == []


def test_a_500_to_a_request_without_a_key_says_no_key_was_sent_on_one_why_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    with FakeOpenAIServer(models={SERVED}, require_key=True) as server:
        spec = spec_file(tmp_path, server.base_url, extra="  api_key_env: LITELLM_TEST_KEY\n")
        done = tether(sqlite_url, "run", str(spec), "-i", "hi")
        assert done.returncode == 1, done.stderr
        lines = done.stdout.splitlines()
        why = [line for line in lines if line.startswith("why:")]
        assert len(why) == 1 and "Authentication Error, No api key passed in." in why[0]
        assert "more lines" in why[0]
        # The provider's traceback stays out of the terminal summary (it is in the trace).
        assert "Traceback" not in done.stdout
        hint = next(line for line in lines if line.startswith("hint:"))
        assert lines.index(hint) == lines.index(why[0]) + 1
        flat = " ".join(done.stdout.split())
        assert "no API key was sent (LITELLM_TEST_KEY is not set)" in flat
        assert "export LITELLM_TEST_KEY=" in flat

        done = tether(sqlite_url, "run", str(spec), "-i", "hi", "--json")
        data = json.loads(done.stdout)
        assert "Traceback" in data["error"] and "(no API key was sent)" in data["error"]
        assert data["hint"].startswith("no API key was sent (LITELLM_TEST_KEY is not set)")

        done = tether(sqlite_url, "traces", "show", data["run_id"])
        assert done.returncode == 0 and "Traceback" in done.stdout
    assert all("authorization" not in r.headers for r in server.requests)


# ---------------------------------------------------------------------- (c) unpriced cost


async def test_an_unpriced_run_has_no_cost_attribute_on_its_agent_span(
    tmp_path: Path, sqlite_url: str
) -> None:
    with FakeOpenAIServer(models={"my-local-llama"}) as server:
        server.enqueue(Reply.completion(content="hi", model="my-local-llama"))
        spec = spec_file(tmp_path, server.base_url, name="my-local-llama")
        result = await Agent.from_yaml(spec, trace=sqlite_url).run("hi")
    assert result.ok and result.cost_usd is None
    writer_for(sqlite_url).flush()
    agent_span = next(s for s in Store(sqlite_url).get_spans(result.run_id) if s.kind == "agent")
    assert semconv.TETHER_COST_USD not in agent_span.attributes
    assert agent_span.attributes[semconv.TETHER_COST_UNPRICED] == 1

    done = tether(sqlite_url, "traces", "show", result.run_id)
    assert done.returncode == 0 and "unpriced" in done.stdout and "$0.000000" not in done.stdout


async def test_a_priced_run_keeps_its_cost_attribute(
    proxy: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    proxy.enqueue(Reply.completion(content="hi", model=SERVED))
    result = await Agent.from_yaml(spec_file(tmp_path, proxy.base_url), trace=sqlite_url).run("hi")
    assert result.ok and result.cost_usd is not None and result.cost_usd > 0
    writer_for(sqlite_url).flush()
    agent_span = next(s for s in Store(sqlite_url).get_spans(result.run_id) if s.kind == "agent")
    assert agent_span.attributes[semconv.TETHER_COST_USD] == pytest.approx(result.cost_usd)


# ---------------------------------------------------------------------- (d) server address


async def test_a_fallback_to_the_same_model_on_another_server_is_told_apart(
    tmp_path: Path, sqlite_url: str
) -> None:
    with (
        FakeOpenAIServer(models={SERVED}) as first,
        FakeOpenAIServer(models={SERVED}) as second,
    ):
        first.enqueue(Reply.error(503, "overloaded"))
        second.enqueue(Reply.completion(content="from the second", model=SERVED))
        # Credentials in a base_url never reach a span.
        backup = second.base_url.replace("http://", "http://user:hunter2secret@")
        fallback = f"{{provider: openai, name: {SERVED}, base_url: '{backup}'}}"
        extra = f"fallback_models:\n  - {fallback}\n"
        spec = spec_file(tmp_path, first.base_url)
        spec.write_text(spec.read_text() + extra)
        result = await Agent.from_yaml(spec, trace=sqlite_url).run("hi")
        ports = (first.port, second.port)
    assert result.ok and result.output == "from the second"
    writer_for(sqlite_url).flush()
    chats = [s for s in Store(sqlite_url).get_spans(result.run_id) if s.kind == "model"]
    assert [s.attributes[semconv.GEN_AI_REQUEST_MODEL] for s in chats] == [SERVED, SERVED]
    assert [s.attributes[semconv.SERVER_ADDRESS] for s in chats] == ["127.0.0.1", "127.0.0.1"]
    assert tuple(s.attributes[semconv.SERVER_PORT] for s in chats) == ports
    assert all("hunter2secret" not in json.dumps(s.attributes) for s in chats)


def test_the_server_port_defaults_by_scheme() -> None:
    assert OpenAIChatModel("m", base_url="https://api.example.com/v1").server == (
        "api.example.com",
        443,
    )
    assert OpenAIChatModel("m", base_url="http://localhost/v1").server == ("localhost", 80)
