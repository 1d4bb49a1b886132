"""Golden stores: a store made by an older schema revision, with data, upgrades to the head.

Each store is built here by migrating to the old revision with Alembic and inserting rows the
way that version of Tether wrote them (not a binary file in the repository)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from fakes.store_0001 import (
    event_0001,
    insert,
    run_0001,
    schema_differences,
    span_0001,
    upgrade_to_0001,
)
from tether.core import StoreError, new_span_id
from tether.store import RunRecord, SpanRecord, Store, TraceBatch, create_store_engine
from tether.store.db import HEAD_REVISION, MIGRATIONS_DIR, migrate
from tether.store.tables import VERSION_TABLE

# Revision 0001: runs keyed by trace id.
TRACE_DONE = "4bf92f3577b34da6a3ce929d0e0e4736"
"""A run that ended: its root span was written."""
ROOT_DONE, MODEL_DONE = "a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACE_CRASHED = "0af7651916cd43dd8448eb211c80319c"
"""A run whose process died: its root span (written when a run ends) never was."""
TOOL_CRASHED = "b7ad6b7169203331"
TRACE_REUSED = "c" * 32
"""Two runs under one trace id: 0001 dropped the second run's row but kept its spans."""
ROOT_FIRST, CHILD_FIRST = "c100000000000001", "c1c1000000000001"
ROOT_SECOND, CHILD_SECOND = "c200000000000002", "c2c2000000000002"
T0 = 1_767_225_600_000_000_000
_TABLES = ("tether_runs", "tether_spans", "tether_events", "tether_checkpoints")


