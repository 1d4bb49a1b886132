"""The spec's ``resilience`` section: circuit breakers and the degraded answer.

Kept apart from ``model.py`` (which holds the rest of ``AgentSpec``) so this section can grow
without touching the others. The per-call timeout is ``model.timeout_s`` (``ModelConfig``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tether.spec.numbers import refuse_bool

MAX_DEGRADED_ANSWER_CHARS = 10_000
"""Longest ``degraded_answer``: it is a message to a user, not a document."""


class CircuitBreakerConfig(BaseModel):
    """A circuit breaker on each model endpoint of the chain (the primary and each fallback).

    ``failures`` transient failures (5xx, 429, timeouts, connection errors: the provider's
    retryable errors, each counted once its retries are spent) within ``window_s`` open the
    circuit; an open circuit refuses calls at once (the chain moves on to the next model) for
    ``cooldown_s``; then ``half_open_probes`` calls at a time are let through as probes: a
    probe that succeeds closes the circuit, one that fails opens it again. Errors that
    retrying cannot fix (400, 401, 403, 404, an unknown model) are not counted: they say the
    endpoint is up and the request or the setup is wrong."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    failures: int = Field(default=5, ge=1, le=1_000)
    """Transient failures within ``window_s`` that open the circuit."""
    window_s: float = Field(default=60.0, gt=0, le=86_400)
    """The window failures are counted in, in seconds (a sliding window)."""
    cooldown_s: float = Field(default=30.0, gt=0, le=86_400)
    """How long an open circuit refuses calls before it lets probes through, in seconds."""
    half_open_probes: int = Field(default=1, ge=1, le=100)
    """Probe calls let through at a time once the cool-down is over."""
    shared: Literal["auto", "local", "redis"] = "auto"
    """Where the state lives: ``local`` (this process), ``redis`` (shared by every process
    using the same Redis, ``TETHER_REDIS_URL``; an error at load if it is not set), ``auto``
    (Redis when ``TETHER_REDIS_URL`` is set, else local)."""

    @field_validator("failures", "window_s", "cooldown_s", "half_open_probes", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return refuse_bool(value)


class ResilienceConfig(BaseModel):
    """What happens when model providers fail, beyond trying ``fallback_models`` in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    circuit_breaker: CircuitBreakerConfig | None = None
    """A circuit breaker per model endpoint; ``true`` or ``{}`` for the defaults, omitted or
    ``false`` for none."""
    degraded_answer: str | None = Field(default=None, max_length=MAX_DEGRADED_ANSWER_CHARS)
    """The run's answer when every model of the chain failed for a reason that may pass (down,
    overloaded, timed out, circuits open) in place of the built-in apology. The run still ends
    with outcome ``error``; its ``stop_reason`` says the degraded answer was given."""

    @field_validator("circuit_breaker", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        # `circuit_breaker: true` reads better than `circuit_breaker: {}` for the defaults.
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("degraded_answer")
    @classmethod
    def _not_blank(cls, text: str | None) -> str | None:
        if text is not None and not text.strip():
            raise ValueError("must not be empty (omit it for the built-in message)")
        return text
