"""Migration 0011: a run or span inserted without a ``run_seq`` gets one from the database.

A process still running a Tether from before 0010 (a replica not yet replaced in a rolling
upgrade) goes on writing to a store another process has upgraded: its inserts name only the
columns it knows. Its runs and spans had no ``run_seq``, and every read of a run's spans
(``tables.spans_of_run``) found none of them, for good. Checked here with the inserts such a
writer makes (the 0009 columns), before and after the upgrade, on SQLite and PostgreSQL; and
the migration goes down and up again."""

from __future__ import annotations

from sqlalchemy import Engine, text

from fakes.store_0001 import downgrade_to, insert, insert_span_0009, run_row_0001, upgrade_to
from tether.store import RunRecord, SpanRecord, Store, TraceBatch, create_store_engine
from tether.store.db import HEAD_REVISION

T0 = 1_700_000_000_000_000_000


def _old_writer_run(engine: Engine, run_id: str, started: int, children: int) -> None:
    """A run and its spans inserted as a writer from before 0010 inserts them: no
    ``run_seq`` named."""
    trace = run_id * 2
    with engine.begin() as conn:
        insert(conn, "tether_runs", **{**run_row_0001(trace, started), "run_id": run_id})
        for n in range(children + 1):
            span_id = run_id if n == 0 else f"{run_id[:14]}{n:02d}"
            insert_span_0009(
                conn,
                span_id=span_id,
                run_id=run_id,
                trace_id=trace,
                parent_id=None if n == 0 else run_id,
                name=f"span {n}",
                kind="agent" if n == 0 else "tool",
                start_ns=started + n,
                end_ns=started + 100,
            )


def _span_ids(store: Store, run_id: str) -> list[str]:
    return [s.span_id for s in store.get_trace(run_id).spans]


def _unkeyed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM tether_runs WHERE run_seq IS NULL)"
                    " + (SELECT count(*) FROM tether_spans WHERE run_seq IS NULL)"
                )
            ).scalar_one()
        )


def test_an_older_writer_s_runs_keep_their_spans_readable(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0010")
        # Written at 0010 by an older writer: before this migration, unreadable spans.
        _old_writer_run(engine, "a1a1a1a1a1a1a1a1", T0, children=2)
        assert _unkeyed(engine) == 4
        store = Store(store_url)  # upgrades to the head
        try:
            assert _unkeyed(engine) == 0
            assert _span_ids(store, "a1a1a1a1a1a1a1a1") == [
                "a1a1a1a1a1a1a1a1",
                "a1a1a1a1a1a1a101",
                "a1a1a1a1a1a1a102",
            ]
            # Written after the upgrade by the same older writer, still running.
            _old_writer_run(engine, "b2b2b2b2b2b2b2b2", T0 + 1000, children=1)
            assert _unkeyed(engine) == 0
            assert _span_ids(store, "b2b2b2b2b2b2b2b2") == ["b2b2b2b2b2b2b2b2", "b2b2b2b2b2b2b201"]
            # A current writer's runs keep the run_seq it gives them.
            run = RunRecord(
                trace_id="c3" * 16,
                run_id="c3c3c3c3c3c3c3c3",
                agent_name="a",
                agent_version="v",
                started_ns=T0 + 2000,
                input="hi",
                attributes={},
            )
            span = SpanRecord(
                trace_id=run.trace_id,
                run_id=run.run_id,
                span_id=run.run_id,
                parent_id=None,
                name="invoke_agent a",
                kind="agent",
                start_ns=run.started_ns,
                end_ns=run.started_ns + 5,
            )
            store.write(TraceBatch(runs_started=[run], spans=[span]))
            with engine.connect() as conn:
                seq = conn.execute(
                    text("SELECT run_seq FROM tether_runs WHERE run_id = :r"), {"r": run.run_id}
                ).scalar_one()
                revision = conn.execute(text("SELECT version_num FROM tether_alembic_version"))
                assert revision.scalar_one() == HEAD_REVISION
            assert seq != run.started_ns  # the writer's clock, not the trigger's started_ns
            assert _span_ids(store, run.run_id) == [run.run_id]
        finally:
            store.close()
    finally:
        engine.dispose()


def test_0011_downgrades_to_0010_and_back(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0011")
        with engine.begin() as conn:
            downgrade_to(conn, "0010")
        _old_writer_run(engine, "d4d4d4d4d4d4d4d4", T0, children=1)
        assert _unkeyed(engine) == 3  # a run and two spans: no trigger at 0010
        with engine.begin() as conn:
            upgrade_to(conn, "0011")
        assert _unkeyed(engine) == 0
        _old_writer_run(engine, "e5e5e5e5e5e5e5e5", T0 + 1000, children=1)
        assert _unkeyed(engine) == 0
    finally:
        engine.dispose()
    store = Store(store_url)
    try:
        assert _span_ids(store, "d4d4d4d4d4d4d4d4") == ["d4d4d4d4d4d4d4d4", "d4d4d4d4d4d4d401"]
        assert _span_ids(store, "e5e5e5e5e5e5e5e5") == ["e5e5e5e5e5e5e5e5", "e5e5e5e5e5e5e501"]
    finally:
        store.close()
