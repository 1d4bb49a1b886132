"""The budget ledgers against the real Redis, a real SQLite file and the real PostgreSQL: 64
concurrent calls against one budget stay within one call's worst case of it, a reservation is
all or none, a dead caller's hold expires (also when its process is killed with SIGKILL), and a
store that is down or never answers is a clear error."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fakes.tcp_proxy import ReplyDropper, TcpProxy
from tether.controls.budget_ledger import (
    BudgetCharge,
    BudgetLedger,
    BudgetUnavailable,
    Hold,
    RedisBudgetLedger,
)
from tether.controls.budget_sql import SqlBudgetLedger
from tether.core import TetherError

WORST = 1_000


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend, URL) of a real store of each kind; Redis keys under this test's prefix."""
    if request.param == "redis":
        return "redis", str(request.getfixturevalue("redis_url"))
    if request.param == "sqlite":
        return "sql", f"sqlite:///{tmp_path / 'budgets.db'}"
    return "sql", str(request.getfixturevalue("pg_url"))


@pytest.fixture
def make_ledger(
    request: pytest.FixtureRequest, ledger_url: tuple[str, str]
) -> Iterator[Callable[[], BudgetLedger]]:
    backend, url = ledger_url
    prefix = str(request.getfixturevalue("redis_prefix")) if backend == "redis" else ""
    made: list[SqlBudgetLedger] = []

    def make() -> BudgetLedger:
        if backend == "redis":
            return RedisBudgetLedger.from_url(url, prefix=prefix)
        ledger = SqlBudgetLedger(url)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.close()


