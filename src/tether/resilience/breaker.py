"""``CircuitBreaker``: one endpoint's circuit, in a store, with its transitions reported.

A call asks ``admit()`` first (``CircuitOpenError`` when the circuit refuses it), then tells
``settle()`` how it ended. Transitions are logged and recorded as events on the chat span of
the call that caused them (``report_call_event``): ``tether.circuit.open`` on the failing call
that opened the circuit, ``tether.circuit.half_open`` on the first probe,
``tether.circuit.closed`` on the probe that closed it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

from tether.core import ProviderError
from tether.providers import Model, report_call_event
from tether.resilience.state import (
    Admission,
    BreakerState,
    Settled,
    Verdict,
    admit,
    settle,
)
from tether.resilience.stores import BreakerStore, default_local_store
from tether.spec import CircuitBreakerConfig

logger = logging.getLogger("tether.resilience")

EVENT_CIRCUIT_OPEN: Final = "tether.circuit.open"
EVENT_CIRCUIT_HALF_OPEN: Final = "tether.circuit.half_open"
EVENT_CIRCUIT_CLOSED: Final = "tether.circuit.closed"
_EVENTS: Final = {
    "open": EVENT_CIRCUIT_OPEN,
    "half_open": EVENT_CIRCUIT_HALF_OPEN,
    "closed": EVENT_CIRCUIT_CLOSED,
}


class CircuitOpenError(ProviderError):
    """A call refused by an open (or half-open and busy) circuit: the endpoint was not called.
    Retryable, so the chain moves on to the next model."""

    def __init__(self, endpoint: str, message: str, *, retry_in: float) -> None:
        super().__init__(
            message,
            hint="the endpoint failed repeatedly and is given time to recover "
            "(resilience.circuit_breaker); fallback_models serve meanwhile",
            retryable=True,
        )
        self.endpoint = endpoint
        """The endpoint whose circuit refused the call."""
        self.retry_in = retry_in
        """Seconds until the circuit lets a call through again (an estimate)."""


def endpoint_of(model: Model) -> str:
    """What a circuit is kept per: the provider, the server (host and port, for a model
    served over HTTP) and the model name, as ``openai@api.example.com:443/gpt-4.1-mini`` (no
    credentials). Two names on one server have two circuits (a proxy may route them to
    different backends); one name on two servers too."""
    server: tuple[str, int] | None = getattr(model, "server", None)
    if server is None:
        return f"{model.provider}/{model.name}"
    host, port = server
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{model.provider}@{host}:{port}/{model.name}"


def verdict_of(exc: BaseException) -> Verdict:
    """What a call's exception says about its endpoint: a retryable provider error (5xx, 429,
    timeout, connection error, a stream cut off) is a failure; anything else (a 400, a
    wrong key, an unknown model, a cancelled call, a refusal by another breaker) is not a
    sign of the endpoint's health."""
    if isinstance(exc, CircuitOpenError):
        return "neutral"
    if isinstance(exc, ProviderError) and exc.retryable and not exc.misconfigured:
        return "failure"
    return "neutral"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A call let through; hand it back to ``settle``."""

    probe_id: str | None
    """Set for a half-open probe."""


class CircuitBreaker:
    """The circuit of ``endpoint`` under ``config``, kept in ``store`` (default: the
    process-wide local store)."""

    def __init__(
        self,
        endpoint: str,
        config: CircuitBreakerConfig | None = None,
        store: BreakerStore | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config or CircuitBreakerConfig()
        self.store: BreakerStore = store if store is not None else default_local_store()
        c = self.config
        # Long enough to remember failures over the window and an opening past its cool-down
        # and its probes' leases.
        self._ttl_s = c.window_s + 2 * c.cooldown_s + 60.0

    async def admit(self) -> Ticket:
        """Let a call through, or raise ``CircuitOpenError``."""
        probe_id = uuid.uuid4().hex

        def change(st: BreakerState, now: float) -> tuple[BreakerState, Admission]:
            return admit(st, self.config, now, probe_id)

        admission = await self.store.update(self.endpoint, change, ttl_s=self._ttl_s)
        if admission.transition is not None:
            self._report(admission.transition, {})
        if not admission.allowed:
            raise CircuitOpenError(
                self.endpoint, self._refusal(admission), retry_in=admission.retry_in
            )
        return Ticket(probe_id if admission.probe else None)

    async def settle(self, ticket: Ticket, verdict: Verdict) -> None:
        """How a call let through ended."""
        if ticket.probe_id is None and verdict != "failure":
            return  # cannot change the circuit: spare the store a round trip

        def change(st: BreakerState, now: float) -> tuple[BreakerState, Settled]:
            return settle(st, self.config, now, verdict, ticket.probe_id)

        settled = await self.store.update(self.endpoint, change, ttl_s=self._ttl_s)
        if settled.transition == "open":
            self._report("open", {"failures": settled.failures})
        elif settled.transition is not None:
            self._report(settled.transition, {})

    async def state(self) -> BreakerState:
        """The circuit as it is now."""
        return await self.store.update(self.endpoint, lambda st, _: (st, st), ttl_s=self._ttl_s)

    def _refusal(self, admission: Admission) -> str:
        c = self.config
        if admission.state == "open":
            why = (
                f"refused for {admission.retry_in:.1f}s more after repeated transient failures "
                f"({c.failures} within {c.window_s:g}s open it, a failed probe reopens it)"
            )
        else:
            why = "half-open: waiting for the answer of the probe call in flight"
        return f"circuit open for {self.endpoint}: {why}; the endpoint was not called"

    def _report(self, transition: str, extra: dict[str, Any]) -> None:
        c = self.config
        attributes: dict[str, Any] = {"endpoint": self.endpoint, "store": self.store.kind}
        attributes.update(extra)
        if transition == "open":
            attributes.update(window_s=c.window_s, cooldown_s=c.cooldown_s)
            logger.warning(
                "circuit for %s opened: calls to it are refused for %gs",
                self.endpoint,
                c.cooldown_s,
            )
        else:
            logger.info("circuit for %s is %s", self.endpoint, transition.replace("_", "-"))
        report_call_event(_EVENTS[transition], attributes)
