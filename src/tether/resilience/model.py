"""``CircuitBreakerModel``: a ``Model`` behind a circuit breaker.

While the circuit is open the wrapper refuses at once with ``CircuitOpenError`` (retryable),
without calling the model, so a run's model chain moves on to its next model. Everything a
run reads from a model (``provider``, ``name``, ``server``) and ``aclose`` pass through, so
traces and prices are those of the wrapped model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from tether.providers import (
    Model,
    ModelRequest,
    ModelResponse,
    StreamEnd,
    StreamEvent,
    stream_of,
)
from tether.resilience.breaker import CircuitBreaker, endpoint_of, verdict_of
from tether.resilience.state import Verdict
from tether.resilience.stores import BreakerStore
from tether.spec import CircuitBreakerConfig


class CircuitBreakerModel:
    """``model`` with ``breaker`` in front of it: a ``StreamingModel`` (a wrapped model that
    cannot stream replies in one piece, as ``stream_of`` does)."""

    def __init__(self, model: Model, breaker: CircuitBreaker) -> None:
        self.model = model
        """The wrapped model."""
        self.breaker = breaker

    @property
    def provider(self) -> str:
        return self.model.provider

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def server(self) -> tuple[str, int] | None:
        """The wrapped model's ``server`` (host, port), ``None`` if it has none."""
        server: tuple[str, int] | None = getattr(self.model, "server", None)
        return server

    def __repr__(self) -> str:
        return f"CircuitBreakerModel({self.model!r}, endpoint={self.breaker.endpoint!r})"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        ticket = await self.breaker.admit()
        verdict: Verdict = "neutral"
        try:
            response = await self.model.complete(request)
            verdict = "success"
            return response
        except BaseException as exc:
            verdict = verdict_of(exc)
            raise
        finally:
            await self.breaker.settle(ticket, verdict)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        ticket = await self.breaker.admit()
        verdict: Verdict = "neutral"  # a consumer that stops reading early says nothing
        events: AsyncIterator[StreamEvent] | None = None
        try:
            events = stream_of(self.model, request)
            async for event in events:
                if isinstance(event, StreamEnd):
                    # The reply is whole: a consumer may close the stream right after it.
                    verdict = "success"
                yield event
            verdict = "success"
        except GeneratorExit:
            raise  # the consumer closed the stream: "success" after the end, else neutral
        except BaseException as exc:
            verdict = verdict_of(exc)
            raise
        finally:
            # A stream left early releases its connection now, not at garbage collection.
            close = getattr(events, "aclose", None)
            try:
                if close is not None:
                    await close()
            finally:
                await self.breaker.settle(ticket, verdict)

    async def aclose(self) -> None:
        """Close the wrapped model's clients and the store's connection for this event loop."""
        close = getattr(self.model, "aclose", None)
        if close is not None:
            await close()
        await self.breaker.store.aclose()


def with_circuit_breakers(
    models: Sequence[Model],
    config: CircuitBreakerConfig | None = None,
    store: BreakerStore | None = None,
) -> list[Model]:
    """Each model behind a breaker on its endpoint (``endpoint_of``), all in ``store``
    (default: the process-wide local store). A model already behind a breaker is left as it
    is: two breakers on one circuit would each take the half-open probe slot from the
    other."""
    return [
        m
        if isinstance(m, CircuitBreakerModel)
        else CircuitBreakerModel(m, CircuitBreaker(endpoint_of(m), config, store))
        for m in models
    ]