def test_64_concurrent_calls_stay_within_one_budget(
    make_ledger: Callable[[], BudgetLedger],
) -> None:
    ledger = make_ledger()
    limit = 20 * WORST + 500
    rng = random.Random(7)
    real = [rng.randint(WORST // 2, WORST) for _ in range(64 * 3)]
    start = threading.Barrier(64)

    def call(i: int) -> bool:
        if i < 64:
            start.wait()  # the first 64 all at once
        hold = ledger.reserve([BudgetCharge("project:p:tokens:run", limit, WORST)], hold_s=60)
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
    assert sum(admitted) >= 20  # what fits even at every call's worst case
    assert not all(admitted)


def test_64_reservations_at_once_take_exactly_the_room_there_is(
    make_ledger: Callable[[], BudgetLedger],
) -> None:
    """All 64 reserve at the same instant and none reconciles meanwhile: a check-then-hold
    that is not atomic lets more than 20 through."""
    ledger = make_ledger()
    charge = BudgetCharge("project:p:tokens:day:1", 20 * WORST + 500, WORST)
    start = threading.Barrier(64)

    def reserve(_: int) -> Hold:
        start.wait()
        return ledger.reserve([charge], hold_s=60)

    with ThreadPoolExecutor(64) as pool:
        holds = list(pool.map(reserve, range(64)))
    admitted = [h for h in holds if h.held]
    assert len(admitted) == 20
    assert ledger.spent(charge.key) == (0, 20 * WORST)
    refused = [h.refused for h in holds if h.refused is not None]
    assert all(r.used + r.held + r.amount > r.limit for r in refused)
    for hold in admitted:
        ledger.reconcile(hold, [WORST // 2])
    assert ledger.spent(charge.key) == (10 * WORST, 0)


RACER = textwrap.dedent(
    """
    import sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from tether.controls.budget_ledger import BudgetCharge, RedisBudgetLedger
    from tether.controls.budget_sql import SqlBudgetLedger
    backend, url, prefix, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if backend == "redis":
        ledger = RedisBudgetLedger.from_url(url, prefix=prefix)
    else:
        ledger = SqlBudgetLedger(url)
    ledger.spent("warm-up")  # connected (and migrated) before the start
    charge = BudgetCharge("project:race:tokens:day:1", 20_500, 1_000)
    def reserve(_):
        time.sleep(max(0.0, start_at - time.time()))
        return ledger.reserve([charge], hold_s=60).held
    with ThreadPoolExecutor(32) as pool:
        print(sum(pool.map(reserve, range(32))), flush=True)
    """
)


def test_two_processes_racing_take_exactly_the_room_there_is(
    request: pytest.FixtureRequest,
    ledger_url: tuple[str, str],
    make_ledger: Callable[[], BudgetLedger],
) -> None:
    backend, url = ledger_url
    prefix = str(request.getfixturevalue("redis_prefix")) if backend == "redis" else ""
    make_ledger().spent("warm-up")  # the store migrated once, before the race
    start_at = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, backend, url, prefix, start_at],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    held = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        held.append(int(out))
    assert sum(held) == 20
    assert make_ledger().spent("project:race:tokens:day:1") == (0, 20 * WORST)


def test_all_budgets_of_a_call_or_none(make_ledger: Callable[[], BudgetLedger]) -> None:
    ledger = make_ledger()
    roomy = BudgetCharge("agent:a:tokens:day:20261124", 10_000, 600)
    tight = BudgetCharge("end_user:u:tokens:day:20261124", 1_000, 600)
    first = ledger.reserve([roomy, tight], hold_s=60)
    assert first.held
    second = ledger.reserve([roomy, tight], hold_s=60)
    assert second.refused is not None
    assert (second.refused.key, second.refused.used, second.refused.held) == (tight.key, 0, 600)
    assert (second.refused.limit, second.refused.amount) == (1_000, 600)
    assert ledger.spent(roomy.key) == (0, 600)  # nothing held by the refused call
    ledger.reconcile(first, [450, 450])
    assert ledger.spent(roomy.key) == (450, 0) == ledger.spent(tight.key)
    smaller = [BudgetCharge(c.key, c.limit, 500) for c in (roomy, tight)]
    assert ledger.reserve(smaller, hold_s=60).held  # 450 used + 500 fits in 1000
    third = ledger.reserve([BudgetCharge(tight.key, tight.limit, 60)], hold_s=60)
    assert third.refused is not None
    assert (third.refused.used, third.refused.held) == (450, 500)


def test_the_first_budget_without_room_is_named(make_ledger: Callable[[], BudgetLedger]) -> None:
    ledger = make_ledger()
    a = BudgetCharge("b:a", 100, 150)
    b = BudgetCharge("a:b", 100, 150)  # sorts first: the refusal still follows the call's order
    hold = ledger.reserve([a, b], hold_s=60)
    assert hold.refused is not None and hold.refused.key == "b:a"
    with pytest.raises(ValueError, match="names a budget twice"):
        ledger.reserve([a, a], hold_s=60)


def test_a_dead_callers_hold_expires(make_ledger: Callable[[], BudgetLedger]) -> None:
    ledger = make_ledger()
    charge = BudgetCharge("run:r:usd:run:run", 1_000, 1_000)
    assert ledger.reserve([charge], hold_s=0.3).held  # its caller dies: never reconciled
    assert not ledger.reserve([charge], hold_s=0.3).held
    deadline = time.monotonic() + 10
    while not ledger.reserve([charge], hold_s=60).held:
        assert time.monotonic() < deadline, "the hold never expired"
        time.sleep(0.05)
    # A late reconcile of an expired hold still counts what was really used.
    late = ledger.reserve([BudgetCharge("run:r2:usd:run:run", 1_000, 500)], hold_s=0.2)
    time.sleep(0.4)
    assert ledger.spent("run:r2:usd:run:run") == (0, 0)
    ledger.reconcile(late, [400])
    assert ledger.spent("run:r2:usd:run:run") == (400, 0)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from tether.controls.budget_ledger import BudgetCharge, RedisBudgetLedger
    from tether.controls.budget_sql import SqlBudgetLedger
    backend, url, prefix = sys.argv[1:4]
    if backend == "redis":
        ledger = RedisBudgetLedger.from_url(url, prefix=prefix)
    else:
        ledger = SqlBudgetLedger(url)
    hold = ledger.reserve([BudgetCharge("project:killed:tokens:day:1", 1000, 900)], hold_s=1.5)
    print("held" if hold.held else "refused", flush=True)
    time.sleep(600)
    """
)


def test_a_process_killed_holding_a_reservation_loses_it_for_good(
    request: pytest.FixtureRequest,
    ledger_url: tuple[str, str],
    make_ledger: Callable[[], BudgetLedger],
) -> None:
    backend, url = ledger_url
    prefix = str(request.getfixturevalue("redis_prefix")) if backend == "redis" else ""
    ledger = make_ledger()
    key = "project:killed:tokens:day:1"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, backend, url, prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        assert ledger.spent(key) == (0, 900)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert not ledger.reserve([BudgetCharge(key, 1000, 900)], hold_s=60).held
        deadline = time.monotonic() + 15
        while ledger.spent(key)[1]:
            assert time.monotonic() < deadline, "the dead process's hold never expired"
            time.sleep(0.1)
        hold = ledger.reserve([BudgetCharge(key, 1000, 900)], hold_s=60)
        assert hold.held
        ledger.reconcile(hold, [700])
        assert ledger.spent(key) == (700, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_redis_keys_expire_with_their_window(redis_url: str, redis_prefix: str) -> None:
    import redis

    ledger = RedisBudgetLedger.from_url(redis_url, prefix=redis_prefix)
    hold = ledger.reserve([BudgetCharge("project:p:requests:minute:1", 10, 1, keep_s=90)], hold_s=5)
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"{redis_prefix}budget:project:p:requests:minute:1"
        for suffix in ("", ":holds"):
            assert 80_000 < client.pttl(key + suffix) <= 90_000
        assert client.zrange(key + ":holds", 0, -1) == [f"{hold.id}:1".encode()]
        ledger.reconcile(hold, [1])
        assert 80_000 < client.pttl(key) <= 90_000
        assert client.zcard(key + ":holds") == 0 and client.hgetall(key) == {
            b"used": b"1",
            b"held": b"0",
        }
        # Nothing Tether writes lives on without an expiry.
        assert all(client.pttl(k) > 0 for k in client.scan_iter(match=f"{redis_prefix}*"))
    finally:
        client.close()


def test_redis_down_is_a_clear_error() -> None:
    ledger = RedisBudgetLedger.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(BudgetUnavailable, match=r"budget store \(Redis at redis://127\.0\.0\.1:1"):
        ledger.reserve([BudgetCharge("project:p:tokens:day", 10, 1)], hold_s=1)


@pytest.mark.parametrize("awaited", [False, True], ids=["thread", "asyncio"])
def test_a_redis_that_never_answers_is_an_error_in_bounded_time(awaited: bool) -> None:
    """A black hole: it accepts connections and never says a word (both clients: the one
    worker threads use, and the asyncio one runs await)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        ledger = RedisBudgetLedger.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
        charges = [BudgetCharge("project:p:tokens:day", 10, 1)]
        started = time.monotonic()
        with pytest.raises(BudgetUnavailable, match="cannot be reached"):
            if awaited:
                asyncio.run(ledger.areserve(charges, hold_s=1))
            else:
                ledger.reserve(charges, hold_s=1)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def test_a_sql_store_that_is_down_is_a_clear_error(tmp_path: Path) -> None:
    ledger = SqlBudgetLedger("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(BudgetUnavailable, match=r"budget store \(SQL at postgresql"):
        ledger.reserve([BudgetCharge("project:p:tokens:day", 10, 1)], hold_s=1)
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "budgets.db").write_bytes(b"not a database, " * 100)
    broken = SqlBudgetLedger(f"sqlite:///{folder / 'budgets.db'}")
    with pytest.raises(BudgetUnavailable, match="cannot be used"):
        broken.reserve([BudgetCharge("project:p:tokens:day", 10, 1)], hold_s=1)


def test_old_budget_rows_and_expired_holds_are_purged(store_url: str) -> None:
    now = [10**18]
    ledger = SqlBudgetLedger(store_url, clock=lambda: now[0])
    try:
        old = ledger.reserve(
            [BudgetCharge("project:p:tokens:minute:1", 10, 1, keep_s=60)], hold_s=1
        )
        ledger.reconcile(old, [1])
        live = ledger.reserve(
            [BudgetCharge("project:p:tokens:day:2", 10, 3, keep_s=86_400)], hold_s=3600
        )
        ledger.reserve([BudgetCharge("project:p:tokens:day:3", 10, 2, keep_s=86_400)], hold_s=1)
        now[0] += 120 * 10**9  # two minutes on: the minute's row and the short hold are old
        assert ledger.purge() == 2
        assert ledger.spent("project:p:tokens:minute:1") == (0, 0)
        assert ledger.spent("project:p:tokens:day:2") == (0, 3)  # a live hold stays
        ledger.reconcile(live, [2])
        assert ledger.spent("project:p:tokens:day:2") == (2, 0)
    finally:
        ledger.close()


def test_reading_a_sqlite_budget_takes_no_write_lock(tmp_path: Path) -> None:
    """``spent`` (read by Cedar's budget context on every tool call) reads while another
    process holds the file's write lock: before, it took the write lock itself and, behind a
    writer, waited out the busy timeout and failed as "budget store cannot be used"."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'budgets.db'}"
    ledger = SqlBudgetLedger(url)
    charge = BudgetCharge("project:p:tokens:day:1", 10_000, WORST)
    ledger.reconcile(ledger.reserve([charge], hold_s=60), [300])
    held = ledger.reserve([charge], hold_s=60)
    writer = sqlite3.connect(tmp_path / "budgets.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's reservation, in the middle
    try:
        writer.execute("UPDATE tether_budgets SET used = used + 1")  # not committed: not seen
        assert ledger.spent(charge.key) == (300, WORST)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    ledger.reconcile(held, [200])
    assert ledger.spent(charge.key) == (500, 0)  # writes still work, and reads see them
    ledger.close()


def test_a_redis_that_closed_its_connections_is_used_again_at_once(
    redis_url: str, redis_prefix: str
) -> None:
    """Redis restarted (or a proxy dropped idle connections) since the last call: the next
    call connects again instead of failing closed on the dead connection (redis-py's RESP3
    pool hands it out unchecked), for the asyncio client runs await and the threads' one."""
    import redis

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy(0, (real["host"], int(real["port"])))
    ledger = RedisBudgetLedger.from_url(f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix)
    charges = [BudgetCharge("project:p:tokens:day", 100, 1)]

    async def seen_closed() -> None:
        # The client's event loop reads the close (as it would between two calls of a run).
        pool = ledger._async_scripts()[0].registered_client.connection_pool
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all([await c.can_read() for c in pool._available_connections]):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the client never saw its connection closed")

    async def calls() -> None:
        for _ in range(2):
            await ledger.areconcile(await ledger.areserve(charges, hold_s=30), [1])
            proxy.drop()
            await seen_closed()

    try:
        asyncio.run(calls())
        ledger.reconcile(ledger.reserve(charges, hold_s=30), [1])
        proxy.drop()
        assert ledger.spent("project:p:tokens:day") == (3, 0)
    finally:
        proxy.close()


@pytest.mark.parametrize("close", [False, True], ids=["timeout", "reset"])
@pytest.mark.parametrize("awaited", [False, True], ids=["thread", "asyncio"])
def test_a_reply_lost_after_redis_counted_is_not_sent_again(
    redis_url: str, redis_prefix: str, awaited: bool, close: bool
) -> None:
    """Redis ran the reconcile script and its reply was lost (a timeout, a reset): a client
    that retries sends it again and the call's usage is counted twice. A URL asking redis-py
    for retries (``retry_on_timeout=true``) did just that; the ledger's clients never retry."""
    import redis

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = ReplyDropper((real["host"], int(real["port"])), b"EVALSHA", close=close)
    url = f"redis://127.0.0.1:{proxy.port}/0?retry_on_timeout=true"
    ledger = RedisBudgetLedger.from_url(url, prefix=redis_prefix, timeout_s=0.5)
    direct = RedisBudgetLedger.from_url(redis_url, prefix=redis_prefix)
    charges = [BudgetCharge("project:p:tokens:day", 100, 10)]
    hold = direct.reserve(charges, hold_s=30)
    try:
        with pytest.raises(BudgetUnavailable, match="cannot be reached"):
            if awaited:
                asyncio.run(ledger.areconcile(hold, [7]))
            else:
                ledger.reconcile(hold, [7])
        assert proxy.dropped.is_set()
        assert direct.spent("project:p:tokens:day") == (7, 0)  # counted once, by Redis
    finally:
        proxy.close()


def test_a_url_asking_redis_py_to_retry_on_named_errors_is_refused_at_load(
    redis_url: str, redis_prefix: str
) -> None:
    """redis-py reads ``?retry_on_error=ConnectionError`` as the list of the value's
    characters: the first lost reply (a timeout) failed with ``TypeError``, which no budget
    check took for a Redis failure (the user saw "unexpected error"). The option is refused
    when the ledger is made, by name."""
    import redis

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = ReplyDropper((real["host"], int(real["port"])), b"EVALSHA", close=False)
    url = f"redis://127.0.0.1:{proxy.port}/0?retry_on_error=ConnectionError"
    quirky = redis.Redis.from_url(url, socket_timeout=0.5)
    try:
        with pytest.raises(TypeError):  # redis-py's own quirk: why the option is refused
            quirky.register_script("return 1")()
        assert proxy.dropped.is_set()
        with pytest.raises(TetherError) as info:
            RedisBudgetLedger.from_url(url, prefix=redis_prefix, timeout_s=0.5)
    finally:
        quirky.close()
        proxy.close()
    assert f"the Redis URL 'redis://127.0.0.1:{proxy.port}/0?retry_on_error=" in str(info.value)
    assert "sets retry_on_error, which Tether cannot use" in info.value.message
    assert info.value.hint is not None and "TETHER_REDIS_URL" in info.value.hint
