"""Resilience against a real OpenAI-compatible upstream on 127.0.0.1 that injects faults:
500s, 429 with Retry-After, a server that never answers, a body trickled a few bytes at a
time, slow and stalled streams, truncated and malformed JSON. An agent built from a spec
with a circuit breaker, a per-call timeout and a degraded answer; the requests the server
received say when the breaker kept calls away from it, and the trace says why."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAIServer, Reply, completion_body, stream_chunk
from fakes.traces import trace_of
from tether import Agent, Outcome, RunResult
from tether.providers import StreamEvent, TextDelta
from tether.resilience import CircuitBreakerModel, CircuitOpenError, LocalBreakerStore
from tether.trace import semconv

DEGRADED = "We're having trouble reaching our assistant right now. Please try again soon."


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def write_spec(
    folder: Path,
    base_url: str,
    *,
    timeout_s: float = 2.0,
    max_retries: int = 0,
    failures: int = 3,
    cooldown_s: float = 0.3,
    backup: str = "{text: backup answer}",
    extra: str = "",
) -> Path:
    (folder / "backup.yaml").write_text(f"steps: [{backup}]\n")
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: resilient\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4.1-mini\n"
        f"  base_url: {base_url}\n"
        f"  timeout_s: {timeout_s}\n"
        f"  max_retries: {max_retries}\n"
        "fallback_models:\n"
        "  - {provider: scripted, name: backup, script: backup.yaml}\n"
        "resilience:\n"
        f"  circuit_breaker: {{failures: {failures}, window_s: 60, cooldown_s: {cooldown_s}}}\n"
        f'  degraded_answer: "{DEGRADED}"\n' + extra
    )
    return spec


def agent_for(spec: Path, trace: Any = False) -> Agent:
    # A store of the test's own: circuits of other tests never leak in.
    agent = Agent.from_yaml(spec, trace=trace, breaker_store=LocalBreakerStore())
    assert isinstance(agent.harness.chain.primary, CircuitBreakerModel)
    return agent


def primary_breaker(agent: Agent) -> CircuitBreakerModel:
    model = agent.harness.chain.primary
    assert isinstance(model, CircuitBreakerModel)
    return model


def chats(spans: list[Any]) -> list[Any]:
    return sorted((s for s in spans if s.kind == "model"), key=lambda s: s.start_ns)


async def wait_for_primary(agent: Agent, server: FakeOpenAIServer) -> RunResult:
    """Once the cool-down has passed, the next run's call is the probe: poll until a run is
    answered by the primary (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + 10
    while True:
        result = await agent.run("hi")
        if result.output != "backup answer":
            return result
        assert time.monotonic() < deadline, "the circuit never let a probe through"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------- 5xx


async def test_500s_open_the_circuit_the_fallback_serves_then_a_probe_closes_it(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.enqueue(*[Reply.error(500, "upstream exploded")] * 3)
    agent = agent_for(write_spec(tmp_path, server.base_url), trace=sqlite_url)
    endpoint = f"openai@127.0.0.1:{server.port}/gpt-4.1-mini"
    assert primary_breaker(agent).breaker.endpoint == endpoint

    results = [await agent.run("hi") for _ in range(5)]

    assert [r.output for r in results] == ["backup answer"] * 5
    assert all(r.outcome == Outcome.FINAL_ANSWER for r in results)
    assert len(server.requests) == 3  # runs 4 and 5 never reached the upstream
    # The third failure opened the circuit: an event on that call's span.
    _, spans, events = trace_of(sqlite_url, results[2].run_id)
    primary = chats(spans)[0]
    [opened] = [e for e in events if e.name == "tether.circuit.open"]
    assert opened.span_id == primary.span_id
    assert opened.attributes["endpoint"] == endpoint and opened.attributes["failures"] == 3
    # A refused call's span says why the fallback happened.
    _, spans, events = trace_of(sqlite_url, results[3].run_id)
    refused, served = chats(spans)
    assert refused.status == "error"
    assert refused.status_message.startswith(f"circuit open for {endpoint}")
    assert refused.attributes[semconv.ERROR_TYPE] == "CircuitOpenError"
    assert refused.attributes[semconv.SERVER_PORT] == server.port
    assert served.attributes[semconv.GEN_AI_REQUEST_MODEL] == "backup"
    [fallback] = [e for e in events if e.name == semconv.EVENT_MODEL_FALLBACK]
    assert "circuit open" in fallback.attributes["reason"]

    server.enqueue(Reply.completion(content="primary is back"))
    probe = await wait_for_primary(agent, server)

    assert probe.output == "primary is back" and len(server.requests) == 4
    _, _, events = trace_of(sqlite_url, probe.run_id)
    names = [e.name for e in events if e.name.startswith("tether.circuit.")]
    assert names == ["tether.circuit.half_open", "tether.circuit.closed"]
    server.enqueue(Reply.completion(content="closed again"))
    assert (await agent.run("hi")).output == "closed again"
    await agent.aclose()


async def test_a_failing_probe_reopens_the_circuit(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(*[Reply.error(503, "still down")] * 3)
    agent = agent_for(write_spec(tmp_path, server.base_url, failures=2))
    for _ in range(3):
        assert (await agent.run("hi")).output == "backup answer"
    assert len(server.requests) == 2
    breaker = primary_breaker(agent).breaker

    deadline = time.monotonic() + 10
    while len(server.requests) < 3:  # the probe after the cool-down, failing
        assert time.monotonic() < deadline
        assert (await agent.run("hi")).output == "backup answer"
        await asyncio.sleep(0.02)

    assert (await breaker.state()).state == "open"
    assert (await agent.run("hi")).output == "backup answer"
    assert len(server.requests) == 3
    await agent.aclose()


# ------------------------------------------------------------------------------- 429


async def test_429_with_retry_after_is_waited_for_then_counted(
    server: FakeOpenAIServer, tmp_path: Path, sleeps: list[float]
) -> None:
    busy = Reply.error(429, "slow down", headers={"Retry-After": "0.25"})
    server.enqueue(*[busy] * 4)
    agent = agent_for(write_spec(tmp_path, server.base_url, max_retries=1, failures=2))

    results = [await agent.run("hi") for _ in range(3)]

    assert [r.output for r in results] == ["backup answer"] * 3
    assert sleeps == [0.25, 0.25]  # each call retried once, after what the server asked
    assert len(server.requests) == 4  # two calls of two attempts; the third was refused
    await agent.aclose()


# ------------------------------------------------------------------------------- timeouts


async def test_a_server_that_never_answers_times_out_per_call_and_the_chain_falls_back(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.enqueue(*[Reply(delay_s=60, json=completion_body(content="too late"))] * 2)
    spec = write_spec(
        tmp_path, server.base_url, timeout_s=0.3, failures=2, extra="limits: {timeout_s: 30}\n"
    )
    agent = agent_for(spec, trace=sqlite_url)

    results = [await agent.run("hi") for _ in range(3)]

    assert [r.outcome for r in results] == [Outcome.FINAL_ANSWER] * 3
    assert [r.output for r in results] == ["backup answer"] * 3
    assert len(server.requests) == 2  # the third call was refused, not waited for
    _, spans, _ = trace_of(sqlite_url, results[0].run_id)
    timed_out = chats(spans)[0]
    assert "timed out after 0.3s" in timed_out.status_message
    _, spans, _ = trace_of(sqlite_url, results[2].run_id)
    assert chats(spans)[0].status_message.startswith("circuit open")
    await agent.aclose()


async def test_the_runs_timeout_is_apart_from_the_per_call_timeout(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply(delay_s=60, json=completion_body(content="too late")))
    spec = write_spec(tmp_path, server.base_url, timeout_s=30, extra="limits: {timeout_s: 0.3}\n")
    agent = agent_for(spec)

    result = await agent.run("hi")

    # The run ran out of time first: its own limit, not a provider error; no degraded answer.
    assert result.outcome == Outcome.LIMIT_EXCEEDED
    assert "timeout_s limit reached" in (result.stop_reason or "")
    assert result.output != DEGRADED
    assert (await primary_breaker(agent).breaker.state()).failures == ()  # not the endpoint's fault
    await agent.aclose()


async def test_a_body_trickled_slower_than_the_timeout_is_cut_off(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # Each piece comes well within timeout_s, so no single wait for data times out; the
    # attempt as a whole does.
    body = completion_body(content="x" * 400)
    server.enqueue(Reply(json=body, pace_s=0.02))
    agent = agent_for(write_spec(tmp_path, server.base_url, timeout_s=0.3))

    result = await agent.run("hi")

    assert result.output == "backup answer"  # read whole, it would have been x * 400
    await agent.aclose()


# ------------------------------------------------------------------------------- streams


def text_chunks(*pieces: str) -> list[dict[str, Any]]:
    return [
        *(stream_chunk({"content": p}) for p in pieces),
        stream_chunk(finish_reason="stop"),
        stream_chunk(usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}),
    ]


def collector() -> tuple[list[str], Any]:
    texts: list[str] = []

    def on_event(event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            texts.append(event.text)

    return texts, on_event


async def test_a_slow_stream_within_the_timeout_is_served_and_not_counted(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(*[Reply(sse=text_chunks("slow ", "but ", "sure"), pace_s=0.05)] * 2)
    agent = agent_for(write_spec(tmp_path, server.base_url, timeout_s=1.0, failures=1))

    for _ in range(2):
        texts, on_event = collector()
        result = await agent.run("hi", stream=on_event)
        assert result.output == "slow but sure" and texts == ["slow ", "but ", "sure"]
    assert (await primary_breaker(agent).breaker.state()).state == "closed"
    await agent.aclose()


async def test_a_slow_starting_stream_falls_back_opens_the_circuit_a_streamed_probe_closes_it(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply(sse=text_chunks("never shown"), pace_s=2.0))
    agent = agent_for(write_spec(tmp_path, server.base_url, timeout_s=0.3, failures=1))

    texts, on_event = collector()
    result = await agent.run("hi", stream=on_event)

    assert result.output == "backup answer" and "".join(texts) == "backup answer"
    assert (await primary_breaker(agent).breaker.state()).state == "open"
    texts, on_event = collector()
    assert (await agent.run("hi", stream=on_event)).output == "backup answer"
    assert len(server.requests) == 1

    # A streamed probe closes the circuit once its reply is whole (the run stops reading
    # at the stream's end event).
    server.enqueue(*[Reply(sse=text_chunks("back ", "again"))] * 2)
    deadline = time.monotonic() + 10
    while True:
        texts, on_event = collector()
        result = await agent.run("hi", stream=on_event)
        if result.output == "back again":
            break
        assert time.monotonic() < deadline, "the circuit never let a probe through"
        await asyncio.sleep(0.02)
    assert (await primary_breaker(agent).breaker.state()).state == "closed"
    await agent.aclose()


async def test_a_stream_stalled_midway_ends_the_run_with_the_degraded_answer(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply(sse=text_chunks("half ", "a ", "reply"), sse_stall_after=2))
    agent = agent_for(write_spec(tmp_path, server.base_url, timeout_s=0.3, failures=1))

    texts, on_event = collector()
    result = await agent.run("hi", stream=on_event)

    assert texts == ["half ", "a "]  # shown before the stall: no second answer follows
    assert result.outcome == Outcome.ERROR and result.output == DEGRADED
    assert "broke off midway" in (result.error or "")
    assert (await primary_breaker(agent).breaker.state()).state == "open"
    await agent.aclose()


# ------------------------------------------------------------------------------- bad JSON


async def test_truncated_replies_count_as_transient_failures(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    whole = json.dumps(completion_body(content="cut short")).encode()
    server.enqueue(
        *[Reply(json=completion_body(content="cut short"), cut_body_at=len(whole) // 2)] * 2
    )
    agent = agent_for(write_spec(tmp_path, server.base_url, failures=2))

    results = [await agent.run("hi") for _ in range(3)]

    assert [r.output for r in results] == ["backup answer"] * 3
    assert len(server.requests) == 2  # truncated twice: open, the third call refused
    await agent.aclose()


async def test_malformed_json_falls_back_but_is_not_counted(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    garbage = Reply(raw=b'{"id": "x", "choices": [}', headers={"Content-Type": "application/json"})
    server.enqueue(*[garbage] * 3, Reply.completion(content="well formed"))
    agent = agent_for(write_spec(tmp_path, server.base_url, failures=1), trace=sqlite_url)

    results = [await agent.run("hi") for _ in range(4)]

    # Not a completion at all: a wrong base_url far more often than an outage, and retrying
    # will not fix it. The chain still falls back; the circuit stays closed.
    assert [r.output for r in results] == ["backup answer"] * 3 + ["well formed"]
    assert len(server.requests) == 4
    _, spans, _ = trace_of(sqlite_url, results[0].run_id)
    assert "unexpected response" in chats(spans)[0].status_message
    await agent.aclose()


# ------------------------------------------------------------------------------- degraded


async def test_every_model_down_gives_the_degraded_answer(
    server: FakeOpenAIServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.enqueue(*[Reply.error(502, "bad gateway")] * 2)
    spec = write_spec(tmp_path, server.base_url, failures=2, backup="{error: backup is down}")
    agent = agent_for(spec, trace=sqlite_url)

    results = [await agent.run("hi") for _ in range(3)]

    for result in results:
        assert result.outcome == Outcome.ERROR and result.status == "failed"
        assert result.output == DEGRADED
        assert "degraded answer" in (result.stop_reason or "")
    assert len(server.requests) == 2  # the third run: the primary's circuit was open
    assert "circuit open" in (results[2].error or "")
    run, _, events = trace_of(sqlite_url, results[0].run_id)
    assert run.output == DEGRADED and run.status == "failed" and run.outcome == "error"
    [error] = [e for e in events if e.name == semconv.EVENT_RUN_ERROR]
    assert error.attributes["degraded_answer"] is True
    await agent.aclose()


async def test_a_setup_error_is_not_hidden_behind_the_degraded_answer(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply.error(401, "invalid api key"))
    spec = write_spec(tmp_path, server.base_url, backup="{error: backup is down}")
    # Only the primary: its 401 is the last error, which retrying will not fix.
    spec.write_text(
        spec.read_text().replace(
            "fallback_models:\n  - {provider: scripted, name: backup, script: backup.yaml}\n", ""
        )
    )
    agent = agent_for(spec)

    result = await agent.run("hi")

    assert result.outcome == Outcome.ERROR and result.output != DEGRADED
    assert "not set up correctly" in result.output
    assert (await primary_breaker(agent).breaker.state()).failures == ()
    await agent.aclose()


async def test_open_circuits_on_every_model_refuse_at_once(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply.error(500, "down"))
    spec = write_spec(
        tmp_path, server.base_url, failures=1, cooldown_s=60, backup="{error: backup is down}"
    )
    agent = agent_for(spec)
    assert (await agent.run("hi")).output == DEGRADED  # opens both circuits
    backup = agent.harness.chain.models[1]
    assert isinstance(backup, CircuitBreakerModel)
    assert (await backup.breaker.state()).state == "open"

    result = await agent.run("hi")

    assert result.output == DEGRADED and len(server.requests) == 1
    assert "all 2 models failed" in (result.error or "")
    with pytest.raises(CircuitOpenError):
        await backup.breaker.admit()
    await agent.aclose()
