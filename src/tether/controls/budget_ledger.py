"""Budget ledgers: reserve a call's worst case before it, reconcile with its real usage after.

A budget is a limit on one counter (tokens, micro-USD, model calls) of one scope in one window,
named by its key (``project:acme:usd:day:20261123``). ``reserve`` holds the worst case of a
call on every budget it touches, all or none, and refuses when any of them would go past its
limit counting what is spent and what is held; ``reconcile`` drops the hold and adds what the
call really used. A hold expires (``hold_s``): a caller that dies between the two gives its
hold back, and never loses what was reconciled.

Two ledgers share this interface (``BudgetLedger``): ``RedisBudgetLedger`` here (each step one
Lua script, so any number of processes share the budgets exactly) and ``SqlBudgetLedger`` in
``tether.store.budgets`` (each step one transaction holding the budgets' rows locked).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.core import TetherError
from tether.core.settings import REDIS_PROTOCOL, check_redis_url_options, redis_no_retries

# Each budget is a hash ``{used, held}`` at its key and a sorted set ``KEY:holds`` whose members
# are the live reservations (``id:amount``, scored by when they expire); both keys expire
# ``keep`` ms after their last use.
_EXPIRE_HOLDS = """
local function expire_holds(key, now)
  local holds = key .. ':holds'
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #expired > 0 then
    local total = 0
    for _, member in ipairs(expired) do
      total = total + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('HINCRBY', key, 'held', -total)
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the budgets' keys. ARGV: reservation id, hold ms, then (limit, amount, keep ms) per key.
# Returns {0} when held, else {i, used, held} of the first budget that would go past its limit.
_RESERVE = (
    _EXPIRE_HOLDS
    + """
local id, ttl = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  expire_holds(key, now)
  local limit, amount = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local v = redis.call('HMGET', key, 'used', 'held')
  local used, held = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if used + held + amount > limit then return {i, used, held} end
end
for i, key in ipairs(KEYS) do
  local amount, keep = ARGV[3 * i + 1], ARGV[3 * i + 2]
  redis.call('HINCRBY', key, 'held', amount)
  redis.call('ZADD', key .. ':holds', now + ttl, id .. ':' .. amount)
  redis.call('PEXPIRE', key, keep)
  redis.call('PEXPIRE', key .. ':holds', keep)
end
return {0}
"""
)

# KEYS: the budgets' keys. ARGV: reservation id, then (amount held, amount used, keep ms) per key.
# A hold that expired meanwhile is gone already; what was used is counted all the same.
_RECONCILE = """
local id = ARGV[1]
for i, key in ipairs(KEYS) do
  local held, used, keep = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if redis.call('ZREM', key .. ':holds', id .. ':' .. held) == 1 then
    redis.call('HINCRBY', key, 'held', -tonumber(held))
  end
  redis.call('HINCRBY', key, 'used', used)
  redis.call('PEXPIRE', key, keep)
  redis.call('PEXPIRE', key .. ':holds', keep)
end
return 0
"""

# KEYS: one budget. Returns {used, held} counting only holds that have not expired.
_SPENT = (
    _EXPIRE_HOLDS
    + """
expire_holds(KEYS[1], now)
local v = redis.call('HMGET', KEYS[1], 'used', 'held')
return {tonumber(v[1] or '0'), tonumber(v[2] or '0')}
"""
)


class BudgetUnavailable(TetherError):
    """The budget ledger cannot be reached (a call is refused unless the budget fails open)."""


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """One budget a call counts against: its key, its limit and the call's amount on it."""

    key: str
    """The budget's key (scope, counter and window)."""
    limit: int
    """The most it may reach (tokens, micro-USD or model calls)."""
    amount: int
    """The call's worst case (at reserve) on it."""
    keep_s: float = 2 * 86_400.0
    """How long the budget's counters are kept after this use (past the end of its window;
    at least as long as a hold lasts)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The budget that refused a reservation, as it stood."""

    key: str
    limit: int
    amount: int
    """What the refused call needed."""
    used: int
    """What calls have used."""
    held: int
    """What calls in flight hold."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation: what ``reconcile`` takes back."""

    id: str
    """The reservation's id."""
    charges: tuple[BudgetCharge, ...]
    """The budgets it holds on (none when refused)."""
    refused: Refusal | None = None
    """The budget that refused it (nothing is held then)."""

    @property
    def held(self) -> bool:
        return self.refused is None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.charges)


class BudgetLedger(Protocol):
    """Where budgets are counted. Every method may raise ``BudgetUnavailable``."""

    backend: str
    """``redis`` or ``sql``, as messages name it."""

    def reserve(self, charges: Sequence[BudgetCharge], *, hold_s: float) -> Hold:
        """Hold each charge's amount on its budget for up to ``hold_s``, all or none. The
        charges' keys are distinct."""
        ...

    def reconcile(self, hold: Hold, used: Sequence[int]) -> None:
        """Release ``hold`` and count what the call used on each of its budgets (in order)."""
        ...

    def spent(self, key: str) -> tuple[int, int]:
        """A budget's (used, held) now."""
        ...


def new_hold_id() -> str:
    return secrets.token_hex(8)


def check_charges(charges: Sequence[BudgetCharge]) -> None:
    """A reservation names each budget once (two amounts on one key would each be checked
    alone, and both held)."""
    keys = [c.key for c in charges]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a reservation names a budget twice: {sorted(keys)}")


