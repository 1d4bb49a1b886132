"""Golden stores at revision 0002 (and 0001) upgrade in place to runs with a project, kind,
entry point and caller, an optional agent, and the models each run requested; then they are
read back through the read side, filters and pages included."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from fakes.store_0001 import insert, schema_differences
from fakes.store_0002 import run_0002, span_row, spans_0002, upgrade_to_0002
from test_store_migrations import ROOT_DONE, T0, TRACE_CRASHED, TRACE_DONE, make_store_0001
from tether.core import NotFound, StoreError, new_span_id
from tether.store import (
    RunQuery,
    RunRecord,
    SpanRecord,
    Store,
    StoreReader,
    TraceBatch,
    create_store_engine,
)

DONE, FELL_BACK, CRASHED = "d0d0d0d0d0d0d0d0", "f0f0f0f0f0f0f0f0", "c0c0c0c0c0c0c0c0"
MODEL, TOOL = "1d1d1d1d1d1d1d1d", "2d2d2d2d2d2d2d2d"
REQUEST_MODEL = "gen_ai.request.model"


def make_store_0002(url: str) -> None:
    """Three runs: one done (agent, model and tool spans, an event, a checkpoint), one that
    fell back from one model to another, and one left running, started at the same
    nanosecond as the second."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            upgrade_to_0002(conn)
            run_0002(conn, DONE, T0, tool_calls=1)
            run_0002(conn, FELL_BACK, T0 + 100, agent_name="billing", status="failed")
            run_0002(conn, CRASHED, T0 + 100, status="running", outcome=None, ended_ns=None)
            spans_0002(
                conn,
                [
                    span_row(DONE, DONE, None, "agent", T0 + 1),
                    span_row(DONE, MODEL, DONE, "model", T0 + 2, {REQUEST_MODEL: "gpt-4.1-mini"}),
                    span_row(DONE, TOOL, DONE, "tool", T0 + 3, {"gen_ai.tool.name": "lookup"}),
                    span_row(
                        FELL_BACK, new_span_id(), None, "model", T0 + 101, {REQUEST_MODEL: "big"}
                    ),
                    span_row(
                        FELL_BACK, new_span_id(), None, "model", T0 + 102, {REQUEST_MODEL: "small"}
                    ),
                    # The same model twice in one run is one model of the run.
                    span_row(
                        FELL_BACK, new_span_id(), None, "model", T0 + 103, {REQUEST_MODEL: "small"}
                    ),
                    # Not a model span, not a model name, no JSON object: nothing to read.
                    span_row(CRASHED, new_span_id(), None, "tool", T0 + 104, {REQUEST_MODEL: "x"}),
                    span_row(CRASHED, new_span_id(), None, "model", T0 + 105, {REQUEST_MODEL: 7}),
                    {
                        **span_row(CRASHED, new_span_id(), None, "model", T0 + 106),
                        "attributes": '["gen_ai.request.model"]',
                    },
                ],
            )
            insert(
                conn,
                "tether_events",
                run_id=DONE,
                trace_id=DONE * 2,
                span_id=MODEL,
                name="tether.control.decision",
                time_ns=T0 + 4,
                attributes='{"tether.decision":"allow"}',
            )
            insert(
                conn,
                "tether_checkpoints",
                run_id=DONE,
                trace_id=DONE * 2,
                schema_version=1,
                created_ns=T0 + 5,
                reason="final",
                state='{"schema_version":1}',
            )
    finally:
        engine.dispose()


def _ids(store: StoreReader, **filters: object) -> list[str]:
    return [r.run_id for r in store.find_runs(RunQuery(limit=100, **filters)).runs]  # type: ignore[arg-type]


