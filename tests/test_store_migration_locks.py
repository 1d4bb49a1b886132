"""A PostgreSQL migration waiting on a table another session holds gives up after
``TETHER_DB_LOCK_TIMEOUT_S`` with one clear error (which migration, which table, what to do),
the schema unchanged; it waited forever before (or until the statement timeout, saying only
"canceling statement"), and every query on that table queued behind it."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from fakes.store_0001 import run_0001, upgrade_to
from tether.core import StoreError
from tether.store import Store, create_store_engine
from tether.store.db import _PG_MIGRATION_LOCK, HEAD_REVISION


def _store_at_0009(url: str) -> Engine:
    """An engine on a store at revision 0009, the one before migrations 0010 and 0011."""
    engine = create_store_engine(url)
    with engine.begin() as conn:
        upgrade_to(conn, "0009")
    return engine


def test_a_migration_gives_up_on_a_table_another_session_holds(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_DB_LOCK_TIMEOUT_S", "0.5")
    # Far longer than the lock timeout: without it, this is what ended the wait.
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "20")
    engine = _store_at_0009(pg_url)
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


def _release_when_waited_on(holder: psycopg.Connection[Any], admin: str, linger_s: float) -> None:
    """End ``holder``'s transaction (its advisory lock) once another session waits for the
    migration lock, ``linger_s`` later (past the waiter's statement timeout)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(admin, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s "
                "AND NOT granted",
                (_PG_MIGRATION_LOCK,),
            ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.02)
    time.sleep(linger_s)  # time passing, not work awaited: past the statement timeout
    holder.rollback()


def test_a_replica_waits_for_another_process_migration_past_the_statement_timeout(
    pg_url: str, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "0.2")
    engine = _store_at_0009(pg_url)
    admin = pg_admin_url.replace("postgresql+psycopg://", "postgresql://")
    holder = psycopg.connect(admin)  # another process, migrating
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
    release = threading.Thread(target=_release_when_waited_on, args=(holder, admin, 1.0))
    release.start()
    try:
        Store(pg_url).close()  # was: "canceling statement due to statement timeout"
    finally:
        release.join()
        holder.close()
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM tether_alembic_version")).scalar()
        assert version == HEAD_REVISION
    engine.dispose()


def test_a_replica_gives_up_on_a_migration_that_does_not_end_and_says_so(
    pg_url: str, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_DB_MIGRATION_WAIT_S", "0.5")
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "20")
    engine = _store_at_0009(pg_url)
    admin = pg_admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
        with pytest.raises(StoreError) as info:
            Store(pg_url)
        holder.rollback()
    message = info.value.message
    assert "waited 0.5 s for another process's migration of it to end" in message
    assert f"advisory lock {_PG_MIGRATION_LOCK} is held" in message
    assert "still at revision 0009" in message
    assert info.value.hint is not None and "TETHER_DB_MIGRATION_WAIT_S" in info.value.hint
    assert f"objid = {_PG_MIGRATION_LOCK}" in info.value.hint
    engine.dispose()


def test_a_migration_updating_a_whole_table_runs_without_the_statement_timeout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0010 and 0011 update every run and span in one statement: on a large store that took
    longer than the statement timeout, and the upgrade was cancelled every time. Here an
    UPDATE of tether_runs is made to take 1 s (a trigger), far past the statement timeout,
    and past the wait for a silent server (statement plus connect timeout)."""
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "0.3")
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "0.2")
    engine = _store_at_0009(pg_url)
    with engine.begin() as conn:
        run_0001(conn, "a" * 32, 1234, run_id="b" * 16)
        conn.execute(
            text(
                "CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER slow_update AFTER UPDATE ON tether_runs "
                "FOR EACH STATEMENT EXECUTE FUNCTION slow_update()"
            )
        )
    Store(pg_url).close()  # was: "canceling statement due to statement timeout"
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM tether_alembic_version")).scalar()
        assert version == HEAD_REVISION
        assert conn.execute(text("SELECT run_seq FROM tether_runs")).scalar() == 1234
    engine.dispose()


def test_a_sqlite_process_gives_up_on_another_process_migration_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It waited on the migration's lock file for ever."""
    monkeypatch.setenv("TETHER_DB_MIGRATION_WAIT_S", "0.3")
    db = tmp_path / "t.db"
    url = f"sqlite:///{db}"
    _store_at_0009(url).dispose()
    lock_file = f"{db}.migrate.lock"
    with open(lock_file, "a+b") as held:  # another process, migrating
        fcntl.flock(held, fcntl.LOCK_EX)
        # Without a bound the wait would last for ever: the lock is let go after a while,
        # and then the store opens (no error).
        releaser = threading.Timer(15, fcntl.flock, args=(held, fcntl.LOCK_UN))
        releaser.start()
        try:
            with pytest.raises(StoreError) as info:
                Store(url)
        finally:
            releaser.cancel()
            fcntl.flock(held, fcntl.LOCK_UN)
    message = info.value.message
    assert f"the lock file {lock_file} is held" in message
    assert "waited 0.3 s for another process's migration" in message
    assert info.value.hint is not None and "TETHER_DB_MIGRATION_WAIT_S" in info.value.hint
    Store(url).close()  # the lock free, it migrates
