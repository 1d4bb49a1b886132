"""The circuit breaker's state machine and its model wrapper, in one process: transitions on
a clock the test moves (the breaker takes its store's clock), verdicts of each kind of
failure, probes, streams, and the events a run records. The fault injection against a real
upstream is in ``test_resilience_upstream.py``; Redis in ``test_resilience_redis.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fakes.models import FailingModel
from tether.core import ProviderError
from tether.providers import (
    Message,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    StreamEvent,
    TextDelta,
    call_events_to,
    stream_of,
)
from tether.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerModel,
    CircuitOpenError,
    LocalBreakerStore,
    endpoint_of,
    verdict_of,
)
from tether.spec import CircuitBreakerConfig


class Clock:
    """Time the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyModel(FailingModel):
    """Fails like an upstream 503 while ``failing`` (the test switches it), else answers;
    counts the calls that reached it."""

    def __init__(self, name: str = "flaky") -> None:
        super().__init__(name)
        self.failing = True

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self.failing:
            return await super().complete(request)
        self.calls += 1
        return ModelResponse(content="fine")


def ask() -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content="hi")])


def breaker_for(
    model: Any, clock: Clock, **config: Any
) -> tuple[CircuitBreakerModel, LocalBreakerStore]:
    store = LocalBreakerStore(clock=clock)
    cfg = CircuitBreakerConfig(**{"failures": 3, "window_s": 10, "cooldown_s": 5, **config})
    return CircuitBreakerModel(model, CircuitBreaker(endpoint_of(model), cfg, store)), store


async def fail(model: CircuitBreakerModel) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await model.complete(ask())
    return info.value


async def test_opens_after_n_failures_within_the_window_and_refuses_without_calling() -> None:
    clock, inner = Clock(), FlakyModel()
    model, store = breaker_for(inner, clock)

    for _ in range(2):
        assert not isinstance(await fail(model), CircuitOpenError)
    assert store.state(model.breaker.endpoint).state == "closed"
    assert not isinstance(await fail(model), CircuitOpenError)  # the third opens it
    assert store.state(model.breaker.endpoint).state == "open"

    refused = await fail(model)
    assert isinstance(refused, CircuitOpenError)
    assert refused.retryable and refused.endpoint == "test/flaky"
    assert str(refused).startswith("circuit open for test/flaky: refused for 5.0s more after")
    assert "(3 within 10s open it" in refused.message
    assert inner.calls == 3  # the refused call never reached the model


async def test_failures_outside_the_window_do_not_add_up() -> None:
    clock, inner = Clock(), FlakyModel()
    model, store = breaker_for(inner, clock)

    for _ in range(10):
        await fail(model)
        clock.now += 6  # two failures at most within any 10 s
    assert store.state(model.breaker.endpoint).state == "closed"
    assert inner.calls == 10


async def test_half_open_after_the_cooldown_then_a_successful_probe_closes() -> None:
    clock, inner = Clock(), FlakyModel()
    model, store = breaker_for(inner, clock)
    for _ in range(3):
        await fail(model)

    clock.now += 4.9
    assert isinstance(await fail(model), CircuitOpenError)
    clock.now += 0.2
    inner.failing = False
    assert (await model.complete(ask())).content == "fine"  # the probe
    assert store.state(model.breaker.endpoint) == BreakerState()  # closed, failures forgotten
    assert inner.calls == 4


async def test_a_failed_probe_opens_the_circuit_again_for_a_whole_cooldown() -> None:
    clock, inner = Clock(), FlakyModel()
    model, store = breaker_for(inner, clock)
    for _ in range(3):
        await fail(model)
    clock.now += 5

    assert not isinstance(await fail(model), CircuitOpenError)  # the probe, failing
    st = store.state(model.breaker.endpoint)
    assert st.state == "open" and st.opened_at == clock.now
    clock.now += 4.9
    assert isinstance(await fail(model), CircuitOpenError)
    assert inner.calls == 4