def test_a_0002_store_upgrades_and_reads_back(store_url: str) -> None:
    make_store_0002(store_url)
    store = Store(store_url)  # migrates to the head
    try:
        assert schema_differences(store.engine) == []
        page = store.find_runs(RunQuery())
        # Newest first; the two runs started at the same time by run id, descending.
        assert [r.run_id for r in page.runs] == [FELL_BACK, CRASHED, DONE]
        assert page.total == 3 and page.next_cursor is None
        for run in page.runs:
            assert (run.project, run.kind, run.entry_point, run.caller) == (
                "default",
                "agent_run",
                "runtime",
                None,
            )
        done = store.get_run(DONE)
        assert (done.agent_name, done.agent_version, done.status, done.tool_calls) == (
            "support",
            "3f2a9c1e" * 8,
            "completed",
            1,
        )
        assert done.attributes == {"tether.agent.paradigm": "react"}
        trace = store.get_trace(DONE)
        assert [s.span_id for s in trace.spans] == [DONE, MODEL, TOOL]
        assert [(e.span_id, e.name) for e in trace.events] == [(MODEL, "tether.control.decision")]
        [checkpoint] = store.get_checkpoints(DONE)
        assert (checkpoint.reason, checkpoint.state_json) == ("final", '{"schema_version":1}')

        # The models each run requested, read from the spans already stored.
        assert _ids(store, model="gpt-4.1-mini") == [DONE]
        assert _ids(store, model="small") == _ids(store, model="big") == [FELL_BACK]
        assert _ids(store, model=("big", "gpt-4.1-mini")) == [FELL_BACK, DONE]
        assert _ids(store, model="x") == _ids(store, model="7") == []
        assert _ids(store, agent="billing") == [FELL_BACK]
        assert _ids(store, version="3f2a9c1e") == [FELL_BACK, CRASHED, DONE]
        assert _ids(store, status="running") == [CRASHED]
        assert _ids(store, project="default") == [FELL_BACK, CRASHED, DONE]
        assert _ids(store, project="acme") == []

        # The upgraded store takes runs without an agent, and runs of a project.
        run_id = new_span_id()
        gateway = RunRecord(
            "ab" * 16,
            None,
            None,
            T0 + 200,
            run_id=run_id,
            project="acme",
            kind="model_request",
            entry_point="model_gateway",
            caller={"project": "acme", "key_id": "key_1"},
        )
        span = SpanRecord(
            "ab" * 16, new_span_id(), None, "chat small", "model", T0 + 201, T0 + 202,
            attributes={REQUEST_MODEL: "small"}, run_id=run_id,
        )  # fmt: skip
        store.write(TraceBatch(runs_started=[gateway], spans=[span]))
        assert store.get_run(run_id) == gateway
        assert _ids(store, model="small") == [run_id, FELL_BACK]
        assert _ids(store, project="acme", kind="model_request") == [run_id]
        with pytest.raises(NotFound):
            store.get_run("e" * 16)
    finally:
        store.close()


def test_foreign_keys_still_hold_after_the_upgrade(store_url: str) -> None:
    make_store_0002(store_url)
    store = Store(store_url)
    try:
        orphan = SpanRecord("ef" * 16, new_span_id(), None, "x", "tool", 1, 2, run_id="e" * 16)
        with pytest.raises(StoreError, match="writing to"):
            store.write(TraceBatch(spans=[orphan]))
        if store_url.startswith("sqlite"):
            raw = sqlite3.connect(store_url.removeprefix("sqlite:///"))
            try:
                assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
                for (sql,) in raw.execute(
                    "SELECT sql FROM sqlite_master WHERE name IN "
                    "('tether_spans', 'tether_events', 'tether_checkpoints')"
                ):
                    assert "REFERENCES tether_runs (run_id)" in sql, sql
                leftover = raw.execute(
                    "SELECT name FROM sqlite_master WHERE name LIKE '%0002%'"
                ).fetchall()
                assert leftover == []
            finally:
                raw.close()
    finally:
        store.close()


def test_more_model_spans_than_one_insert_are_all_read(store_url: str) -> None:
    """The models are filled in chunks while the spans are streamed: the chunk boundary
    loses none."""
    count = 2_500
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            upgrade_to_0002(conn)
            run_ids = [f"{i:016x}" for i in range(1, count + 1)]
            for run_id in run_ids:
                run_0002(conn, run_id, T0 + int(run_id, 16))
            spans_0002(
                conn,
                [
                    span_row(r, new_span_id(), None, "model", T0, {REQUEST_MODEL: f"m{i % 3}"})
                    for i, r in enumerate(run_ids)
                ],
            )
    finally:
        engine.dispose()
    store = StoreReader(store_url)
    try:
        with store.engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM tether_run_models")).scalar()
        assert stored == count
        for m in range(3):
            listing = store.find_runs(RunQuery(model=f"m{m}", limit=1))
            assert listing.total == len(run_ids[m::3])
    finally:
        store.close()


def test_a_0001_store_upgrades_through_0002_to_the_head(store_url: str) -> None:
    make_store_0001(store_url)
    store = StoreReader(store_url)
    try:
        assert schema_differences(store.engine) == []
        page = store.find_runs(RunQuery())
        assert {r.run_id for r in page.runs} >= {ROOT_DONE, TRACE_CRASHED[:16]}
        assert {(r.project, r.kind, r.entry_point, r.caller) for r in page.runs} == {
            ("default", "agent_run", "runtime", None)
        }
        trace = store.get_trace(TRACE_DONE)
        assert trace.run.run_id == ROOT_DONE and len(trace.spans) == 2 and len(trace.events) == 1
        assert store.get_checkpoints(ROOT_DONE)[0].reason == "paused"
        assert _ids(store, status="running") == [TRACE_CRASHED[:16]]
    finally:
        store.close()
