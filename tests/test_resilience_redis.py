"""Circuit breakers shared through the real Redis on 127.0.0.1:6379 (skipped without it on a
laptop, required under CI=true): two processes sharing one circuit, racing on it, and what
happens when Redis is down, hangs, comes back or holds something else under the key."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAIServer, Reply
from fakes.tcp_proxy import ReplyDropper, SilentServer, TcpProxy, free_port
from tether import Agent
from tether.core import SpecError, TetherError
from tether.providers import Message, ModelRequest, ModelResponse
from tether.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerModel,
    CircuitOpenError,
    RedisBreakerStore,
)
from tether.spec import CircuitBreakerConfig

pytestmark = pytest.mark.redis

WORKER = Path(__file__).parent / "fakes" / "breaker_worker.py"
CONFIG = CircuitBreakerConfig(failures=2, window_s=60, cooldown_s=30)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def worker(*args: str, env: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, str(WORKER), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write_spec(folder: Path, base_url: str, cooldown_s: float) -> Path:
    (folder / "backup.yaml").write_text("steps: [{text: backup answer}]\n")
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: shared\n"
        "model: {provider: openai, name: gpt-4.1-mini, "
        f"base_url: {base_url}, timeout_s: 5, max_retries: 0}}\n"
        "fallback_models: [{provider: scripted, name: backup, script: backup.yaml}]\n"
        "resilience:\n"
        f"  circuit_breaker: {{failures: 3, window_s: 60, cooldown_s: {cooldown_s}, "
        "shared: redis}\n"
    )
    return spec


class Flaky:
    """A transient failure (503) on every call, counting the calls that reached it."""

    provider = "test"
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        from tether.core import ProviderError

        self.calls += 1
        raise ProviderError("upstream returned 503", status_code=503, retryable=True)


def ask() -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content="hi")])


async def fail_until_open(model: CircuitBreakerModel, calls: int) -> list[BaseException]:
    errors: list[BaseException] = []
    for _ in range(calls):
        try:
            await model.complete(ask())
        except Exception as exc:
            errors.append(exc)
    return errors


# ------------------------------------------------------------------------------- two processes


def test_two_processes_share_one_circuit(
    server: FakeOpenAIServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    env = {"TETHER_REDIS_URL": redis_url, "TETHER_REDIS_PREFIX": redis_prefix}
    spec = write_spec(tmp_path, server.base_url, cooldown_s=600)
    server.enqueue(*[Reply.error(500, "down")] * 3)

    # Process A: three failures open the circuit in Redis.
    assert worker("agent", str(spec), "3", env=env) == ["backup answer"] * 3
    assert len(server.requests) == 3
    key = f"{redis_prefix}circuit:openai@127.0.0.1:{server.port}/gpt-4.1-mini"
    client = redis_client(redis_url)
    assert BreakerState.from_json(client.get(key)).state == "open"

    # Process B never called the upstream: it was refused by A's circuit.
    assert worker("agent", str(spec), "2", env=env) == ["backup answer"] * 2
    assert len(server.requests) == 3

    # After the cool-down (the agents now read a short one, so the circuit opened long
    # enough ago), B's probe succeeds and closes the circuit for everyone.
    write_spec(tmp_path, server.base_url, cooldown_s=0.5)
    server.enqueue(*[Reply.completion(content="primary is back")] * 5)
    deadline = time.monotonic() + 60
    while worker("agent", str(spec), "1", env=env) != ["primary is back"]:
        assert time.monotonic() < deadline, "no probe was let through after the cool-down"
    assert client.get(key) is None  # closed and clean: the key is gone
    assert worker("agent", str(spec), "1", env=env) == ["primary is back"]  # A's view too
    client.close()


def test_two_processes_racing_open_the_circuit_once_and_let_one_probe_through(
    redis_url: str, redis_prefix: str
) -> None:
    args = ("race", redis_url, redis_prefix, f"{redis_prefix}barrier", "2", "40")
    with (
        subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE) as a,
        subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE) as b,
    ):
        out_a, _ = a.communicate(timeout=120)
        out_b, _ = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0
    results = [json.loads(out_a), json.loads(out_b)]

    assert all(r["kind"] == "redis" for r in results)
    transitions = [t for r in results for t in r["transitions"]]
    # 80 failures settled at once by two processes: the circuit opened exactly once.
    assert transitions.count("tether.circuit.open") == 1
    assert transitions.count("tether.circuit.half_open") == 1
    # 80 calls at once after the cool-down: exactly one probe (half_open_probes = 1).
    assert sum(r["probes"] for r in results) == 1


# ------------------------------------------------------------------------------- Redis trouble


async def test_redis_down_keeps_circuits_locally_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    store = RedisBreakerStore(url, prefix="tether-test-down:")
    inner = Flaky()
    model = CircuitBreakerModel(inner, CircuitBreaker("test/flaky", CONFIG, store))

    with caplog.at_level(logging.WARNING, logger="tether.resilience"):
        errors = await fail_until_open(model, 5)

    assert inner.calls == 2 and all(isinstance(e, CircuitOpenError) for e in errors[2:])
    assert store.kind == "local"
    down = [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(down) == 1
    assert "hunter2" not in caplog.text and ":***@127.0.0.1" in down[0].getMessage()
    await store.aclose()


async def test_a_redis_that_never_answers_is_not_waited_for_on_every_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = SilentServer()
    try:
        store = RedisBreakerStore(f"redis://127.0.0.1:{silent.port}/0", timeout_s=0.2)
        inner = Flaky()
        model = CircuitBreakerModel(inner, CircuitBreaker("test/flaky", CONFIG, store))
        with caplog.at_level(logging.WARNING, logger="tether.resilience"):
            errors = await fail_until_open(model, 4)
        assert inner.calls == 2 and isinstance(errors[-1], CircuitOpenError)
        assert store.kind == "local"
        assert len([r for r in caplog.records if "cannot be used" in r.getMessage()]) == 1
        await store.aclose()
    finally:
        silent.close()


async def test_circuits_are_shared_again_once_redis_is_back(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    port = free_port()
    store = RedisBreakerStore(f"redis://127.0.0.1:{port}/0", prefix=redis_prefix, retry_s=0)
    breaker = CircuitBreaker("test/flaky", CONFIG, store)

    with caplog.at_level(logging.WARNING, logger="tether.resilience"):
        await breaker.settle(await breaker.admit(), "failure")  # nothing listens yet
        assert store.kind == "local"
        proxy = TcpProxy(port, (real["host"], real["port"]))
        try:
            await breaker.settle(await breaker.admit(), "failure")
            assert store.kind == "redis"
            # The failure went to Redis (one of them: the first was kept locally).
            client = redis_client(redis_url)
            stored = BreakerState.from_json(client.get(store.key_of("test/flaky")))
            assert stored.state == "closed" and len(stored.failures) == 1
            client.close()
        finally:
            await store.aclose()
            proxy.close()
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_a_key_holding_something_else_reads_as_closed_and_is_written_over(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisBreakerStore(redis_url, prefix=redis_prefix)
    key = store.key_of("test/flaky")
    client = redis_client(redis_url)
    client.set(key, b"\xff not a circuit")
    breaker = CircuitBreaker("test/flaky", CONFIG, store)

    with caplog.at_level(logging.WARNING, logger="tether.resilience"):
        await breaker.settle(await breaker.admit(), "failure")

    assert "does not hold a circuit state" in caplog.text
    assert BreakerState.from_json(client.get(key)).failures != ()
    assert store.kind == "redis"
    # A key of another type: Redis answers with an error; kept locally, with a warning.
    client.delete(key)
    client.rpush(key, "a list")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tether.resilience"):
        await breaker.settle(await breaker.admit(), "failure")
    assert store.kind == "local" and "WRONGTYPE" in caplog.text
    client.close()
    await store.aclose()


async def test_the_key_expires_when_the_circuit_is_left_alone(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisBreakerStore(redis_url, prefix=redis_prefix)
    breaker = CircuitBreaker("test/flaky", CONFIG, store)
    await breaker.settle(await breaker.admit(), "failure")
    client = redis_client(redis_url)
    ttl = client.pttl(store.key_of("test/flaky"))
    assert 0 < ttl <= (CONFIG.window_s + 2 * CONFIG.cooldown_s + 60) * 1000
    client.close()
    await store.aclose()


# ------------------------------------------------------------------------------- setup


def test_shared_redis_without_a_url_is_an_error_naming_the_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", cooldown_s=1)
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(spec, trace=False)
    assert str(spec) in info.value.message and "TETHER_REDIS_URL is not set" in info.value.message


def test_a_malformed_redis_url_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_REDIS_URL", "http://:pw-secret@127.0.0.1:6379")
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", cooldown_s=1)
    with pytest.raises(TetherError) as info:
        Agent.from_yaml(spec, trace=False)
    assert "invalid Redis URL" in str(info.value) and "pw-secret" not in str(info.value)


async def test_auto_uses_redis_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str
) -> None:
    monkeypatch.setenv("TETHER_REDIS_URL", redis_url)
    monkeypatch.setenv("TETHER_REDIS_PREFIX", redis_prefix)
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", cooldown_s=1)
    spec.write_text(spec.read_text().replace("shared: redis", "shared: auto"))
    agent = Agent.from_yaml(spec, trace=False)
    primary = agent.harness.chain.primary
    assert isinstance(primary, CircuitBreakerModel)
    assert isinstance(primary.breaker.store, RedisBreakerStore)
    assert primary.breaker.store.prefix == redis_prefix
    spec.write_text(spec.read_text().replace("shared: auto", "shared: local"))
    local = Agent.from_yaml(spec, trace=False).harness.chain.primary
    assert isinstance(local, CircuitBreakerModel) and local.breaker.store.kind == "local"
    await agent.aclose()


# ------------------------------------------------------------------------------- hostile


async def test_a_probe_killed_mid_call_does_not_wedge_the_circuit(
    redis_url: str, redis_prefix: str
) -> None:
    import signal

    cooldown = "2"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "probe",
        redis_url,
        redis_prefix,
        cooldown,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"probing"
        store = RedisBreakerStore(redis_url, prefix=redis_prefix)
        config = CircuitBreakerConfig(failures=1, window_s=60, cooldown_s=float(cooldown))
        breaker = CircuitBreaker("test@127.0.0.1:1/killed", config, store)
        # The probe slot is taken: another process is refused, without calling anything.
        with pytest.raises(CircuitOpenError) as info:
            await breaker.admit()
        assert "half-open" in info.value.message
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9 mid-call: its slot is never given back
        await proc.wait()

    deadline = time.monotonic() + 30
    while True:  # the dead probe's lease (one cool-down) runs out
        try:
            ticket = await breaker.admit()
            break
        except CircuitOpenError:
            assert time.monotonic() < deadline, "the dead probe's slot was never freed"
            await asyncio.sleep(0.05)
    assert ticket.probe_id is not None
    await breaker.settle(ticket, "success")
    assert (await breaker.state()).state == "closed"
    await store.aclose()


def test_run_sync_from_threads_shares_redis_across_event_loops(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    from tether import ScriptedModel

    monkeypatch.setenv("TETHER_REDIS_URL", redis_url)
    monkeypatch.setenv("TETHER_REDIS_PREFIX", redis_prefix)
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", cooldown_s=1)
    agent = Agent.from_yaml(spec, model=ScriptedModel([{"text": "fine"}]), trace=False)
    outputs: list[str] = []

    def runs() -> None:
        for _ in range(3):  # each run_sync: a new event loop, its own Redis connection
            outputs.append(agent.run_sync("hi").output)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=runs) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert outputs == ["fine"] * 9
    primary = agent.harness.chain.primary
    assert isinstance(primary, CircuitBreakerModel) and primary.breaker.store.kind == "redis"
    assert "cannot be used" not in caplog.text


async def test_circuits_stay_shared_when_redis_closed_the_connection_meanwhile(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted (or a proxy dropped the idle connection) between two calls: the next
    change connects again and goes to Redis, not to this process alone for retry_s."""
    import redis

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy(0, (real["host"], real["port"]))
    store = RedisBreakerStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix)
    breaker = CircuitBreaker("test/flaky", CONFIG, store)
    try:
        with caplog.at_level(logging.WARNING, logger="tether.resilience"):
            await breaker.settle(await breaker.admit(), "failure")
            proxy.drop()
            pool = store._client().connection_pool
            deadline = time.monotonic() + 10  # the loop reads the close, as between two calls
            while not all([await c.can_read() for c in pool._available_connections]):
                assert time.monotonic() < deadline, "the client never saw its connection closed"
                await asyncio.sleep(0.01)
            await breaker.settle(await breaker.admit(), "failure")
        assert store.kind == "redis", [r.getMessage() for r in caplog.records]
        client = redis_client(redis_url)
        stored = BreakerState.from_json(client.get(store.key_of("test/flaky")))
        client.close()
        assert stored.state == "open"
    finally:
        await store.aclose()
        proxy.close()


