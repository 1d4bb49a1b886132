"""Latency of a model call's budget check and reconciliation, at concurrency 1 and 64.

Contenders, each per model call, against the same real store in the same run:

  redis-incrby     the baseline: one bare ``INCRBY`` round trip to the same Redis (redis-py,
                   the client Tether uses): the least any shared counter can cost.
  ledger-redis     ``RedisBudgetLedger.reserve`` then ``reconcile``: two Lua scripts (the
                   all-or-none hold of the call's worst case on each budget, then the real use).
  control-redis    what a run pays: ``BudgetControl.before_model`` (the worst case estimated
                   from the request and priced, the budgets' keys for the caller and window, the
                   reservation in a worker thread) then ``settle`` (the reconciliation, in a
                   worker thread), in an event loop.
  ledger-sql / control-sql   the same on the SQL store (a SQLite file in a temporary folder,
                   or ``--database-url``): one transaction each, rows locked.
  sql-update       the SQL baseline: one transaction of one ``UPDATE n = n + 1`` (on
                   PostgreSQL with ``synchronous_commit`` off, as the ledger's connections).

Every call touches the same three budgets (US dollars per month of the project, tokens per day
of the end user, model calls per minute of the project), set high enough never to refuse. At
concurrency 64, 64 threads (64 tasks for ``control-*``) run calls at once against those same
budgets, so they contend for the same keys and rows; each call is timed on its own.

Usage::

    python benchmarks/budget_check.py [--calls 2000] [--redis-url redis://127.0.0.1:6379/0]
        [--database-url sqlite:///...|postgresql://...] [--json]

Ratios are each contender's p50 over its baseline's p50 at the same concurrency. No timing is
asserted: the machines here are shared and noisy; this prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether.controls import Hook, HookContext
from tether.controls.budget_ledger import BudgetCharge, BudgetLedger, RedisBudgetLedger
from tether.controls.budget_sql import SqlBudgetLedger
from tether.controls.budgets import BudgetControl
from tether.core import AgentRef, Caller
from tether.providers import Message, ModelRequest, ModelSettings
from tether.runtime import RunState
from tether.spec import BudgetsConfig, Limits
from tether.trace.pricing import default_pricing

CONFIG = BudgetsConfig(
    limits=[
        {"scope": "project", "window": "month", "usd": 9_000_000},
        {"scope": "end_user", "window": "day", "tokens": 10**12},
    ],
    rate_limits=[{"scope": "project", "rpm": 9_000_000}],
)
REQUEST = ModelRequest(
    messages=[
        Message(role="system", content="You are a support agent. " * 20),
        Message(role="user", content="Where is my order 1042? " * 10),
    ],
    settings=ModelSettings(max_tokens=512),
)


def charges(project: str) -> list[BudgetCharge]:
    """The three budgets a call touches, as the control builds them."""
    return [
        BudgetCharge(f"project:{project}:usd:month:1", 9 * 10**12, 900),
        BudgetCharge(f"end_user:{project}/u:tokens:day:1", 10**12, 1200),
        BudgetCharge(f"project:{project}:requests:minute:1", 10**12, 1),
    ]


def ledger_call(ledger: BudgetLedger, project: str) -> Callable[[], None]:
    mine = charges(project)

    def call() -> None:
        hold = ledger.reserve(mine, hold_s=150)
        assert hold.held
        ledger.reconcile(hold, [700, 900, 1])

    return call


def timed_threads(call: Callable[[], None], calls: int, concurrency: int) -> list[int]:
    """Each call's latency in ns, ``concurrency`` threads at once."""
    per = max(1, calls // concurrency)
    start = threading.Barrier(concurrency)

    def worker(_: int) -> list[int]:
        start.wait()
        out = []
        for _ in range(per):
            t0 = time.perf_counter_ns()
            call()
            out.append(time.perf_counter_ns() - t0)
        return out

    with ThreadPoolExecutor(concurrency) as pool:
        return [t for chunk in pool.map(worker, range(concurrency)) for t in chunk]


def control_for(ledger: BudgetLedger) -> BudgetControl:
    return BudgetControl(CONFIG, ledger, models=["gpt-4.1-mini"], pricing=default_pricing())


def timed_control(control: BudgetControl, project: str, calls: int, concurrency: int) -> list[int]:
    """Each call's latency in ns (before_model + settle), ``concurrency`` tasks at once."""
    per = max(1, calls // concurrency)

    async def task(i: int) -> list[int]:
        state = RunState(trace_id="0" * 31 + "1", run_id=f"{i:016x}", input="x")
        ctx = HookContext(
            hook=Hook.BEFORE_MODEL,
            state=state,
            limits=Limits(),
            span_id=state.run_id,
            caller=Caller(project=project, end_user="u"),
            agent=AgentRef("bench"),
        )
        out = []
        for _ in range(per):
            t0 = time.perf_counter_ns()
            decision = await control.before_model(ctx, REQUEST)
            assert not decision.stops, decision.reason
            await control.settle(state.run_id, tokens=900, usd=0.0007)
            out.append(time.perf_counter_ns() - t0)
        return out

    async def main() -> list[int]:
        # As many worker threads as tasks: the default pool (min(32, CPUs + 4)) would make
        # the tasks queue for threads rather than for the store.
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max(concurrency, 4)))
        await asyncio.gather(*(task(i) for i in range(concurrency)))  # warm: this loop's client
        chunks = await asyncio.gather(*(task(i) for i in range(concurrency)))
        await control.aclose()
        return [t for chunk in chunks for t in chunk]

    return asyncio.run(main())


