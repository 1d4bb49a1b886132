"""The circuit breaker's state machine, as pure functions over a small value.

Both stores run these same functions: the local store under a lock, the Redis store between
a read and a compare-and-set. Time is passed in (``now``, seconds), never read here: the local
store gives its monotonic clock, the Redis store the Redis server's clock, so every process
sharing a circuit agrees on when its cool-down ends.

    closed ──(failures within window_s reach `failures`)──▶ open
    open ──(cooldown_s passed; the next call is a probe)──▶ half_open
    half_open ──(a probe succeeds)──▶ closed
    half_open ──(a probe fails)──▶ open
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Final, Literal

from tether.spec import CircuitBreakerConfig

CircuitState = Literal["closed", "open", "half_open"]
Verdict = Literal["success", "failure", "neutral"]
"""What a call's end says about its endpoint: it answered (``success``), it failed in a way
that may pass (``failure``: 5xx, 429, timeout, connection), or it says nothing about the
endpoint's health (``neutral``: a 400 or 401, a cancelled call)."""

STATE_FORMAT: Final = 1
"""Version of the serialized state (``to_json``); a value in another format reads as closed."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One endpoint's circuit."""

    state: CircuitState = "closed"
    """Where the circuit is."""
    opened_at: float = 0.0
    """When it last opened (seconds, on the store's clock)."""
    failures: tuple[float, ...] = ()
    """When the transient failures counted towards opening happened (closed only; the latest
    ``failures`` of them at most)."""
    probes: tuple[tuple[str, float], ...] = ()
    """Probe calls in flight (half-open only): each id with the time its slot is given back
    if it never answers (its process died)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": STATE_FORMAT,
                "s": self.state,
                "t": self.opened_at,
                "f": list(self.failures),
                "p": [list(p) for p in self.probes],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> BreakerState:
        """The state stored as ``raw``; ``None`` (nothing stored) is a closed circuit. Raises
        ``ValueError`` for a value that is not one (a damaged or foreign key)."""
        if raw is None:
            return cls()
        try:
            data = json.loads(raw)
        except RecursionError:  # nested past the parser's depth: no state either
            raise ValueError("not a circuit state of format 1") from None
        if not isinstance(data, dict) or data.get("v") != STATE_FORMAT:
            raise ValueError("not a circuit state of format 1")
        state = data["s"]
        if state not in ("closed", "open", "half_open"):
            raise ValueError(f"unknown circuit state {state!r}")
        return cls(
            state=state,
            opened_at=float(data["t"]),
            failures=tuple(float(t) for t in data["f"]),
            probes=tuple((str(i), float(t)) for i, t in data["p"]),
        )


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a call may go to its endpoint."""

    allowed: bool
    """False: the circuit refuses the call."""
    probe: bool = False
    """The call is a half-open probe: its verdict closes or reopens the circuit."""
    retry_in: float = 0.0
    """For a refused call: seconds until the circuit lets a call through again (an estimate
    while a probe is in flight)."""
    state: CircuitState = "closed"
    """The circuit's state after the admission."""
    transition: CircuitState | None = None
    """The state the circuit moved to on this admission (``half_open``), if it moved."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What a call's verdict did to its circuit."""

    transition: CircuitState | None = None
    """The state the circuit moved to, if it moved."""
    failures: int = 0
    """Failures counted in the window after this verdict (for the ``open`` event)."""
    state: CircuitState = "closed"
    """The circuit's state after the verdict."""


def admit(
    st: BreakerState, config: CircuitBreakerConfig, now: float, probe_id: str
) -> tuple[BreakerState, Admission]:
    """Whether a call may go through now; ``probe_id`` names it should it become a probe."""
    transition: CircuitState | None = None
    if st.state == "closed":
        return st, Admission(allowed=True, state="closed")
    if st.state == "open":
        reopens = st.opened_at + config.cooldown_s
        if now < reopens:
            return st, Admission(allowed=False, retry_in=reopens - now, state="open")
        st = BreakerState(state="half_open", opened_at=st.opened_at)
        transition = "half_open"
    live = tuple(p for p in st.probes if p[1] > now)  # a probe whose process died lets go
    if len(live) < config.half_open_probes:
        lease = now + config.cooldown_s
        st = replace(st, probes=(*live, (probe_id, lease)))
        return st, Admission(allowed=True, probe=True, state="half_open", transition=transition)
    st = replace(st, probes=live)
    retry_in = max(0.0, min(t for _, t in live) - now)
    return st, Admission(allowed=False, retry_in=retry_in, state="half_open", transition=transition)


def settle(
    st: BreakerState,
    config: CircuitBreakerConfig,
    now: float,
    verdict: Verdict,
    probe_id: str | None,
) -> tuple[BreakerState, Settled]:
    """A call's verdict. In half-open only probes count (a call let through before the circuit
    opened says nothing about now); in open nothing does."""
    was_probe = probe_id is not None and any(i == probe_id for i, _ in st.probes)
    if was_probe:
        st = replace(st, probes=tuple(p for p in st.probes if p[0] != probe_id))
    if st.state == "half_open" and was_probe:
        if verdict == "success":
            return BreakerState(), Settled(transition="closed", state="closed")
        if verdict == "failure":
            opened = BreakerState(state="open", opened_at=now)
            return opened, Settled(transition="open", failures=1, state="open")
    if st.state == "closed" and verdict == "failure":
        recent = (*(t for t in st.failures if t > now - config.window_s), now)
        recent = recent[-config.failures :]
        if len(recent) >= config.failures:
            opened = BreakerState(state="open", opened_at=now)
            return opened, Settled(transition="open", failures=len(recent), state="open")
        return replace(st, failures=recent), Settled(failures=len(recent), state="closed")
    return st, Settled(state=st.state)