async def test_a_key_holding_json_nested_too_deeply_reads_as_closed(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # json.loads raises RecursionError, not ValueError, for it: the breaker's call failed.
    store = RedisBreakerStore(redis_url, prefix=redis_prefix)
    key = store.key_of("test/deep")
    client = redis_client(redis_url)
    client.set(key, "[" * 100_000 + "]" * 100_000)
    breaker = CircuitBreaker("test/deep", CONFIG, store)
    try:
        with caplog.at_level(logging.WARNING, logger="tether.resilience"):
            await breaker.settle(await breaker.admit(), "failure")

        assert "does not hold a circuit state" in caplog.text and store.kind == "redis"
        assert BreakerState.from_json(client.get(key)).failures != ()
    finally:
        client.close()
        await store.aclose()


@pytest.mark.parametrize("close", [False, True], ids=["timeout", "reset"])
async def test_a_failure_whose_reply_was_lost_is_counted_once(
    redis_url: str, redis_prefix: str, close: bool
) -> None:
    """Redis ran the compare-and-set of a failure and its reply was lost: a client that sends
    it again (a URL asking redis-py for retries) got "changed meanwhile", read the new state
    and counted the failure again, opening a circuit (of 2 failures) on one."""
    import redis

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = ReplyDropper((real["host"], int(real["port"])), b"EVALSHA", close=close)
    url = f"redis://127.0.0.1:{proxy.port}/0?retry_on_timeout=true"
    store = RedisBreakerStore(url, prefix=redis_prefix, timeout_s=0.5)
    breaker = CircuitBreaker("test/flaky", CONFIG, store)
    try:
        await breaker.settle(await breaker.admit(), "failure")
        assert proxy.dropped.is_set()
        client = redis_client(redis_url)
        stored = BreakerState.from_json(client.get(store.key_of("test/flaky")))
        client.close()
        assert (stored.state, len(stored.failures)) == ("closed", 1)
    finally:
        await store.aclose()
        proxy.close()


def test_a_url_asking_redis_py_to_retry_on_named_errors_is_refused(redis_url: str) -> None:
    """``?retry_on_error=...``: redis-py's first timeout then fails with ``TypeError``, which
    the breaker does not take for a Redis failure (tests/test_budget_ledger.py shows it)."""
    with pytest.raises(TetherError) as info:
        RedisBreakerStore(f"{redis_url}?retry_on_error=TimeoutError")
    assert "sets retry_on_error, which Tether cannot use" in info.value.message
    assert info.value.hint is not None and "remove the option" in info.value.hint