def stats(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "calls": len(ordered),
        "p50_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000,
    }


def sql_baseline(url: str) -> Callable[[], None]:
    from sqlalchemy import event, text

    from tether.store import create_store_engine

    engine = create_store_engine(url)
    if engine.url.get_backend_name() == "postgresql":
        # As the ledger's connections: commits that do not wait for the WAL flush.
        @event.listens_for(engine, "connect")
        def _async_commit(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_counter (id INT PRIMARY KEY, n INT)"))
        conn.execute(text("DELETE FROM bench_counter"))
        conn.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))
    lock = threading.Lock() if engine.url.get_backend_name() == "sqlite" else None

    def call() -> None:
        if lock is not None:
            lock.acquire()  # as the ledger's SQLite transactions take turns
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE bench_counter SET n = n + 1 WHERE id = 1"))
        finally:
            if lock is not None:
                lock.release()

    return call


def contenders(
    concurrency: int,
    project: str,
    n: int,
    incrby: Callable[[], None],
    redis_ledger: BudgetLedger,
    sql_ledger: BudgetLedger,
    url: str,
) -> list[tuple[str, Callable[[], list[int]]]]:
    """Each contender's timed round at ``concurrency`` (SQL ones do a quarter of the calls)."""
    redis_call, sql_call = ledger_call(redis_ledger, project), ledger_call(sql_ledger, project)
    update = sql_baseline(url)
    return [
        ("redis-incrby", lambda: timed_threads(incrby, n, concurrency)),
        ("ledger-redis", lambda: timed_threads(redis_call, n, concurrency)),
        (
            "control-redis",
            lambda: timed_control(control_for(redis_ledger), project, n, concurrency),
        ),
        ("sql-update", lambda: timed_threads(update, n // 4, concurrency)),
        ("ledger-sql", lambda: timed_threads(sql_call, n // 4, concurrency)),
        (
            "control-sql",
            lambda: timed_control(control_for(sql_ledger), project, n // 4, concurrency),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--redis-url", default=os.environ.get("TETHER_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import redis

    prefix = f"tether-bench:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(args.redis_url, socket_timeout=5)
    client.ping()
    folder = tempfile.mkdtemp(prefix="tether-budget-bench-")
    url = args.database_url or f"sqlite:///{Path(folder) / 'budgets.db'}"
    redis_ledger = RedisBudgetLedger.from_url(args.redis_url, prefix=prefix)
    sql_ledger = SqlBudgetLedger(url)
    sql_ledger.spent("warm-up")  # migrated before timing

    def incrby() -> None:
        client.incrby(f"{prefix}incr", 1)

    results: dict[str, dict[str, dict[str, float]]] = {}
    gc.disable()
    try:
        for concurrency in (1, 64):
            row: dict[str, dict[str, float]] = {}
            project = f"p{concurrency}"
            for name, run in contenders(
                concurrency, project, args.calls, incrby, redis_ledger, sql_ledger, url
            ):
                run()  # warm-up round (connections, scripts loaded, caches)
                row[name] = stats(run())
            results[str(concurrency)] = row
    finally:
        gc.enable()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
        sql_ledger.close()

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "sql": sql_ledger.shown_url,
    }
    if args.json:
        json.dump({"meta": meta, "results": results}, sys.stdout, indent=2)
        print()
        return
    print(f"budget check + reconcile per model call  ({meta})")
    for concurrency, row in results.items():
        print(f"\nconcurrency {concurrency}")
        print(f"  {'contender':<15} {'calls':>6} {'p50 µs':>9} {'p99 µs':>9}  ratio (p50)")
        for name, s in row.items():
            base = row["sql-update" if "sql" in name else "redis-incrby"]["p50_us"]
            ratio = s["p50_us"] / base
            print(
                f"  {name:<15} {s['calls']:>6} {s['p50_us']:>9.1f} {s['p99_us']:>9.1f}"
                f"  {ratio:>5.1f}x {'sql-update' if 'sql' in name else 'redis-incrby'}"
            )


if __name__ == "__main__":
    main()
