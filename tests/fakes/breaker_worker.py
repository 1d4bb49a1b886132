"""A separate process sharing circuit breakers through Redis, for the two-process tests.

python breaker_worker.py agent SPEC RUNS
    Builds the agent from SPEC (TETHER_REDIS_URL and TETHER_REDIS_PREFIX from the
    environment), runs it RUNS times, prints each run's output as a JSON list.
python breaker_worker.py race REDIS_URL PREFIX BARRIER WORKERS CALLS
    Waits at the Redis barrier key BARRIER until WORKERS processes have arrived, then
    settles CALLS failures at once on one breaker (failures=5); waits again, until the
    cool-down is over, then makes CALLS admissions at once. Prints the transitions it
    saw and the probes it was let through as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from tether import Agent
from tether.providers import call_events_to
from tether.resilience import CircuitBreaker, CircuitOpenError, RedisBreakerStore
from tether.spec import CircuitBreakerConfig


async def agent_runs(spec: str, runs: int) -> list[str]:
    async with Agent.from_yaml(spec, trace=False) as agent:
        return [(await agent.run("hi")).output for _ in range(runs)]


async def barrier(url: str, key: str, workers: int) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.incr(key)
        deadline = time.monotonic() + 30
        while int(await client.get(key) or 0) < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"the other workers never reached {key}")
            await asyncio.sleep(0.005)
    finally:
        await client.aclose()


async def race(url: str, prefix: str, key: str, workers: int, calls: int) -> dict[str, Any]:
    store = RedisBreakerStore(url, prefix=prefix)
    config = CircuitBreakerConfig(failures=5, window_s=60, cooldown_s=0.5)
    breaker = CircuitBreaker("test@127.0.0.1:1/raced", config, store)
    seen: list[str] = []

    async def fail_once() -> None:
        try:
            ticket = await breaker.admit()
        except CircuitOpenError:
            return
        await breaker.settle(ticket, "failure")

    async def try_probe() -> bool:
        try:
            await breaker.admit()  # never settled: the slot stays taken
        except CircuitOpenError:
            return False
        return True

    with call_events_to(lambda name, _: seen.append(name)):
        await barrier(url, key + ":1", workers)
        await asyncio.gather(*(fail_once() for _ in range(calls)))
        await barrier(url, key + ":2", workers)
        state = await breaker.state()
        deadline = time.monotonic() + 30
        while state.state == "open":  # poll until the cool-down is over (on Redis's clock)
            redis_now = await store_time(url)
            if redis_now >= state.opened_at + config.cooldown_s:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the cool-down never ended")
            await asyncio.sleep(0.01)
        await barrier(url, key + ":3", workers)
        probes = sum(await asyncio.gather(*(try_probe() for _ in range(calls))))
    await store.aclose()
    return {"transitions": seen, "probes": probes, "kind": store.kind}


async def store_time(url: str) -> float:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        seconds, micros = await client.time()
        return float(seconds) + micros / 1_000_000
    finally:
        await client.aclose()


async def probe_and_hang(url: str, prefix: str, cooldown_s: float) -> None:
    store = RedisBreakerStore(url, prefix=prefix)
    config = CircuitBreakerConfig(failures=1, window_s=60, cooldown_s=cooldown_s)
    breaker = CircuitBreaker("test@127.0.0.1:1/killed", config, store)
    await breaker.settle(await breaker.admit(), "failure")
    deadline = time.monotonic() + 30
    while True:
        try:
            ticket = await breaker.admit()
            break
        except CircuitOpenError:
            if time.monotonic() > deadline:
                raise SystemExit("never got the probe") from None
            await asyncio.sleep(0.01)
    assert ticket.probe_id is not None
    print("probing", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "agent":
        print(json.dumps(asyncio.run(agent_runs(args[0], int(args[1])))))
    elif mode == "race":
        url, prefix, key, workers, calls = args
        print(json.dumps(asyncio.run(race(url, prefix, key, int(workers), int(calls)))))
    elif mode == "probe":
        asyncio.run(probe_and_hang(args[0], args[1], float(args[2])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
