"""From a spec's ``resilience`` section to a model chain: where circuits are kept, which
models get a breaker, and what ``tether validate`` warns about timeouts."""

from __future__ import annotations

from collections.abc import Sequence

from tether.core import SpecError
from tether.core.settings import redis_from_env
from tether.providers import Model
from tether.resilience.model import with_circuit_breakers
from tether.resilience.stores import BreakerStore, default_local_store
from tether.spec import AgentSpec, CircuitBreakerConfig, ResilienceConfig


def breaker_store_for(config: CircuitBreakerConfig) -> BreakerStore:
    """The store ``config.shared`` asks for: Redis at ``TETHER_REDIS_URL`` (one store per URL
    and prefix in a process) or the process-wide local store."""
    url, prefix = redis_from_env()
    if config.shared == "local" or (config.shared == "auto" and url is None):
        return default_local_store()
    if url is None:
        raise SpecError(
            "resilience.circuit_breaker.shared is 'redis' but TETHER_REDIS_URL is not set",
            hint="export TETHER_REDIS_URL=redis://HOST:6379/0, or set shared: auto to keep "
            "circuits in this process when no Redis is configured",
        )
    from tether.resilience.redis_store import shared_redis_store

    return shared_redis_store(url, prefix)


def missing_redis(config: ResilienceConfig) -> list[str]:
    """``["TETHER_REDIS_URL"]`` when the spec wants circuits shared through Redis and the
    environment names none (what ``tether validate`` reports), else nothing."""
    breaker = config.circuit_breaker
    if breaker is not None and breaker.shared == "redis" and redis_from_env()[0] is None:
        return ["TETHER_REDIS_URL"]
    return []


def resilient_models(
    models: Sequence[Model], config: ResilienceConfig, store: BreakerStore | None = None
) -> list[Model]:
    """The chain as a run uses it: each model behind a circuit breaker when the spec asks for
    one (``store`` overrides where circuits are kept), else the models as they are."""
    breaker = config.circuit_breaker
    if breaker is None:
        return list(models)
    return with_circuit_breakers(models, breaker, store or breaker_store_for(breaker))


def timeout_warnings(spec: AgentSpec) -> list[str]:
    """Where the per-call timeouts (``timeout_s`` of each HTTP attempt, retried
    ``max_retries`` times) can outlast the run's ``limits.timeout_s``, so a model that hangs
    ends the run (``limit_exceeded``) before a fallback or the degraded answer is reached."""
    budget = spec.limits.timeout_s
    spent = 0.0
    fields = ["model", *(f"fallback_models[{i}]" for i in range(len(spec.fallback_models)))]
    for name, config in zip(fields, (spec.model, *spec.fallback_models), strict=True):
        if spent >= budget:
            return [
                f"{name} may never be tried: the models before it can take {spent:g}s "
                f"(timeout_s x (max_retries + 1) each) when they hang, and the run stops at "
                f"limits.timeout_s ({budget:g}s); lower their timeout_s or max_retries"
            ]
        if config.provider == "openai":
            spent += config.timeout_s * (config.max_retries + 1)
    if spec.resilience.degraded_answer is not None and spent >= budget:
        return [
            f"resilience.degraded_answer may never be given when the models hang: they can "
            f"take {spent:g}s (timeout_s x (max_retries + 1) each) and the run stops at "
            f"limits.timeout_s ({budget:g}s) with outcome limit_exceeded; lower their "
            "timeout_s or max_retries"
        ]
    return []
