"""Resilience: a circuit breaker per model endpoint (kept in this process or shared through
Redis), wrapping each model of a run's chain so an endpoint that keeps failing is skipped
at once for a cool-down; and what a spec's ``resilience`` section turns into.

The per-call timeout is ``OpenAIChatModel``'s ``timeout_s`` (the spec's ``model.timeout_s``);
the degraded answer is given by the run scope (``Harness(degraded_answer=...)``).
"""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports
from tether.resilience.breaker import (
    EVENT_CIRCUIT_CLOSED,
    EVENT_CIRCUIT_HALF_OPEN,
    EVENT_CIRCUIT_OPEN,
    CircuitBreaker,
    CircuitOpenError,
    Ticket,
    endpoint_of,
    verdict_of,
)
from tether.resilience.model import CircuitBreakerModel, with_circuit_breakers
from tether.resilience.setup import (
    breaker_store_for,
    missing_redis,
    resilient_models,
    timeout_warnings,
)
from tether.resilience.state import BreakerState, CircuitState, Verdict
from tether.resilience.stores import BreakerStore, LocalBreakerStore, default_local_store

if TYPE_CHECKING:
    from tether.resilience.redis_store import RedisBreakerStore, shared_redis_store

# The Redis client loads only when a Redis store is made.
__getattr__, __dir__ = lazy_exports(
    globals(), {".redis_store": ("RedisBreakerStore", "shared_redis_store")}
)

__all__ = [
    "EVENT_CIRCUIT_CLOSED",
    "EVENT_CIRCUIT_HALF_OPEN",
    "EVENT_CIRCUIT_OPEN",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakerModel",
    "CircuitOpenError",
    "CircuitState",
    "LocalBreakerStore",
    "RedisBreakerStore",
    "Ticket",
    "Verdict",
    "breaker_store_for",
    "default_local_store",
    "endpoint_of",
    "missing_redis",
    "resilient_models",
    "shared_redis_store",
    "timeout_warnings",
    "verdict_of",
    "with_circuit_breakers",
]
