"""Migration 0012: pending OTLP runs wait through ``tether_otlp_waits`` (missing parent ->
run), so a pending run keeps its id while a chain sent leaf first grows, and its spans move
once. A store at 0011 holding a pending run (named after the parent it waits for, as 0011
named them) upgrades to one where that run waits for that parent, and a chain begun before
the upgrade ends in its root's run after it; the migration goes down (a run waiting for
another span than its name takes that span's id, as 0011 finds pending runs) and up again.
On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import Engine, text

from fakes.store_0001 import downgrade_to, insert, insert_span_0009, upgrade_to
from tether.server.otlp_store import ingest
from tether.store import Store, create_store_engine

T0 = 1_700_000_000_000_000_000
TRACE = "ab" * 16
ROOT, MIDDLE, LEAF = "a000000000000001", "a000000000000002", "a000000000000003"
"""A chain: the root, its child, the child's child."""


def _run_0011(conn: Any, run_id: str, trace: str, entry_point: str, status: str) -> None:
    insert(
        conn,
        "tether_runs",
        run_id=run_id,
        trace_id=trace,
        project="default",
        kind="agent_run",
        entry_point=entry_point,
        status=status,
        input="",
        started_ns=T0 + 2,
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        cost_usd=0.0,
        turns=0,
        tool_calls=0,
        attributes='{"tether.entry_point":"otlp"}',
        run_seq=T0 + 2,
    )


def _pending_run_0011(engine: Engine) -> None:
    """The leaf stored alone as 0011 stored it: in a pending run named after its parent."""
    with engine.begin() as conn:
        _run_0011(conn, MIDDLE, TRACE, "otlp", "running")
        insert_span_0009(
            conn,
            span_id=LEAF,
            run_id=MIDDLE,
            trace_id=TRACE,
            parent_id=MIDDLE,
            name="leaf",
            kind="agent",
            start_ns=T0 + 2,
            end_ns=T0 + 10,
        )
        # A run of the runtime still running, and an OTLP run ended: neither waits.
        _run_0011(conn, "b000000000000001", "cd" * 16, "runtime", "running")
        _run_0011(conn, "b000000000000002", "cd" * 16, "otlp", "completed")


def _send(store: Store, span: Span) -> None:
    """One span, one request, as ``POST /v1/traces`` stores it."""
    message = ExportTraceServiceRequest()
    message.resource_spans.add().scope_spans.add().spans.append(span)
    result = ingest(store, "default", message)
    assert result.rejected == 0 and result.accepted == 1, result


def _span(span_id: str, parent: str | None, level: int) -> Span:
    return Span(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=f"level {level}",
        start_time_unix_nano=T0 + level,
        end_time_unix_nano=T0 + 100,
    )


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _run_of_spans(engine: Engine) -> list[tuple[Any, ...]]:
    """Each span with its run, read as the store reads a run's spans (by its run_seq)."""
    return _rows(
        engine,
        "SELECT s.span_id, r.run_id, r.status FROM tether_runs r JOIN tether_spans s "
        "ON s.run_seq = r.run_seq AND s.run_id = r.run_id ORDER BY s.span_id",
    )


def test_a_pending_run_of_0011_waits_for_its_parent_after_the_upgrade(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0011")
        _pending_run_0011(engine)
        store = Store(store_url)  # upgrades to the head
        try:
            assert _rows(engine, "SELECT span_id, run_id FROM tether_otlp_waits") == [
                (MIDDLE, MIDDLE)
            ]
            _send(store, _span(MIDDLE, ROOT, 1))  # the run keeps its id, waits for the root
            assert _rows(engine, "SELECT span_id, run_id FROM tether_otlp_waits") == [
                (ROOT, MIDDLE)
            ]
            _send(store, _span(ROOT, None, 0))
            assert _run_of_spans(engine) == [
                (ROOT, ROOT, "completed"),
                (MIDDLE, ROOT, "completed"),
                (LEAF, ROOT, "completed"),
            ]
            assert _rows(engine, "SELECT span_id FROM tether_otlp_waits") == []
            assert _rows(engine, f"SELECT run_id FROM tether_runs WHERE run_id = '{MIDDLE}'") == []
        finally:
            store.close()
    finally:
        engine.dispose()


def test_0012_downgrades_to_0011_and_back(store_url: str) -> None:
    store = Store(store_url)
    try:
        _send(store, _span(LEAF, MIDDLE, 2))
        _send(store, _span(MIDDLE, ROOT, 1))  # run MIDDLE waits for ROOT
    finally:
        store.close()
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            downgrade_to(conn, "0011")
        # As 0011 finds a pending run: named after the parent it waits for.
        assert _run_of_spans(engine) == [(MIDDLE, ROOT, "running"), (LEAF, ROOT, "running")]
        with engine.begin() as conn:
            upgrade_to(conn, "0012")
        assert _rows(engine, "SELECT span_id, run_id FROM tether_otlp_waits") == [(ROOT, ROOT)]
    finally:
        engine.dispose()
    store = Store(store_url)
    try:
        _send(store, _span(ROOT, None, 0))
    finally:
        store.close()
    engine = create_store_engine(store_url)
    try:
        assert _run_of_spans(engine) == [
            (ROOT, ROOT, "completed"),
            (MIDDLE, ROOT, "completed"),
            (LEAF, ROOT, "completed"),
        ]
    finally:
        engine.dispose()


def test_a_pending_run_an_older_writer_makes_after_the_upgrade_takes_its_parent(
    store_url: str,
) -> None:
    """A replica still running a Tether from before 0012 (a rolling upgrade) writes pending
    runs named after the parent they wait for, with no row in ``tether_otlp_waits``: the
    parent, arriving at an upgraded one, still joins them."""
    store = Store(store_url)
    try:
        _pending_run_0011(store.engine)
        _send(store, _span(MIDDLE, ROOT, 1))
        _send(store, _span(ROOT, None, 0))
        assert _run_of_spans(store.engine) == [
            (ROOT, ROOT, "completed"),
            (MIDDLE, ROOT, "completed"),
            (LEAF, ROOT, "completed"),
        ]
        assert _rows(store.engine, "SELECT span_id FROM tether_otlp_waits") == []
    finally:
        store.close()
