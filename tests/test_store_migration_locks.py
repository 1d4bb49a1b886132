"""A PostgreSQL migration waiting on a table another session holds gives up after
``TETHER_DB_LOCK_TIMEOUT_S`` with one clear error (which migration, which table, what to do),
the schema unchanged; it waited forever before (or until the statement timeout, saying only
"canceling statement"), and every query on that table queued behind it."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from fakes.store_0001 import upgrade_to
from tether.core import StoreError
from tether.store import Store, create_store_engine
from tether.store.db import HEAD_REVISION


def test_a_migration_gives_up_on_a_table_another_session_holds(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_DB_LOCK_TIMEOUT_S", "0.5")
    # Far longer than the lock timeout: without it, this is what ended the wait.
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "20")
    engine = create_store_engine(pg_url)
    with engine.begin() as conn:
        upgrade_to(conn, "0009")
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as holder:  # a reader in an open transaction
        holder.execute("SELECT count(*) FROM tether_spans").fetchall()
        with pytest.raises(StoreError) as info:
            Store(pg_url)
        holder.rollback()
    message = info.value.message
    assert "migration 0010_spans_by_run_seq waited 0.5 s for table tether_spans" in message
    assert "lock timeout" in message and "still at revision 0009" in message
    assert info.value.hint is not None
    assert "'tether_spans'::regclass" in info.value.hint
    assert "TETHER_DB_LOCK_TIMEOUT_S" in info.value.hint
    with engine.connect() as conn:  # all or nothing: nothing of 0010 is left
        version = conn.execute(text("SELECT version_num FROM tether_alembic_version")).scalar()
        assert version == "0009"
    Store(pg_url).close()  # the session gone, it migrates
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM tether_alembic_version")).scalar()
        assert version == HEAD_REVISION
    engine.dispose()
