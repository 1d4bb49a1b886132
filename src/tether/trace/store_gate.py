"""How the trace writer reaches its store: opened on first use (in the writer's thread, never
the caller's), told apart from a store that cannot take records for now, and watched for a
SQLite file deleted or replaced under it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from tether.core import StoreError
from tether.store import Store
from tether.store.db import file_identity, sqlite_file

T = TypeVar("T")


class StoreUnavailable(StoreError):
    """The store cannot take records for now, and retrying at once will not help: it cannot
    be opened (not a database, a schema from a newer Tether), its user may not write to it,
    its tables are gone, or its SQLite file was deleted or replaced while this process wrote
    to it. Records wait, in the journal, rather than be written somewhere nobody looks or be
    dropped as if the store had rejected them."""


# Errors of the store, not of a record: every record would fail the same way, so none is
# skipped as rejected (they wait, in the journal, until the store is fixed).
_STORE_LEVEL_SQLSTATES = {
    "42501",  # insufficient_privilege: the user may not write these tables
    "25006",  # read_only_sql_transaction: a read-only replica or session
    "42P01",  # undefined_table: the tables were dropped under the process
    "3F000",  # invalid_schema_name: so was the schema
}


STATEMENT_TIMEOUT = "57014"
"""query_canceled: PostgreSQL's statement_timeout cut the statement off."""


def timed_out(exc: StoreError) -> bool:
    """The database cut the statement off (its statement timeout): the store is up, but this
    batch may be too big to write in the time allowed."""
    return _sqlstate(exc) == STATEMENT_TIMEOUT


def _sqlstate(exc: StoreError) -> str | None:
    orig = getattr(exc.__cause__, "orig", None)
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_transient(exc: StoreError) -> bool:
    """Worth retrying: the database is unreachable, locked, or dropped the connection."""
    cause = exc.__cause__
    if isinstance(cause, OperationalError | DisconnectionError):
        return True
    return isinstance(cause, DBAPIError) and bool(cause.connection_invalidated)


def must_wait(exc: StoreError) -> bool:
    """Records must wait (not be skipped as rejected): the store is down or unusable."""
    return isinstance(exc, StoreUnavailable) or is_transient(exc)


class StoreGate:
    """Every call the writer thread makes on its store. The store is opened (and migrated) by
    the first call; a SQLite file's identity is taken then and checked before and after each
    call, so records are not committed into a fresh empty file made where the old one was
    deleted, nor their journal discarded after a commit into a deleted file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = sqlite_file(store.url)
        self._identity: tuple[int, int] | None = None

    def call(self, work: Callable[[], T]) -> T:
        try:
            self.store.ensure_ready()
        except StoreError as exc:
            if is_transient(exc):
                raise
            raise StoreUnavailable(exc.message, hint=exc.hint) from exc
        self._check_file()
        try:
            result = work()
        except StoreError as exc:
            if _sqlstate(exc) in _STORE_LEVEL_SQLSTATES:  # no record's fault: they all wait
                raise StoreUnavailable(exc.message, hint=exc.hint) from exc
            raise
        self._check_file()
        return result

    def _check_file(self) -> None:
        if self.path is None:
            return
        current = file_identity(self.path)
        if self._identity is None and current is not None:
            self._identity = current
        elif current is None or current != self._identity:
            raise StoreUnavailable(
                f"the SQLite store file {self.path} was deleted or replaced while this process "
                "was writing to it",
                hint="its trace records are kept in the trace journal and are written to the "
                "store at that path the next time Tether opens it",
            )
