"""Budget ledgers: reserve a call's worst case before it, reconcile with its real usage after.

A budget is a limit on one counter (tokens, or micro-USD) of one scope in one window, named by
its key (``project:acme:usd:day:2026-11-23``). ``reserve`` holds the worst case of a call on
every budget it touches, all or none, and refuses when any of them would go past its limit
counting what is spent and what is held; ``reconcile`` drops the hold and adds what the call
really used. A hold expires (``ttl_s``): a caller that dies between the two gives its hold
back, and never loses what was reconciled.

``RedisBudgetLedger`` does each step in one Lua script, so any number of processes share the
budgets exactly. (Work in progress: the SQL-store ledger, the spec's ``budgets:`` section and
the ``BudgetControl`` are not built yet.)
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.core import TetherError

# KEYS: the budgets' keys. ARGV: reservation id, ttl ms, then (limit, amount) per key.
# Returns 0 when held, else the 1-based index of the first budget that would go past its limit.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, ttl = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local expired = redis.call('ZRANGEBYSCORE', key .. ':holds', '-inf', now)
  for _, gone in ipairs(expired) do
    local amount = tonumber(redis.call('HGET', key .. ':amounts', gone) or '0')
    redis.call('HINCRBY', key, 'held', -amount)
    redis.call('HDEL', key .. ':amounts', gone)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', key .. ':holds', '-inf', now) end
  local limit, amount = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local used = tonumber(redis.call('HGET', key, 'used') or '0')
  local held = tonumber(redis.call('HGET', key, 'held') or '0')
  if used + held + amount > limit then return i end
end
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 + 2 * i])
  redis.call('HINCRBY', key, 'held', amount)
  redis.call('HSET', key .. ':amounts', id, amount)
  redis.call('ZADD', key .. ':holds', now + ttl, id)
end
return 0
"""

# KEYS: the budgets' keys. ARGV: reservation id, window ttl ms, then the amount used per key.
_RECONCILE = """
local id, keep = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local amount = redis.call('HGET', key .. ':amounts', id)
  if amount then
    redis.call('HINCRBY', key, 'held', -tonumber(amount))
    redis.call('HDEL', key .. ':amounts', id)
    redis.call('ZREM', key .. ':holds', id)
  end
  redis.call('HINCRBY', key, 'used', tonumber(ARGV[2 + i]))
  for _, k in ipairs({key, key .. ':amounts', key .. ':holds'}) do
    redis.call('PEXPIRE', k, keep)
  end
end
return 0
"""


class BudgetUnavailable(TetherError):
    """The budget ledger cannot be reached (a call is refused unless the budget fails open)."""


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """One budget a call counts against: its key, its limit and the call's amount on it."""

    key: str
    """The budget's key (scope, counter and window)."""
    limit: int
    """The most it may reach (tokens, or micro-USD)."""
    amount: int
    """The call's worst case (at reserve) on it."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation: what ``reconcile`` takes back."""

    id: str
    """The reservation's id."""
    keys: tuple[str, ...]
    """The budgets it holds on."""
    refused: str | None = None
    """The key of the budget that refused it (nothing is held then)."""

    @property
    def held(self) -> bool:
        return self.refused is None


class RedisBudgetLedger:
    """Budgets in Redis, shared by every process using the same Redis and prefix."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "tether:",
        hold_ttl_s: float = 120.0,
        keep_s: float = 40 * 86400.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.hold_ttl_ms = int(hold_ttl_s * 1000)
        """How long a hold lasts when its caller never reconciles (a dead process)."""
        self.keep_ms = int(keep_s * 1000)
        """How long a budget's counters are kept after their last use (past its window)."""
        self._reserve = client.register_script(_RESERVE)
        self._reconcile = client.register_script(_RECONCILE)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisBudgetLedger:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return cls(client, **kwargs)

    def _key(self, key: str) -> str:
        return f"{self.prefix}budget:{key}"

    def reserve(self, charges: Sequence[BudgetCharge]) -> Hold:
        """Hold each charge's amount on its budget, all or none."""
        hold_id = secrets.token_hex(8)
        keys = [self._key(c.key) for c in charges]
        args: list[Any] = [hold_id, self.hold_ttl_ms]
        for c in charges:
            args += [c.limit, c.amount]
        refused = self._call(self._reserve, keys, args)
        names = tuple(c.key for c in charges)
        if refused:
            return Hold(hold_id, (), refused=names[int(refused) - 1])
        return Hold(hold_id, names)

    def reconcile(self, hold: Hold, used: Sequence[int]) -> None:
        """Release ``hold`` and count what the call used on each of its budgets."""
        if not hold.held:
            return
        keys = [self._key(k) for k in hold.keys]
        self._call(self._reconcile, keys, [hold.id, self.keep_ms, *used])

    def spent(self, key: str) -> tuple[int, int]:
        """A budget's (used, held) now."""
        values = self._call(
            lambda keys, args: self.client.hmget(keys[0], "used", "held"), [self._key(key)], []
        )
        used, held = (int(v) if v is not None else 0 for v in values)
        return used, held

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise BudgetUnavailable(
                f"the budget store (Redis) cannot be reached: {exc}",
                hint="check TETHER_REDIS_URL and that Redis is running; budgets fail closed "
                "unless the budget says fail_open",
            ) from None
