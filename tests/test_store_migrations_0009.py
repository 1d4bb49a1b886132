"""A store at revision 0008 (runs sharing a trace, spans, run models, events) upgrades in place
to the head (0009: the runs' trace id index dropped): nothing stored is lost or changed, the
schema is the table definitions', a run is still found by a prefix of its trace id, and every
filter of the runs list still reads the runs it names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, select

from fakes.store_0001 import downgrade_to, insert, run_row_0001, schema_differences, upgrade_to
from tether.core import InvalidQuery
from tether.store import RunQuery, Store, create_store_engine, tables
from tether.store.db import HEAD_REVISION
from tether.store.tables import VERSION_TABLE

INDEX = "ix_tether_runs_trace"
SHARED = "5a" * 16
OTHER = "6b" * 16
T0 = 1_795_100_000_000_000_000
SEC = 1_000_000_000
RUNS: dict[str, dict[str, Any]] = {
    # run id: what differs from ``run_row_0001``
    "1a1a1a1a1a1a1a1a": {"trace_id": SHARED, "agent_name": "support", "agent_version": "abc1"},
    "2b2b2b2b2b2b2b2b": {
        "trace_id": SHARED,
        "agent_name": "billing",
        "agent_version": "def2",
        "status": "failed",
        "outcome": None,
        "error": "boom",
        "input": "refund order 7",
        "cost_usd": 3.0,
        "ended_ns": None,
    },
    "3c3c3c3c3c3c3c3c": {
        "trace_id": OTHER,
        "agent_name": "support",
        "agent_version": "abc9",
        "attributes": json.dumps({"env": "prod"}, separators=(",", ":")),  # as stored
        "ended_ns": 5 * SEC,  # relative: 5 s long
    },
}
MODELS = {"1a1a1a1a1a1a1a1a": "gpt-4o", "2b2b2b2b2b2b2b2b": "claude", "3c3c3c3c3c3c3c3c": "gpt-4o"}


def make_store_0008(url: str) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0008")
            for i, (run_id, changes) in enumerate(RUNS.items()):
                started = T0 + i * SEC
                row = {**run_row_0001(changes["trace_id"], started), **changes, "run_id": run_id}
                if row["ended_ns"] is not None:
                    row["ended_ns"] = started + (row["ended_ns"] if i == 2 else 10_000)
                insert(conn, "tether_runs", **row, project="shop")
                insert(
                    conn,
                    "tether_spans",
                    span_id=run_id,
                    run_id=run_id,
                    trace_id=row["trace_id"],
                    parent_id=None,
                    name="invoke_agent",
                    kind="agent",
                    start_ns=started,
                    end_ns=started + 100,
                    status="ok",
                    status_message=None,
                    attributes="{}",
                )
                insert(conn, "tether_run_models", run_id=run_id, model=MODELS[run_id])
            insert(
                conn,
                "tether_events",
                run_id="2b2b2b2b2b2b2b2b",
                trace_id=SHARED,
                span_id=None,
                name="tether.tool.error",
                time_ns=T0 + SEC,
                attributes="{}",
            )
    finally:
        engine.dispose()


def _stored(conn: Connection) -> list[list[tuple[object, ...]]]:
    """Every row, in the columns of revision 0009 (0010 adds ``run_seq``)."""
    return [
        [
            tuple(r)
            for r in conn.execute(
                select(*(c for c in t.c if c.name != "run_seq")).order_by(*t.primary_key.columns)
            )
        ]
        for t in (tables.runs, tables.spans, tables.run_models, tables.events)
    ]


def _indexes(conn: Connection) -> set[str]:
    return {str(i["name"]) for i in inspect(conn).get_indexes("tether_runs")}


def test_a_0008_store_loses_the_trace_index_and_keeps_its_runs(store_url: str) -> None:
    make_store_0008(store_url)
    engine = create_store_engine(store_url)
    with engine.connect() as conn:
        before = _stored(conn)
        assert INDEX in _indexes(conn)
    engine.dispose()
    assert [len(rows) for rows in before] == [3, 3, 3, 1]

    store = Store(store_url)  # migrates to the head when it opens
    try:
        with store.engine.connect() as conn:
            assert _stored(conn) == before
            assert INDEX not in _indexes(conn)
            revision = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
            assert revision == HEAD_REVISION
        assert schema_differences(store.engine) == []
        # Found by a prefix of its trace id (or of the shared one: the runs are named).
        assert store.get_run(OTHER[:8]).run_id == "3c3c3c3c3c3c3c3c"
        with pytest.raises(InvalidQuery, match="1a1a1a1a1a1a1a1a, 2b2b2b2b2b2b2b2b"):
            store.get_run(SHARED)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["3c", "2b", "1a"]),
        ({"status": "failed"}, ["2b"]),
        ({"outcome": "final_answer"}, ["3c", "1a"]),
        ({"agent": "support"}, ["3c", "1a"]),
        ({"version": "abc"}, ["3c", "1a"]),
        ({"model": "gpt-4o"}, ["3c", "1a"]),
        ({"since": datetime.fromtimestamp((T0 + SEC) / SEC, UTC)}, ["3c", "2b"]),
        ({"until": datetime.fromtimestamp((T0 + SEC) / SEC, UTC)}, ["1a"]),
        ({"min_cost_usd": 1.0}, ["2b"]),
        ({"min_latency_ms": 1000}, ["3c"]),
        ({"error_category": "tool_error"}, ["2b"]),
        ({"tag": "env=prod"}, ["3c"]),
        ({"text": "REFUND"}, ["2b"]),
        ({"project": "elsewhere"}, []),
    ],
)
def test_every_runs_filter_reads_its_runs_after_the_upgrade(
    sqlite_url: str, filters: dict[str, Any], expected: list[str]
) -> None:
    make_store_0008(sqlite_url)
    store = Store(sqlite_url)
    try:
        listing = store.find_runs(RunQuery(**{"project": "shop", **filters}))
        assert [r.run_id[:2] for r in listing.runs] == expected
        assert listing.total == len(expected)
    finally:
        store.close()


def test_0009_downgrades_to_0008_and_back(store_url: str) -> None:
    make_store_0008(store_url)
    engine = create_store_engine(store_url)
    try:
        for target, present in (("0009", False), ("0008", True), ("0009", False)):
            with engine.begin() as conn:
                if target == "0008":
                    downgrade_to(conn, "0008")
                else:
                    upgrade_to(conn, target)
            with engine.connect() as conn:
                assert (INDEX in _indexes(conn)) is present
                assert [len(rows) for rows in _stored(conn)] == [3, 3, 3, 1]
    finally:
        engine.dispose()