class RedisBudgetLedger:
    """Budgets in Redis, shared by every process using the same Redis and prefix. Its
    ``areserve`` and ``areconcile`` use an asyncio client per event loop (made from ``url``),
    so a run's check costs no worker thread."""

    backend = "redis"

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "tether:",
        shown_url: str = "",
        url: str | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.shown_url = shown_url
        """The Redis as messages show it (no password)."""
        self.url = url
        self.timeout_s = timeout_s
        self._reserve = client.register_script(_RESERVE)
        self._reconcile = client.register_script(_RECONCILE)
        self._spent = client.register_script(_SPENT)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]]
        self._async = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "tether:", timeout_s: float = 2.0
    ) -> RedisBudgetLedger:
        """A ledger on the Redis at ``url``; a call that gets no answer in ``timeout_s`` fails
        (``BudgetUnavailable``)."""
        import redis

        from tether.providers.http_client import display_url

        check_redis_url_options(url, display_url(url))
        try:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                protocol=REDIS_PROTOCOL,
                retry=redis_no_retries(redis.retry.Retry),
            )
        except ValueError as exc:
            raise TetherError(
                f"invalid Redis URL {display_url(url)!r}: {exc}",
                hint="a Redis URL is redis://[:password@]host:port/db, rediss://... or "
                "unix:///path/to/socket",
            ) from None
        return cls(client, prefix=prefix, shown_url=display_url(url), url=url, timeout_s=timeout_s)

    def _key(self, key: str) -> str:
        return f"{self.prefix}budget:{key}"

    def reserve(self, charges: Sequence[BudgetCharge], *, hold_s: float = 120.0) -> Hold:
        hold_id, keys, args = self._reserve_args(charges, hold_s)
        return _hold(hold_id, charges, self._call(self._reserve, keys, args))

    def reconcile(self, hold: Hold, used: Sequence[int]) -> None:
        if hold.held and hold.charges:
            self._call(self._reconcile, *self._reconcile_args(hold, used))

    async def areserve(self, charges: Sequence[BudgetCharge], *, hold_s: float = 120.0) -> Hold:
        hold_id, keys, args = self._reserve_args(charges, hold_s)
        script = self._async_scripts()[0]
        return _hold(hold_id, charges, await self._acall(script, keys, args))

    async def areconcile(self, hold: Hold, used: Sequence[int]) -> None:
        if hold.held and hold.charges:
            keys, args = self._reconcile_args(hold, used)
            await self._acall(self._async_scripts()[1], keys, args)

    def _reserve_args(
        self, charges: Sequence[BudgetCharge], hold_s: float
    ) -> tuple[str, list[str], list[Any]]:
        check_charges(charges)
        hold_id = new_hold_id()
        args: list[Any] = [hold_id, _ms(hold_s)]
        for c in charges:
            args += [c.limit, c.amount, _ms(max(c.keep_s, hold_s))]
        return hold_id, [self._key(c.key) for c in charges], args

    # A reconciliation keeps a budget at least ``keep_s``, which the control makes at least
    # as long as its holds last (a budget never expires under a live hold).

    def _reconcile_args(self, hold: Hold, used: Sequence[int]) -> tuple[list[str], list[Any]]:
        args: list[Any] = [hold.id]
        for c, amount in zip(hold.charges, used, strict=True):
            args += [c.amount, int(amount), _ms(c.keep_s)]
        return [self._key(c.key) for c in hold.charges], args

    def _async_scripts(self) -> tuple[Any, Any]:
        """The reserve and reconcile scripts on this event loop's asyncio client."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            found = self._async.get(loop)
            if found is None:
                from redis.asyncio import Redis
                from redis.asyncio.retry import Retry

                if self.url is None:
                    raise TetherError("this Redis ledger was made from a client: no async use")
                client = Redis.from_url(
                    self.url,
                    socket_connect_timeout=self.timeout_s,
                    socket_timeout=self.timeout_s,
                    protocol=REDIS_PROTOCOL,
                    retry=redis_no_retries(Retry),
                )
                found = (client.register_script(_RESERVE), client.register_script(_RECONCILE))
                self._async[loop] = found
            return found

    async def aclose(self) -> None:
        """Close this event loop's asyncio client (made again when next used)."""
        with self._async_lock:
            found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].registered_client.aclose()

    def spent(self, key: str) -> tuple[int, int]:
        used, held = self._call(self._spent, [self._key(key)], [])
        return int(used), int(held)

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None

    async def _acall(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return await script(keys=keys, args=args)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> BudgetUnavailable:
        where = f" at {self.shown_url}" if self.shown_url else ""
        why = str(exc) or type(exc).__name__
        return BudgetUnavailable(
            f"the budget store (Redis{where}) cannot be reached: {why}",
            hint="check budgets.redis_url or TETHER_REDIS_URL and that Redis is running; "
            "budgets fail closed unless the spec's budgets section says fail_open: true",
        )


def _hold(hold_id: str, charges: Sequence[BudgetCharge], answer: Any) -> Hold:
    """A reservation from the reserve script's answer."""
    index = int(answer[0])
    if index:
        c = charges[index - 1]
        refusal = Refusal(c.key, c.limit, c.amount, int(answer[1]), int(answer[2]))
        return Hold(hold_id, (), refused=refusal)
    return Hold(hold_id, tuple(charges))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


_ledgers: dict[tuple[str, str], RedisBudgetLedger] = {}
_ledgers_lock = threading.Lock()


def shared_redis_ledger(url: str, prefix: str) -> RedisBudgetLedger:
    """One Redis ledger (one connection pool) per URL and prefix in a process."""
    with _ledgers_lock:
        ledger = _ledgers.get((url, prefix))
        if ledger is None:
            ledger = RedisBudgetLedger.from_url(url, prefix=prefix)
            _ledgers[(url, prefix)] = ledger
        return ledger
