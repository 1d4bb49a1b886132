"""Where circuit states live: ``LocalBreakerStore`` (this process) and the interface the
Redis store (``redis_store.py``) shares with it.

A store applies a change to one endpoint's state atomically: it reads the state and its
clock's time, runs the change (a pure function from ``state.py``), and keeps the result. The
local store does that under a lock; the Redis store with a compare-and-set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeAlias, TypeVar

from tether.resilience.state import BreakerState

R = TypeVar("R")
Change: TypeAlias = Callable[[BreakerState, float], tuple[BreakerState, R]]
"""A change to one circuit: from its state and the store's time (seconds) to its new state
and what the caller wants back."""


class BreakerStore(Protocol):
    """Keeps circuit states by endpoint."""

    @property
    def kind(self) -> str:
        """``local`` or ``redis`` (where states are kept now: a Redis store that cannot reach
        its server says ``local`` until it can again)."""
        ...

    async def update(self, key: str, change: Change[R], *, ttl_s: float) -> R:
        """Apply ``change`` to the state of ``key`` atomically; a state left untouched for
        ``ttl_s`` may be forgotten (it reads as closed)."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds for the running event loop (it reopens when used)."""
        ...


class LocalBreakerStore:
    """Circuit states in this process's memory, shared by every breaker given this store
    (every agent of the process, with the default store). Safe across threads and event
    loops."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[str, tuple[BreakerState, float]] = {}
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return "local"

    async def update(self, key: str, change: Change[R], *, ttl_s: float) -> R:
        return self.update_now(key, change, ttl_s=ttl_s)

    def update_now(self, key: str, change: Change[R], *, ttl_s: float) -> R:
        """``update`` without an event loop (it never waits)."""
        with self._lock:
            now = self._clock()
            held = self._states.get(key)
            st = held[0] if held is not None and held[1] > now else BreakerState()
            new, result = change(st, now)
            if new == BreakerState():
                self._states.pop(key, None)  # closed and clean: nothing to remember
            elif new != st or held is None or held[1] <= now:
                self._states[key] = (new, now + ttl_s)
            return result

    def state(self, key: str) -> BreakerState:
        """The circuit of ``key`` as it is now (closed if unknown)."""
        return self.update_now(key, lambda st, _: (st, st), ttl_s=0.0)

    async def aclose(self) -> None:
        return None


_default: LocalBreakerStore | None = None
_default_lock = threading.Lock()


def default_local_store() -> LocalBreakerStore:
    """The process-wide local store: breakers of every agent in this process that call the
    same endpoint share its circuit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalBreakerStore()
        return _default
