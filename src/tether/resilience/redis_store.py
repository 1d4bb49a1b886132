"""``RedisBreakerStore``: circuit states shared by every process that uses the same Redis.

Each endpoint's state is one string key (``{prefix}circuit:{endpoint}``, JSON, with an
expiry). A change reads the key and the Redis server's clock in one round trip, runs the pure
transition (``state.py``), and writes the result with a compare-and-set (a Lua script: write
only if the key still holds what was read), trying again when another process got there
first. So two processes never both open a circuit or both take the last probe slot, and
their cool-downs end at the same moment (the Redis clock, not theirs). A call in a closed
circuit costs one round trip (the read); its success costs none.

A breaker must not take the agent down: when Redis cannot be reached or answers with an error
(down, slow past ``timeout_s``, a wrong password, a key of another type), the store logs one
warning and keeps states in a local store instead, tries Redis again after ``retry_s``, and
logs when it is back. States kept locally meanwhile are not copied to Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

from tether.core import TetherError
from tether.core.settings import (
    DEFAULT_REDIS_PREFIX,
    REDIS_PROTOCOL,
    check_redis_url_options,
    redis_no_retries,
)
from tether.providers.http_client import display_url
from tether.resilience.state import BreakerState
from tether.resilience.stores import Change, LocalBreakerStore, R

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("tether.resilience")

MAX_TRIES: Final = 64
"""Compare-and-set attempts before a change is given up (64 processes all changing one
circuit at the same instant each get through in at most 64)."""

_CAS: Final = """
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""


class RedisBreakerStore:
    """Circuit states in Redis at ``url``, under keys starting with ``prefix``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        timeout_s: float = 0.5,
        retry_s: float = 10.0,
        fallback: LocalBreakerStore | None = None,
    ) -> None:
        from redis.asyncio import Redis

        self.url = url
        self.shown_url = display_url(url)
        """The URL as messages show it (a password hidden)."""
        check_redis_url_options(url, self.shown_url)
        try:  # a malformed URL is a setup error now, not a warning at the first call
            Redis.from_url(url)
        except ValueError as exc:
            raise TetherError(
                f"invalid Redis URL {self.shown_url!r}: {exc}",
                hint="TETHER_REDIS_URL takes redis://[:password@]host:port/db, rediss://... "
                "or unix:///path/to/socket",
            ) from None
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.fallback = fallback or LocalBreakerStore()
        """Where states are kept while Redis cannot be reached."""
        self._down_until = 0.0
        self._down_reason: str | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis]
        self._clients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return "local" if self._down_reason is not None else "redis"

    def key_of(self, endpoint: str) -> str:
        """The Redis key holding the circuit of ``endpoint``."""
        return f"{self.prefix}circuit:{endpoint}"

    async def update(self, key: str, change: Change[R], *, ttl_s: float) -> R:
        if self._down_reason is not None and time.monotonic() < self._down_until:
            return await self.fallback.update(key, change, ttl_s=ttl_s)
        try:
            result = await self._update(self.key_of(key), change, ttl_s)
        except Exception as exc:
            if not _is_redis_failure(exc):
                raise
            self._went_down(exc)
            return await self.fallback.update(key, change, ttl_s=ttl_s)
        if self._down_reason is not None:
            logger.warning(
                "circuit breakers: Redis at %s answers again; circuit states are shared again",
                self.shown_url,
            )
            self._down_reason = None
        return result

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    # -------------------------------------------------------------------------------------

    def _client(self) -> Redis:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = Redis.from_url(
                    self.url,
                    socket_connect_timeout=self.timeout_s,
                    socket_timeout=self.timeout_s,
                    # Not sent again: a retried compare-and-set that Redis ran already fails,
                    # and the change was made twice on the state read again.
                    retry=redis_no_retries(Retry),
                    protocol=REDIS_PROTOCOL,
                )
            return client

    async def _update(self, rkey: str, change: Change[R], ttl_s: float) -> R:
        client = self._client()
        cas = client.register_script(_CAS)
        ttl_ms = max(1_000, math.ceil(ttl_s * 1000))
        for _ in range(MAX_TRIES):
            pipe = client.pipeline(transaction=False)
            pipe.get(rkey)
            pipe.time()
            raw, (seconds, micros) = await pipe.execute()
            now = seconds + micros / 1_000_000
            st = self._parse(rkey, raw)
            new, result = change(st, now)
            if new == st and (raw is None or st != BreakerState()):
                return result
            value = "" if new == BreakerState() else new.to_json()
            if raw is None and value == "":
                return result
            if await cas(keys=[rkey], args=[raw or b"", value, ttl_ms]):
                return result
        logger.warning(
            "circuit breakers: %d processes raced to change %s; this change was dropped",
            MAX_TRIES,
            rkey,
        )
        return result

    def _parse(self, rkey: str, raw: Any) -> BreakerState:
        try:
            return BreakerState.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            # Not ours, or damaged: a closed circuit, written over at its next change.
            logger.warning(
                "circuit breakers: Redis key %s does not hold a circuit state (%s); "
                "reading it as closed",
                rkey,
                exc,
            )
            return BreakerState()

    def _went_down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}".replace(self.url, self.shown_url)
        self._down_until = time.monotonic() + self.retry_s
        if self._down_reason is None:
            logger.warning(
                "circuit breakers: Redis at %s cannot be used (%s); circuit states are kept "
                "in this process until it can (tried again every %gs)",
                self.shown_url,
                reason,
                self.retry_s,
            )
        self._down_reason = reason


def _is_redis_failure(exc: BaseException) -> bool:
    from redis.exceptions import RedisError

    return isinstance(exc, RedisError | OSError | asyncio.TimeoutError)


_shared: dict[tuple[str, str], RedisBreakerStore] = {}
_shared_lock = threading.Lock()


def shared_redis_store(url: str, prefix: str = DEFAULT_REDIS_PREFIX) -> RedisBreakerStore:
    """The process's store for Redis at ``url`` under ``prefix`` (one per pair, so agents of
    one process share its connection and its view of whether Redis is up)."""
    with _shared_lock:
        store = _shared.get((url, prefix))
        if store is None:
            store = _shared[(url, prefix)] = RedisBreakerStore(url, prefix=prefix)
        return store
