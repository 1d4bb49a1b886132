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

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.core import TetherError

# KEYS: the budgets' keys. ARGV: reservation id, hold ms, then (limit, amount, keep ms) per key.
# Returns {0} when held, else {i, used, held} of the first budget that would go past its limit.
_EXPIRE_HOLDS = """
local function expire_holds(key, now)
  local expired = redis.call('ZRANGEBYSCORE', key .. ':holds', '-inf', now)
  for _, gone in ipairs(expired) do
    local amount = tonumber(redis.call('HGET', key .. ':amounts', gone) or '0')
    redis.call('HINCRBY', key, 'held', -amount)
    redis.call('HDEL', key .. ':amounts', gone)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', key .. ':holds', '-inf', now) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_RESERVE = (
    _EXPIRE_HOLDS
    + """
local id, ttl = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  expire_holds(key, now)
  local limit, amount = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local used = tonumber(redis.call('HGET', key, 'used') or '0')
  local held = tonumber(redis.call('HGET', key, 'held') or '0')
  if used + held + amount > limit then return {i, used, held} end
end
for i, key in ipairs(KEYS) do
  local amount, keep = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  redis.call('HINCRBY', key, 'held', amount)
  redis.call('HSET', key .. ':amounts', id, amount)
  redis.call('ZADD', key .. ':holds', now + ttl, id)
  for _, k in ipairs({key, key .. ':amounts', key .. ':holds'}) do
    if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, keep) end
  end
end
return {0}
"""
)

# KEYS: the budgets' keys. ARGV: reservation id, then (amount used, keep ms) per key.
_RECONCILE = """
local id = ARGV[1]
for i, key in ipairs(KEYS) do
  local amount = redis.call('HGET', key .. ':amounts', id)
  if amount then
    redis.call('HINCRBY', key, 'held', -tonumber(amount))
    redis.call('HDEL', key .. ':amounts', id)
    redis.call('ZREM', key .. ':holds', id)
  end
  redis.call('HINCRBY', key, 'used', tonumber(ARGV[2 * i]))
  local keep = tonumber(ARGV[2 * i + 1])
  for _, k in ipairs({key, key .. ':amounts', key .. ':holds'}) do
    if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, keep) end
  end
end
return 0
"""

# KEYS: one budget. Returns {used, held} counting only holds that have not expired.
_SPENT = (
    _EXPIRE_HOLDS
    + """
expire_holds(KEYS[1], now)
return {tonumber(redis.call('HGET', KEYS[1], 'used') or '0'),
        tonumber(redis.call('HGET', KEYS[1], 'held') or '0')}
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
    """How long the budget's counters are kept after this use (past the end of its window)."""


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
    """Budgets in Redis, shared by every process using the same Redis and prefix."""

    backend = "redis"

    def __init__(self, client: Any, *, prefix: str = "tether:", shown_url: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self.shown_url = shown_url
        """The Redis as messages show it (no password)."""
        self._reserve = client.register_script(_RESERVE)
        self._reconcile = client.register_script(_RECONCILE)
        self._spent = client.register_script(_SPENT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "tether:", timeout_s: float = 2.0) -> Any:
        """A ledger on the Redis at ``url``; a call that gets no answer in ``timeout_s`` fails
        (``BudgetUnavailable``)."""
        import redis

        from tether.providers.http_client import display_url

        try:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )
        except ValueError as exc:
            raise TetherError(
                f"invalid Redis URL {display_url(url)!r}: {exc}",
                hint="a Redis URL is redis://[:password@]host:port/db, rediss://... or "
                "unix:///path/to/socket",
            ) from None
        return cls(client, prefix=prefix, shown_url=display_url(url))

    def _key(self, key: str) -> str:
        return f"{self.prefix}budget:{key}"

    def reserve(self, charges: Sequence[BudgetCharge], *, hold_s: float = 120.0) -> Hold:
        check_charges(charges)
        hold_id = new_hold_id()
        keys = [self._key(c.key) for c in charges]
        args: list[Any] = [hold_id, max(1, int(hold_s * 1000))]
        for c in charges:
            args += [c.limit, c.amount, _ms(max(c.keep_s, hold_s))]
        answer = self._call(self._reserve, keys, args)
        index = int(answer[0])
        if index:
            c = charges[index - 1]
            refusal = Refusal(c.key, c.limit, c.amount, int(answer[1]), int(answer[2]))
            return Hold(hold_id, (), refused=refusal)
        return Hold(hold_id, tuple(charges))

    def reconcile(self, hold: Hold, used: Sequence[int]) -> None:
        if not hold.held or not hold.charges:
            return
        keys = [self._key(c.key) for c in hold.charges]
        args: list[Any] = [hold.id]
        for c, amount in zip(hold.charges, used, strict=True):
            args += [int(amount), _ms(c.keep_s)]
        self._call(self._reconcile, keys, args)

    def spent(self, key: str) -> tuple[int, int]:
        used, held = self._call(self._spent, [self._key(key)], [])
        return int(used), int(held)

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            where = f" at {self.shown_url}" if self.shown_url else ""
            raise BudgetUnavailable(
                f"the budget store (Redis{where}) cannot be reached: {exc}",
                hint="check budgets.redis_url or TETHER_REDIS_URL and that Redis is running; "
                "budgets fail closed unless the spec's budgets section says fail_open: true",
            ) from None


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
