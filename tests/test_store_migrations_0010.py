"""Migration 0010: a run's spans are indexed by the run's ``run_seq`` (a key that grows with
each run written) instead of its random id. A store at 0009 upgrades in place (each run's
``run_seq`` is its start, each span takes its run's), nothing stored changes, every run's
spans are read back in order through the new index; the migration goes down and up again; and
runs written after it (their spans in the same batch as the run's start or in a later one)
are read back the same way, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect, select, text

from fakes.store_0001 import (
    downgrade_to,
    insert,
    insert_span_0009,
    run_row_0001,
    schema_differences,
    upgrade_to,
)
from tether.store import RunRecord, SpanRecord, Store, TraceBatch, create_store_engine, tables
from tether.store.db import HEAD_REVISION

T0 = 1_700_000_000_000_000_000
RUNS = {"a1a1a1a1a1a1a1a1": 3, "b2b2b2b2b2b2b2b2": 1, "c3c3c3c3c3c3c3c3": 0}
"""Run id: how many child spans it has (besides its root span)."""


def _span_ids(run_id: str, children: int) -> list[str]:
    return [run_id, *(f"{run_id[:14]}{i:02d}" for i in range(children))]


def make_store_0009(url: str) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0009")
            for i, (run_id, children) in enumerate(RUNS.items()):
                started = T0 + i * 1000
                trace = run_id * 2
                insert(conn, "tether_runs", **{**run_row_0001(trace, started), "run_id": run_id})
                # Children first and started in reverse: the read gives start order.
                for n, span_id in enumerate(reversed(_span_ids(run_id, children))):
                    insert_span_0009(
                        conn,
                        span_id=span_id,
                        run_id=run_id,
                        trace_id=trace,
                        parent_id=None if span_id == run_id else run_id,
                        name=f"span {span_id}",
                        kind="agent" if span_id == run_id else "tool",
                        start_ns=started + 10 * (children - n),
                        end_ns=started + 500,
                    )
    finally:
        engine.dispose()


def _indexes(conn: Connection) -> set[str]:
    return {str(i["name"]) for i in inspect(conn).get_indexes("tether_spans")}


def _rows_0009(conn: Connection) -> list[list[tuple[Any, ...]]]:
    return [
        [
            tuple(r)
            for r in conn.execute(
                select(*(c for c in t.c if c.name != "run_seq")).order_by(*t.primary_key.columns)
            )
        ]
        for t in (tables.runs, tables.spans)
    ]


def _check_read_back(store: Store) -> None:
    for run_id, children in RUNS.items():
        spans = store.get_trace(run_id).spans
        assert [s.span_id for s in spans] == _span_ids(run_id, children)
        assert all(s.run_id == run_id for s in spans)


def test_a_0009_store_keys_its_spans_by_their_runs_seq(store_url: str) -> None:
    make_store_0009(store_url)
    engine = create_store_engine(store_url)
    with engine.connect() as conn:
        before = _rows_0009(conn)
        assert "ix_tether_spans_run" in _indexes(conn)
    engine.dispose()

    store = Store(store_url)  # migrates to the head when it opens
    try:
        with store.engine.connect() as conn:
            assert _rows_0009(conn) == before
            assert _indexes(conn) == {"ix_tether_spans_run_seq"}
            seqs = dict(conn.execute(text("SELECT run_id, run_seq FROM tether_runs")).all())
            starts = dict(conn.execute(text("SELECT run_id, started_ns FROM tether_runs")).all())
            assert seqs == starts
            unkeyed = conn.execute(
                text(
                    "SELECT count(*) FROM tether_spans s JOIN tether_runs r "
                    "ON r.run_id = s.run_id WHERE s.run_seq IS NULL OR s.run_seq != r.run_seq"
                )
            ).scalar_one()
            assert unkeyed == 0
            revision = conn.execute(text("SELECT version_num FROM tether_alembic_version"))
            assert revision.scalar_one() == HEAD_REVISION
        assert schema_differences(store.engine) == []
        _check_read_back(store)
    finally:
        store.close()


def test_0010_downgrades_to_0009_and_back(store_url: str) -> None:
    make_store_0009(store_url)
    engine = create_store_engine(store_url)
    try:
        for target, index in (
            ("0010", "ix_tether_spans_run_seq"),
            ("0009", "ix_tether_spans_run"),
            ("0010", "ix_tether_spans_run_seq"),
        ):
            with engine.begin() as conn:
                if target == "0009":
                    downgrade_to(conn, "0009")
                else:
                    upgrade_to(conn, target)
            with engine.connect() as conn:
                assert _indexes(conn) == {index}
                columns = {c["name"] for c in inspect(conn).get_columns("tether_spans")}
                assert ("run_seq" in columns) is (target == "0010")
                assert [len(rows) for rows in _rows_0009(conn)] == [3, 7]
    finally:
        engine.dispose()
    store = Store(store_url)
    try:
        _check_read_back(store)
    finally:
        store.close()


def _run(run_id: str, started: int) -> RunRecord:
    return RunRecord(
        trace_id=run_id * 2,
        run_id=run_id,
        agent_name="support",
        agent_version="v1",
        started_ns=started,
        input="hi",
        attributes={},
    )


def _span(run_id: str, span_id: str, start: int) -> SpanRecord:
    return SpanRecord(
        trace_id=run_id * 2,
        run_id=run_id,
        span_id=span_id,
        parent_id=None if span_id == run_id else run_id,
        name="chat" if span_id != run_id else "invoke_agent support",
        kind="model" if span_id != run_id else "agent",
        start_ns=start,
        end_ns=start + 5,
    )


def test_spans_written_with_their_run_or_after_it_are_read_through_its_seq(
    store_url: str,
) -> None:
    make_store_0009(store_url)  # runs stored before: new runs' seqs come after theirs
    store = Store(store_url)
    try:
        now = T0 + 10_000_000
        first, second = "d4d4d4d4d4d4d4d4", "e5e5e5e5e5e5e5e5"
        # One batch: both runs start; the first writes a span, the second none yet.
        store.write(
            TraceBatch(
                runs_started=[_run(first, now), _run(second, now + 1)],
                spans=[_span(first, "d4d4d4d4d4d4d401", now + 2)],
            )
        )
        # Later batches: the runs' other spans (their run read back from the store), ends.
        store.write(TraceBatch(spans=[_span(second, "e5e5e5e5e5e5e501", now + 3)]))
        ended = _run(first, now)
        ended.status, ended.ended_ns = "completed", now + 9
        store.write(
            TraceBatch(
                spans=[_span(first, first, now), _span(second, second, now + 1)],
                runs_ended=[ended],
            )
        )
        assert [s.span_id for s in store.get_trace(first).spans] == [first, "d4d4d4d4d4d4d401"]
        assert [s.span_id for s in store.get_trace(second).spans] == [second, "e5e5e5e5e5e5e501"]
        assert store.get_run(first).status == "completed"
        with store.engine.connect() as conn:
            seqs = dict(conn.execute(text("SELECT run_id, run_seq FROM tether_runs")).all())
            by_span = conn.execute(
                text("SELECT count(*) FROM tether_spans WHERE run_id IN (:a, :b)"),
                {"a": first, "b": second},
            ).scalar_one()
        assert by_span == 4
        assert seqs[first] != seqs[second]  # two runs of one batch: two keys
        assert min(seqs[first], seqs[second]) > max(seqs[r] for r in RUNS)
        _check_read_back(store)  # the runs migrated are read as before
    finally:
        store.close()