async def test_half_open_lets_only_the_configured_probes_through_at_a_time() -> None:
    clock = Clock()
    release, both_in = asyncio.Event(), asyncio.Event()
    reached = 0

    class Slow(FlakyModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            nonlocal reached
            reached += 1
            if reached == 2:
                both_in.set()
            await release.wait()
            return ModelResponse(content="recovered")

    inner = Slow()
    model, store = breaker_for(inner, clock, half_open_probes=2)
    endpoint = model.breaker.endpoint
    for _ in range(3):
        await model.breaker.settle(await model.breaker.admit(), "failure")
    clock.now += 5

    probes = [asyncio.create_task(model.complete(ask())) for _ in range(2)]
    await both_in.wait()
    assert isinstance(await fail(model), CircuitOpenError)  # a third waits for them
    assert "half-open" in (await fail(model)).message
    release.set()
    assert [(await p).content for p in probes] == ["recovered", "recovered"]
    assert store.state(endpoint).state == "closed"


async def test_a_cancelled_probe_gives_its_slot_back() -> None:
    clock = Clock()
    started = asyncio.Event()

    class Hangs(FlakyModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("not reached")

    model, store = breaker_for(Hangs(), clock)
    for _ in range(3):
        await model.breaker.settle(await model.breaker.admit(), "failure")
    clock.now += 5
    probe = asyncio.create_task(model.complete(ask()))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    st = store.state(model.breaker.endpoint)
    assert st.state == "half_open" and st.probes == ()  # a cancel says nothing: next call probes
    ticket = await model.breaker.admit()
    assert ticket.probe_id is not None


async def test_a_probe_whose_process_died_lets_another_in_after_its_lease() -> None:
    clock, inner = Clock(), FlakyModel()
    model, store = breaker_for(inner, clock)
    for _ in range(3):
        await fail(model)
    clock.now += 5
    orphan = await model.breaker.admit()  # admitted, never settled (its process was killed)
    assert orphan.probe_id is not None
    assert isinstance(await fail(model), CircuitOpenError)

    clock.now += 5  # the lease (one cool-down) runs out
    inner.failing = False
    assert (await model.complete(ask())).content == "fine"
    assert store.state(model.breaker.endpoint).state == "closed"


@pytest.mark.parametrize(
    ("error", "counted"),
    [
        (ProviderError("503", status_code=503, retryable=True), True),
        (ProviderError("429", status_code=429, retryable=True), True),
        (ProviderError("timed out after 1s (gave up after 4 attempts)", retryable=True), True),
        (ProviderError("400: bad request", status_code=400), False),
        (ProviderError("401: check the key", status_code=401, misconfigured=True), False),
        (ProviderError("404 no such model", status_code=404, misconfigured=True), False),
        (
            ProviderError("unknown model", status_code=400, retryable=True, misconfigured=True),
            False,
        ),
        (CircuitOpenError("other", "circuit open for other", retry_in=1.0), False),
        (asyncio.CancelledError(), False),
        (RuntimeError("a bug in a model"), False),
    ],
)
async def test_which_failures_count(error: BaseException, counted: bool) -> None:
    assert (verdict_of(error) == "failure") is counted

    class Raises(FlakyModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            self.calls += 1
            raise error

    inner = Raises()
    model, store = breaker_for(inner, Clock(), failures=1)
    with pytest.raises(type(error)):
        await model.complete(ask())
    assert store.state(model.breaker.endpoint).state == ("open" if counted else "closed")


async def test_endpoint_names_provider_server_and_model() -> None:
    class Served(FlakyModel):
        def __init__(self, server: tuple[str, int]) -> None:
            super().__init__("gpt-4.1-mini")
            self.server = server

    assert endpoint_of(Served(("api.example.com", 443))) == (
        "test@api.example.com:443/gpt-4.1-mini"
    )
    assert endpoint_of(Served(("::1", 8080))) == "test@[::1]:8080/gpt-4.1-mini"
    assert endpoint_of(FlakyModel("x")) == "test/x"
    wrapped, _ = breaker_for(Served(("127.0.0.1", 9)), Clock())
    assert (wrapped.provider, wrapped.name, wrapped.server) == (
        "test",
        "gpt-4.1-mini",
        ("127.0.0.1", 9),
    )
    assert breaker_for(FlakyModel(), Clock())[0].server is None


# ------------------------------------------------------------------------------- streams


class StreamsThenFails:
    """Streams ``pieces`` words, then fails with a transient error (``fail=True``) or ends."""

    def __init__(self, pieces: int, *, fail: bool) -> None:
        self.pieces, self.fail = pieces, fail
        self.calls = 0

    provider = "test"
    name = "streamer"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise AssertionError("streamed only")

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        inner = ScriptedModel([{"text": " ".join(["word"] * self.pieces)}])
        count = 0
        async for event in stream_of(inner, request):
            if isinstance(event, TextDelta):
                count += 1
            yield event
            if self.fail and count == self.pieces:
                raise ProviderError("the stream was cut", retryable=True)


async def drain(model: CircuitBreakerModel) -> tuple[list[StreamEvent], BaseException | None]:
    events: list[StreamEvent] = []
    try:
        async for event in model.stream(ask()):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None


async def test_a_stream_cut_midway_counts_as_a_failure_and_a_whole_one_as_a_success() -> None:
    clock = Clock()
    cut = StreamsThenFails(2, fail=True)
    model, store = breaker_for(cut, clock, failures=2)
    for _ in range(2):
        events, error = await drain(model)
        assert len([e for e in events if isinstance(e, TextDelta)]) == 2 and error is not None
    events, error = await drain(model)
    assert events == [] and isinstance(error, CircuitOpenError) and cut.calls == 2

    clock.now += 5
    cut.fail = False
    events, error = await drain(model)
    assert error is None and events
    assert store.state(model.breaker.endpoint).state == "closed"


async def test_a_consumer_that_stops_reading_a_probe_early_gives_its_slot_back() -> None:
    clock = Clock()
    inner = StreamsThenFails(50, fail=False)
    model, store = breaker_for(inner, clock, failures=1)
    await model.breaker.settle(await model.breaker.admit(), "failure")
    clock.now += 5

    events = model.stream(ask())
    await anext(events)
    await events.aclose()  # type: ignore[attr-defined]
    st = store.state(model.breaker.endpoint)
    assert st.state == "half_open" and st.probes == ()


async def test_a_model_that_cannot_stream_is_streamed_in_one_piece() -> None:
    model, _ = breaker_for(ScriptedModel([{"text": "one two"}]), Clock())
    events, error = await drain(model)
    assert error is None and "".join(e.text for e in events if isinstance(e, TextDelta)) == (
        "one two"
    )


# ------------------------------------------------------------------------------- events


async def test_transitions_are_reported_to_the_call_in_progress() -> None:
    clock, inner = Clock(), FlakyModel()
    model, _ = breaker_for(inner, clock, failures=2)
    seen: list[tuple[str, dict[str, Any]]] = []

    with call_events_to(lambda name, attributes: seen.append((name, attributes))):
        await fail(model)
        assert seen == []
        await fail(model)
        assert seen == [
            (
                "tether.circuit.open",
                {
                    "endpoint": "test/flaky",
                    "store": "local",
                    "failures": 2,
                    "window_s": 10.0,
                    "cooldown_s": 5.0,
                },
            )
        ]
        await fail(model)  # refused: no transition
        clock.now += 5
        inner.failing = False
        await model.complete(ask())
    assert [name for name, _ in seen] == [
        "tether.circuit.open",
        "tether.circuit.half_open",
        "tether.circuit.closed",
    ]
    assert all(a["endpoint"] == "test/flaky" for _, a in seen)
    inner.failing = True
    await fail(model)
    await fail(model)  # opens it again, outside any call: nothing recorded, nothing raised
    assert isinstance(await fail(model), CircuitOpenError)
    assert len(seen) == 3


async def test_breakers_given_one_store_share_the_endpoints_circuit() -> None:
    clock = Clock()
    store = LocalBreakerStore(clock=clock)
    config = CircuitBreakerConfig(failures=2, window_s=10, cooldown_s=5)
    first, second = FlakyModel("shared"), FlakyModel("shared")
    a = CircuitBreakerModel(first, CircuitBreaker(endpoint_of(first), config, store))
    b = CircuitBreakerModel(second, CircuitBreaker(endpoint_of(second), config, store))
    await fail(a)
    await fail(b)
    assert isinstance(await fail(a), CircuitOpenError)
    assert isinstance(await fail(b), CircuitOpenError)
    other = FailingModel("other")
    c = CircuitBreakerModel(other, CircuitBreaker(endpoint_of(other), config, store))
    assert not isinstance(await fail(c), CircuitOpenError)


def test_state_round_trips_and_foreign_values_are_refused() -> None:
    st = BreakerState(state="half_open", opened_at=12.5, probes=(("p1", 20.0),))
    assert BreakerState.from_json(st.to_json()) == st
    assert BreakerState.from_json(None) == BreakerState()
    for raw in ("[]", '{"v": 2}', '{"v": 1, "s": "sideways"}', "not json", '{"v": 1, "s": "open"}'):
        with pytest.raises((ValueError, KeyError)):
            BreakerState.from_json(raw)


# ------------------------------------------------------------------------------- hostile


async def test_64_concurrent_calls_on_a_half_open_circuit_let_one_probe_through() -> None:
    clock = Clock()
    gate = asyncio.Event()

    class Waits(FlakyModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            self.calls += 1
            await gate.wait()
            return ModelResponse(content="ok")

    inner = Waits()
    model, store = breaker_for(inner, clock, failures=1)
    await model.breaker.settle(await model.breaker.admit(), "failure")
    clock.now += 5

    calls = [asyncio.create_task(model.complete(ask())) for _ in range(64)]
    await asyncio.sleep(0)  # every call has asked the breaker by now (the store never waits)
    gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert inner.calls == 1
    assert sum(isinstance(o, CircuitOpenError) for o in outcomes) == 63
    assert store.state(model.breaker.endpoint).state == "closed"


def test_threads_sharing_a_local_store_open_the_circuit_once() -> None:
    import threading

    store = LocalBreakerStore()
    config = CircuitBreakerConfig(failures=5, window_s=60, cooldown_s=60)
    opened: list[str] = []
    lock = threading.Lock()

    def hammer() -> None:
        async def main() -> None:
            breaker = CircuitBreaker("test/threads", config, store)

            def note(name: str, _: dict[str, Any]) -> None:
                with lock:
                    opened.append(name)

            with call_events_to(note):
                for _ in range(50):
                    try:
                        ticket = await breaker.admit()
                    except CircuitOpenError:
                        continue
                    await breaker.settle(ticket, "failure")

        asyncio.run(main())

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == ["tether.circuit.open"]
    assert store.state("test/threads").state == "open"


async def test_a_model_already_behind_a_breaker_is_not_wrapped_twice() -> None:
    from tether.resilience import with_circuit_breakers

    clock, inner = Clock(), FlakyModel()
    model, store = breaker_for(inner, clock, failures=1)
    [again] = with_circuit_breakers([model], CircuitBreakerConfig(failures=1), store)
    assert again is model
    await fail(model)
    clock.now += 5
    inner.failing = False
    assert (await again.complete(ask())).content == "fine"  # the probe is not refused by itself


async def test_a_harness_of_ones_own_gets_breakers_and_the_degraded_answer() -> None:
    from tether import Harness, Outcome
    from tether.resilience import with_circuit_breakers

    first, second = FailingModel("first"), FailingModel("second")
    store = LocalBreakerStore()
    harness = Harness(
        models=with_circuit_breakers([first, second], CircuitBreakerConfig(failures=1), store),
        degraded_answer="Back soon.",
        trace=False,
    )
    for _ in range(2):
        async with harness.open_run("hi", agent="own-loop") as run:
            await run.input()
            step = await run.model_call()
        assert step.stopped and step.outcome == Outcome.ERROR
        assert run.result().output == "Back soon."
    assert (first.calls, second.calls) == (1, 1)  # the second run was refused by both circuits
    assert "circuit open" in (run.result().error or "")
