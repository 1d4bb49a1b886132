"""``SqlBudgetLedger``: budgets counted in the store's database (SQLite or PostgreSQL).

Each reservation is one transaction that locks the rows of the budgets it touches before it
reads them: ``BEGIN IMMEDIATE`` on SQLite (the database's write lock, taken at the start; this
process's transactions also take turns on a lock of their own, so they never sleep in SQLite's
busy handler), and on PostgreSQL an upsert per budget (``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING used``: the conditional update locks the row until the transaction ends, as ``SELECT
... FOR UPDATE`` would, in one round trip), in key order so two reservations never wait on each
other in a circle. Under the locks it adds up the budgets' live holds (expired ones no longer
count) and holds the call's amounts only if every budget has room. A reconciliation locks the
same rows first (the upsert adding what was used), then deletes its holds. Rows past their
keeping time and expired holds are purged now and then, skipping rows another transaction
holds (``FOR UPDATE SKIP LOCKED``), so tidying never waits on a reservation. Reading what a
budget has used (``spent``) locks nothing: a deferred transaction on SQLite (one WAL snapshot).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, delete, event, select, text
from sqlalchemy.exc import SQLAlchemyError

from tether.controls.budget_ledger import (
    BudgetCharge,
    BudgetUnavailable,
    Hold,
    Refusal,
    check_charges,
    new_hold_id,
)
from tether.core import StoreError, now_ns
from tether.store import tables
from tether.store.db import create_store_engine, driver_message, migrate, redact_url

log = logging.getLogger("tether.budgets")

PURGE_EVERY_NS = 60 * 1_000_000_000
"""How often (at most) a ledger drops rows past their window and expired holds."""
PURGE_BATCH = 500


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


class SqlBudgetLedger:
    """Budgets in the tables ``tether_budgets`` and ``tether_budget_holds`` of the database at
    ``url`` (migrated when first used). ``clock`` gives the time in nanoseconds (holds expire
    by it; every process sharing the database should agree on the time)."""

    backend = "sql"

    def __init__(self, url: str, *, clock: Callable[[], int] = now_ns) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.clock = clock
        self.engine = create_store_engine(url)
        self.sqlite = self.engine.url.get_backend_name() == "sqlite"
        if self.sqlite:
            # The driver's own transaction handling off, so each transaction starts with
            # BEGIN IMMEDIATE: the write lock is taken before the budgets are read.
            event.listen(self.engine, "connect", _driver_autocommit)
            event.listen(self.engine, "begin", _begin_immediate)
        elif self.engine.url.get_backend_name() == "postgresql":
            event.listen(self.engine, "connect", _asynchronous_commit)
        # SQLite has one writer at a time anyway: this process's transactions take turns here
        # rather than in SQLite's busy handler, which sleeps up to 100 ms between tries (and an
        # in-memory database is one connection, which cannot hold two transactions at once).
        self._turns: threading.Lock | None = threading.Lock() if self.sqlite else None
        # A read (``spent``) needs no write lock: on a SQLite file in WAL mode a deferred
        # transaction reads one snapshot while a writer works. An in-memory database is one
        # shared connection, so its reads still take turns.
        self._memory = self.sqlite and self.engine.url.database in (None, "", ":memory:")
        self._ready = False
        self._ready_lock = threading.Lock()
        self._next_purge = 0

    def close(self) -> None:
        self.engine.dispose()

    # -- the ledger ------------------------------------------------------------------------

    def reserve(self, charges: Sequence[BudgetCharge], *, hold_s: float = 120.0) -> Hold:
        check_charges(charges)
        hold_id = new_hold_id()
        with self._transaction() as conn:
            now = self.clock()
            used = self._touch(
                conn, [(c.key, 0, now + _ns(max(c.keep_s, hold_s))) for c in charges]
            )
            keys = list(used)
            held = {
                k: int(s or 0) for k, s in conn.execute(_HELD, {"keys": keys, "now": now}).all()
            }
            for c in charges:  # in the caller's order: the first budget without room refuses
                spent, holding = used[c.key], held.get(c.key, 0)
                if spent + holding + c.amount > c.limit:
                    refusal = Refusal(c.key, c.limit, c.amount, spent, holding)
                    return Hold(hold_id, (), refused=refusal)
            expires = now + _ns(hold_s)
            conn.execute(
                _HOLD,
                [
                    {"hold_id": hold_id, "key": c.key, "amount": c.amount, "expires_ns": expires}
                    for c in charges
                ],
            )
        return Hold(hold_id, tuple(charges))

    def reconcile(self, hold: Hold, used: Sequence[int]) -> None:
        if not hold.held or not hold.charges:
            return
        amounts = dict(zip(hold.keys, used, strict=True))
        with self._transaction() as conn:
            now = self.clock()
            # The budgets' rows first, as a reservation locks them, then the holds.
            self._touch(
                conn, [(c.key, int(amounts[c.key]), now + _ns(c.keep_s)) for c in hold.charges]
            )
            conn.execute(_RELEASE, {"hold_id": hold.id})
        self._maybe_purge()

    def spent(self, key: str) -> tuple[int, int]:
        """What the budget ``key`` has used and holds now. A read: on SQLite it takes no write
        lock, so it neither waits for reservations (of any process) nor makes them wait."""
        with self._transaction(read_only=True) as conn:
            now = self.clock()
            used = conn.execute(_USED, {"key": key}).scalar()
            held = conn.execute(_HELD, {"keys": [key], "now": now}).all()
        return int(used or 0), int(held[0][1] or 0) if held else 0

    # -- inside ------------------------------------------------------------------------------

    def _touch(self, conn: Connection, rows: list[tuple[str, int, int]]) -> dict[str, int]:
        """Each budget's row (key, amount, keep until) made if missing, ``used`` raised by the
        amount, kept at least until the given time; returns what each has used now. One
        statement, in key order: an upsert that finds a row updates it, which on PostgreSQL
        locks it until the transaction ends (every transaction locks in the same order)."""
        ordered = sorted(rows)
        params: dict[str, Any] = {}
        for i, (key, used, expires) in enumerate(ordered):
            params.update({f"k{i}": key, f"u{i}": used, f"e{i}": expires})
        statement = _upsert(len(ordered), "max" if self.sqlite else "greatest")
        return {k: int(u) for k, u in conn.execute(statement, params).all()}

    @contextmanager
    def _transaction(self, *, read_only: bool = False) -> Iterator[Connection]:
        self._ensure_ready()
        shared = not read_only or self._memory
        turns = self._turns if self._turns is not None and shared else nullcontext()
        try:
            with turns, self.engine.connect() as conn:
                if read_only:
                    conn = conn.execution_options(tether_read_only=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise self._unavailable(driver_message(exc)) from None

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                migrate(self.engine)
            except StoreError as exc:
                raise self._unavailable(exc.message) from None
            self._ready = True

    def _unavailable(self, why: str) -> BudgetUnavailable:
        return BudgetUnavailable(
            f"the budget store (SQL at {self.shown_url}) cannot be used: {why}",
            hint="check the database (TETHER_DATABASE_URL) is reachable and writable; budgets "
            "fail closed unless the spec's budgets section says fail_open: true",
        )

    def _maybe_purge(self) -> None:
        now = self.clock()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY_NS
        try:
            self.purge(now)
        except BudgetUnavailable as exc:  # only tidying: the next purge tries again
            log.warning("purging old budget rows failed: %s", exc.message)

    def purge(self, now: int | None = None) -> int:
        """Drop budget rows past their keeping time and expired holds, a batch of each,
        skipping rows another transaction holds; returns how many rows went."""
        now = self.clock() if now is None else now
        b, h = tables.budgets, tables.budget_holds
        gone = 0
        for table, keys, when in (
            (b, [b.c.key], b.c.expires_ns),
            (h, [h.c.hold_id, h.c.key], h.c.expires_ns),
        ):
            with self._transaction() as conn:
                old: Any = select(*keys).where(when < now).limit(PURGE_BATCH)
                if not self.sqlite:
                    old = old.with_for_update(skip_locked=True)
                found = conn.execute(old).all()
                for row in found:
                    conn.execute(
                        delete(table).where(
                            *(col == value for col, value in zip(keys, row, strict=True)),
                            when < now,
                        )
                    )
                gone += len(found)
        return gone


@functools.cache
def _upsert(rows: int, later: str) -> TextClause:
    """The upsert of ``rows`` budgets (``later``: SQLite's ``max``, PostgreSQL's ``greatest``)."""
    values = ", ".join(f"(:k{i}, :u{i}, :e{i})" for i in range(rows))
    return text(
        f"INSERT INTO tether_budgets (key, used, expires_ns) VALUES {values} "
        "ON CONFLICT (key) DO UPDATE SET used = tether_budgets.used + excluded.used, "
        f"expires_ns = {later}(tether_budgets.expires_ns, excluded.expires_ns) "
        "RETURNING key, used"
    )


_HELD = text(
    "SELECT key, SUM(amount) FROM tether_budget_holds "
    "WHERE key IN :keys AND expires_ns > :now GROUP BY key"
).bindparams(bindparam("keys", expanding=True))
_HOLD = text(
    "INSERT INTO tether_budget_holds (hold_id, key, amount, expires_ns) "
    "VALUES (:hold_id, :key, :amount, :expires_ns)"
)
_RELEASE = text("DELETE FROM tether_budget_holds WHERE hold_id = :hold_id")
_USED = text("SELECT used FROM tether_budgets WHERE key = :key")


def _driver_autocommit(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _asynchronous_commit(dbapi_conn: Any, _record: Any) -> None:
    """This engine's commits do not wait for the WAL flush: a budget's rows are locked until
    commit, so a calls' check would otherwise wait for every disk flush before it. A database
    that crashes can lose the last moment's counts (PostgreSQL's ``wal_writer_delay``, three
    times over at most), never more, and never leaves them inconsistent."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SET synchronous_commit TO off")
    dbapi_conn.commit()


def _begin_immediate(conn: Connection) -> None:
    """Writes take SQLite's write lock at BEGIN; reads (``tether_read_only``) begin deferred."""
    read = conn.get_execution_options().get("tether_read_only", False)
    conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


_ledgers: dict[str, SqlBudgetLedger] = {}
_ledgers_lock = threading.Lock()


def shared_sql_ledger(url: str) -> SqlBudgetLedger:
    """One SQL ledger (one engine) per database URL in a process."""
    with _ledgers_lock:
        ledger = _ledgers.get(url)
        if ledger is None:
            ledger = SqlBudgetLedger(url)
            _ledgers[url] = ledger
        return ledger
