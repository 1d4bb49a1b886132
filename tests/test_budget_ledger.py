"""The Redis budget ledger against the real Redis: 64 concurrent calls against one budget stay
within it, a dead caller's hold expires, and a Redis that is down is a clear error."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tether.controls.budget_ledger import BudgetCharge, BudgetUnavailable, RedisBudgetLedger

WORST = 1_000


def test_64_concurrent_calls_stay_within_one_budget(redis_url: str, redis_prefix: str) -> None:
    ledger = RedisBudgetLedger.from_url(redis_url, prefix=redis_prefix)
    limit = 20 * WORST + 500
    rng = random.Random(7)
    real = [rng.randint(WORST // 2, WORST) for _ in range(64 * 4)]

    def call(i: int) -> bool:
        hold = ledger.reserve([BudgetCharge("project:p:tokens:run", limit, WORST)])
        if not hold.held:
            return False
        ledger.reconcile(hold, [real[i]])
        return True

    with ThreadPoolExecutor(64) as pool:
        admitted = list(pool.map(call, range(len(real))))
    used, held = ledger.spent("project:p:tokens:run")
    assert held == 0
    assert used == sum(r for r, ok in zip(real, admitted, strict=True) if ok)
    assert used <= limit + WORST  # at most one call's worst case past the limit
    assert sum(admitted) >= 20  # the budget admitted what fits in it
    assert not all(admitted)


def test_all_budgets_of_a_call_or_none(redis_url: str, redis_prefix: str) -> None:
    ledger = RedisBudgetLedger.from_url(redis_url, prefix=redis_prefix)
    roomy = BudgetCharge("agent:a:tokens:day", 10_000, 600)
    tight = BudgetCharge("user:u:tokens:day", 1_000, 600)
    first = ledger.reserve([roomy, tight])
    assert first.held
    second = ledger.reserve([roomy, tight])
    assert second.refused == "user:u:tokens:day"
    assert ledger.spent("agent:a:tokens:day") == (0, 600)  # nothing held by the refused call


def test_a_dead_callers_hold_expires(redis_url: str, redis_prefix: str) -> None:
    ledger = RedisBudgetLedger.from_url(redis_url, prefix=redis_prefix, hold_ttl_s=0.3)
    charge = BudgetCharge("run:r:usd:run", 1_000, 1_000)
    assert ledger.reserve([charge]).held  # its caller dies: never reconciled
    assert not ledger.reserve([charge]).held
    deadline = time.monotonic() + 10
    while not ledger.reserve([charge]).held:
        assert time.monotonic() < deadline, "the hold never expired"
    # A late reconcile of an expired hold still counts what was really used.
    late = ledger.reserve([BudgetCharge("run:r2:usd:run", 1_000, 500)])
    ledger.reconcile(late, [400])
    assert ledger.spent("run:r2:usd:run") == (400, 0)


def test_redis_down_is_a_clear_error() -> None:
    ledger = RedisBudgetLedger.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(BudgetUnavailable, match="budget store \\(Redis\\) cannot be reached"):
        ledger.reserve([BudgetCharge("project:p:tokens:day", 10, 1)])