def make_store_0001(url: str) -> None:
    """A store at revision 0001 holding the three runs described above."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            upgrade_to_0001(conn)
            run_0001(conn, TRACE_DONE, T0)
            span_0001(conn, TRACE_DONE, ROOT_DONE, None, "agent", T0 + 1)
            span_0001(conn, TRACE_DONE, MODEL_DONE, ROOT_DONE, "model", T0 + 2)
            event_0001(conn, TRACE_DONE, MODEL_DONE, T0 + 3)
            insert(
                conn,
                "tether_checkpoints",
                trace_id=TRACE_DONE,
                schema_version=1,
                created_ns=T0 + 4,
                reason="paused",
                state='{"schema_version":1}',
            )
            run_0001(
                conn,
                TRACE_CRASHED,
                T0 + 100,
                status="running",
                outcome=None,
                output=None,
                ended_ns=None,
            )
            span_0001(conn, TRACE_CRASHED, TOOL_CRASHED, "c80319c0c80319c0", "tool", T0 + 101)
            event_0001(conn, TRACE_CRASHED, None, T0 + 102)
            run_0001(conn, TRACE_REUSED, T0 + 200)
            # The second run's root starts later; listed first, so row order does not decide.
            span_0001(conn, TRACE_REUSED, ROOT_SECOND, None, "agent", T0 + 301)
            span_0001(conn, TRACE_REUSED, CHILD_SECOND, ROOT_SECOND, "model", T0 + 302)
            span_0001(conn, TRACE_REUSED, ROOT_FIRST, None, "agent", T0 + 201)
            span_0001(conn, TRACE_REUSED, CHILD_FIRST, ROOT_FIRST, "model", T0 + 202)
    finally:
        engine.dispose()


def test_a_0001_store_upgrades_with_each_run_keyed_by_its_root_span(store_url: str) -> None:
    make_store_0001(store_url)
    store = Store(store_url)  # migrates to the head
    try:
        done = store.get_run(TRACE_DONE)
        assert (done.run_id, done.trace_id, done.status, done.cost_usd) == (
            ROOT_DONE,
            TRACE_DONE,
            "completed",
            0.5,
        )
        assert done.attributes == {"tether.agent.paradigm": "react"}
        spans = store.get_spans(ROOT_DONE)
        assert [(s.span_id, s.run_id, s.trace_id) for s in spans] == [
            (ROOT_DONE, ROOT_DONE, TRACE_DONE),
            (MODEL_DONE, ROOT_DONE, TRACE_DONE),
        ]
        assert [(e.run_id, e.span_id) for e in store.get_events(ROOT_DONE)] == [
            (ROOT_DONE, MODEL_DONE)
        ]
        [checkpoint] = store.get_checkpoints(ROOT_DONE)
        assert (checkpoint.run_id, checkpoint.reason) == (ROOT_DONE, "paused")

        # No root span: an id derived from the trace id.
        crashed = store.get_run(TRACE_CRASHED)
        assert crashed.run_id == TRACE_CRASHED[:16] and crashed.status == "running"
        assert [s.span_id for s in store.get_spans(crashed.run_id)] == [TOOL_CRASHED]
        assert len(store.get_events(crashed.run_id)) == 1

        # The row belonged to the trace's first run; the spans 0001 attached to it stay.
        reused = store.get_run(TRACE_REUSED)
        assert reused.run_id == ROOT_FIRST
        assert [s.span_id for s in store.get_spans(ROOT_FIRST)] == [
            ROOT_FIRST,
            CHILD_FIRST,
            ROOT_SECOND,
            CHILD_SECOND,
        ]
        assert store.get_run(ROOT_FIRST) == reused

        assert schema_differences(store.engine) == []
    finally:
        store.close()


def test_crashed_0001_runs_whose_trace_ids_share_their_first_half_upgrade(
    store_url: str,
) -> None:
    """Runs without a root span are keyed by the first half of their trace id: a 64-bit
    trace id written as 128 bits (B3, Jaeger, Zipkin; OpenTelemetry pads it with zeros on the
    left) has an all-zero first half, and two such crashed runs made the upgrade fail on the
    new primary key (UNIQUE constraint failed; could not create unique index), so the store
    could not be opened at all. They take the other half of their trace id."""
    first, second = "0" * 16 + "5b8efff798038103", "0" * 16 + "d269b633813fc60c"
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            upgrade_to_0001(conn)
            for n, trace in enumerate((first, second)):
                run_0001(conn, trace, T0 + n, status="running", ended_ns=None)
                span_0001(conn, trace, f"{n + 1:016x}", "0" * 15 + "9", "tool", T0 + n)
            run_0001(conn, TRACE_CRASHED, T0 + 2, status="running", ended_ns=None)
    finally:
        engine.dispose()
    store = Store(store_url)
    try:
        for n, trace in enumerate((first, second)):
            run = store.get_run(trace)
            assert (run.run_id, run.status) == (trace[16:], "running")
            assert [s.span_id for s in store.get_spans(run.run_id)] == [f"{n + 1:016x}"]
        assert store.get_run(TRACE_CRASHED).run_id == TRACE_CRASHED[:16]  # as before
    finally:
        store.close()


def test_an_upgraded_store_keeps_foreign_keys_and_takes_runs_sharing_a_trace(
    store_url: str,
) -> None:
    make_store_0001(store_url)
    store = Store(store_url)
    try:
        run_id = new_span_id()
        later = RunRecord(
            trace_id=TRACE_DONE, run_id=run_id, agent_name="new", agent_version="v1", started_ns=T0
        )
        root = SpanRecord(
            TRACE_DONE, run_id, None, "invoke_agent new", "agent", T0 + 1, T0 + 2, run_id=run_id
        )
        store.write(TraceBatch(runs_started=[later], spans=[root]))
        assert store.get_run(run_id) == later
        assert store.get_spans(run_id) == [root]
        assert [s.span_id for s in store.get_spans(ROOT_DONE)] == [ROOT_DONE, MODEL_DONE]
        with pytest.raises(StoreError, match="several runs") as shared:
            store.get_run(TRACE_DONE)
        assert ROOT_DONE in shared.value.message and run_id in shared.value.message

        orphan = SpanRecord(TRACE_DONE, new_span_id(), None, "x", "tool", 1, 2, run_id="f" * 16)
        with pytest.raises(StoreError, match="writing to"):
            store.write(TraceBatch(spans=[orphan]))
    finally:
        store.close()


def test_a_failed_sqlite_migration_leaves_the_store_as_it_was(sqlite_url: str) -> None:
    """A span whose run is missing (written with foreign keys off, outside Tether) cannot be
    given a run: the upgrade fails as a whole, and the store stays a valid 0001 store."""
    make_store_0001(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    raw = sqlite3.connect(path)
    raw.execute(
        "INSERT INTO tether_spans VALUES (?, ?, NULL, 'lost', 'tool', 1, 2, 'ok', NULL, '{}')",
        (new_span_id(), "d" * 32),
    )
    raw.commit()
    before = {t: raw.execute(f"SELECT * FROM {t}").fetchall() for t in _TABLES}
    raw.close()

    with pytest.raises(StoreError, match="NOT NULL"):
        Store(sqlite_url)

    raw = sqlite3.connect(path)
    try:
        assert raw.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [("0001",)]
        for table in _TABLES:
            columns = [r[1] for r in raw.execute(f"PRAGMA table_info({table})")]
            assert "run_id" not in columns, f"{table} was altered"
            assert raw.execute(f"SELECT * FROM {table}").fetchall() == before[table]
        raw.execute("DELETE FROM tether_spans WHERE name = 'lost'")
        raw.commit()
    finally:
        raw.close()
    store = Store(sqlite_url)  # repaired: the upgrade goes through
    try:
        assert store.get_run(TRACE_DONE).run_id == ROOT_DONE
        assert [s.span_id for s in store.get_spans(TRACE_CRASHED[:16])] == [TOOL_CRASHED]
    finally:
        store.close()


def test_a_0001_store_with_its_revision_in_alembic_version_is_carried_over_and_upgraded(
    sqlite_url: str,
) -> None:
    """Stores made before Tether had its own version table were at 0001."""
    make_store_0001(sqlite_url)
    raw = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    raw.execute(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version")
    raw.commit()
    raw.close()
    store = Store(sqlite_url)
    try:
        assert store.get_run(TRACE_DONE).run_id == ROOT_DONE
        assert [s.span_id for s in store.get_spans(ROOT_DONE)] == [ROOT_DONE, MODEL_DONE]
    finally:
        store.close()


def test_the_head_revision_constant_is_alembics_head() -> None:
    """``HEAD_REVISION`` lets a store at head open without Alembic: it must name the newest
    migration, or a store would be taken as up to date when it is not (or migrated again)."""
    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == HEAD_REVISION


_OPEN_AND_REPORT = """
import json, sys
from tether.store import Store
store = Store(sys.argv[1])
store.close()
print(json.dumps({"alembic": any(m.split(".")[0] == "alembic" for m in sys.modules)}))
"""


def _opened_with_alembic(url: str) -> bool:
    """Open the store in a fresh interpreter: whether Alembic was imported."""
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_REPORT, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return bool(json.loads(done.stdout.splitlines()[-1])["alembic"])


def test_a_store_at_head_opens_without_alembic_and_an_older_one_is_migrated(
    store_url: str,
) -> None:
    """A new store is migrated (Alembic loaded); opening it again, at head, reads its
    revision with plain SQL and loads no Alembic; a store one revision behind is still
    upgraded."""
    assert _opened_with_alembic(store_url)
    assert not _opened_with_alembic(store_url)
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:  # one revision back, by the head migration's downgrade
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")
        with engine.connect() as conn:
            behind = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        assert behind != [(HEAD_REVISION,)]
        schema_behind = _schema(engine)
    finally:
        engine.dispose()
    assert _opened_with_alembic(store_url)
    engine = create_store_engine(store_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all() == [
                (HEAD_REVISION,)
            ]
        assert _schema(engine) != schema_behind
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def _schema(engine: Engine) -> dict[str, list[str]]:
    """Tables with their columns, primary keys and the names of their indexes and
    triggers."""
    found = inspect(engine)
    triggers = _triggers(engine)
    return {
        t: [
            *sorted(c["name"] for c in found.get_columns(t)),
            f"primary key {found.get_pk_constraint(t)['constrained_columns']}",
            *sorted(f"index {i['name']}" for i in found.get_indexes(t)),
            *sorted(f"trigger {name}" for table, name in triggers if table == t),
        ]
        for t in found.get_table_names()
    }


def _triggers(engine: Engine) -> list[tuple[str, str]]:
    """(table, trigger) of the store's triggers (SQLAlchemy's inspector lists none)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            query = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = (
                "SELECT DISTINCT event_object_table, trigger_name FROM information_schema.triggers"
                " WHERE trigger_schema = current_schema()"
            )
        return [(str(t), str(n)) for t, n in conn.execute(text(query))]


def test_two_stores_migrated_at_once_in_one_process_each_get_their_own_schema(
    tmp_path: Path, pg_url: str
) -> None:
    """Alembic keeps the migration under way in module globals: two threads migrating two
    databases at once (the trace store on SQLite and a budget ledger on PostgreSQL, say) ran
    on each other's connection, or failed, before migrations took turns in a process."""
    schema = pg_url.rsplit("search_path%3D", 1)[1]
    for attempt in range(4):
        engines = [
            create_store_engine(f"sqlite:///{tmp_path / f'store{attempt}.db'}"),
            create_store_engine(pg_url),
        ]
        with engines[1].begin() as conn:  # PostgreSQL from scratch each time
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE; CREATE SCHEMA "{schema}"')
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        threads = [threading.Thread(target=_migrate_at, args=(e, start, errors)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for engine in engines:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
            assert {"tether_runs", "tether_events", "tether_budgets", VERSION_TABLE} <= tables
            engine.dispose()


def _migrate_at(engine: Engine, start: threading.Barrier, errors: list[BaseException]) -> None:
    start.wait()
    try:
        migrate(engine)
    except BaseException as exc:  # the test reports it
        errors.append(exc)
