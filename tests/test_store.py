"""The trace store and its batching writer on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from tether.core import StoreError, new_span_id, new_trace_id, now_ns
from tether.store import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    Store,
    TraceBatch,
)
from tether.store.db import MIGRATIONS_DIR
from tether.store.tables import VERSION_TABLE, metadata
from tether.trace import BatchingWriter

TABLES = {"tether_runs", "tether_spans", "tether_events", "tether_checkpoints"}

NESTED_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "unicode": 'héllo wörld ✓ 日本語 🚀 "quoted" back\\slash',
    "control\nchars": "tab\tnewline\nnul\x00end",
    "nested": {"list": [1, 2.5, "three", None, True, {"deep": ["é", {"x": []}]}], "empty": {}},
    "int": 2**53,
    "negative": -7,
    "float": 0.1,
    "bool": False,
    "none": None,
}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


@pytest.fixture
def make_writer(store: Store) -> Iterator[Callable[..., BatchingWriter]]:
    """Writers on the test's store, closed when the test ends."""
    made: list[BatchingWriter] = []

    def make(**kwargs: float) -> BatchingWriter:
        writer = BatchingWriter(store, **kwargs)  # type: ignore[arg-type]
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close()


def _run(trace_id: str | None = None, **kw: object) -> RunRecord:
    fields: dict[str, object] = {
        "trace_id": trace_id or new_trace_id(),
        "run_id": new_span_id(),
        "agent_name": "support",
        "agent_version": "v1",
        "started_ns": now_ns(),
        "input": "Where is my order?",
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def _ended(run: RunRecord, **kw: object) -> RunRecord:
    """The run-end record of ``run``."""
    return _run(run.trace_id, run_id=run.run_id, started_ns=run.started_ns, **kw)


def _span(run: RunRecord, start_ns: int, **kw: object) -> SpanRecord:
    fields: dict[str, object] = {
        "trace_id": run.trace_id,
        "run_id": run.run_id,
        "span_id": new_span_id(),
        "parent_id": None,
        "name": "chat scripted",
        "kind": "model",
        "start_ns": start_ns,
        "end_ns": start_ns + 1_000,
    }
    fields.update(kw)
    return SpanRecord(**fields)  # type: ignore[arg-type]


def _event(
    run: RunRecord, span_id: str | None, name: str, time_ns: int, attributes: dict[str, Any]
) -> EventRecord:
    return EventRecord(run.trace_id, span_id, name, time_ns, attributes, run_id=run.run_id)


# -- schema and migrations -----------------------------------------------------------------------


def test_migrations_create_the_schema_and_are_idempotent(store_url: str) -> None:
    first = Store(store_url)
    try:
        assert set(inspect(first.engine).get_table_names()) >= TABLES
    finally:
        first.close()

    # Opening again migrates nothing and keeps the data.
    trace_id = new_trace_id()
    second = Store(store_url)
    try:
        second.write(TraceBatch(runs_started=[_run(trace_id)]))
    finally:
        second.close()
    third = Store(store_url)
    try:
        assert third.get_run(trace_id).trace_id == trace_id
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        with third.engine.connect() as conn:
            assert (
                MigrationContext.configure(
                    conn, opts={"version_table": VERSION_TABLE}
                ).get_current_revision()
                == head
            )
            versions = conn.execute(text("SELECT version_num FROM tether_alembic_version")).all()
        assert [v[0] for v in versions] == [head]
    finally:
        third.close()


def test_migrated_schema_matches_the_table_definitions(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        diffs = compare_metadata(context, metadata)
    assert diffs == []


def test_foreign_keys_are_enforced(store: Store) -> None:
    orphan = _span(_run(), now_ns())
    with pytest.raises(StoreError, match="writing to"):
        store.write(TraceBatch(spans=[orphan]))


def test_database_errors_say_where_and_what_on_one_line_without_the_sql(store: Store) -> None:
    orphan = _span(_run(), now_ns(), name="user text: my card is 4111")
    with pytest.raises(StoreError) as written:
        store.write(TraceBatch(spans=[orphan]))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE tether_events"))
    with pytest.raises(StoreError) as read:
        store.get_events(orphan.run_id)
    for error, doing in ((written.value, "writing to"), (read.value, "reading from")):
        message = str(error)
        assert message.startswith(f"{doing} {store.display_url} failed: ")
        assert "\n" not in message  # libpq's DETAIL and HINT lines are left out
        assert "4111" not in message and "INSERT" not in message and "SELECT" not in message
        assert message.split("failed: ")[1]  # what the driver said


# -- writing and reading -------------------------------------------------------------------------


def test_batch_round_trips_every_field(store: Store) -> None:
    t0 = now_ns()
    started = _run(
        started_ns=t0,
        input="Где мой заказ? 🚚",
        attributes={"tether.agent.paradigm": "react", "team": "café"},
    )
    root = _span(
        started,
        t0 + 10,
        name="invoke_agent support",
        kind="agent",
        end_ns=t0 + 90_000,
        attributes=NESTED_ATTRIBUTES,
    )
    model = _span(
        started,
        t0 + 20,
        parent_id=root.span_id,
        kind="model",
        end_ns=t0 + 30_000,
        attributes={"gen_ai.usage.input_tokens": 12, "finish": ["stop"]},
    )
    tool = _span(
        started,
        t0 + 40_000,
        parent_id=root.span_id,
        name="execute_tool lookup",
        kind="tool",
        end_ns=t0 + 50_000,
        status="error",
        status_message="Error: 订单 not found",
        attributes={"gen_ai.tool.call.arguments": '{"id": "ä1"}'},
    )
    events = [
        _event(started, tool.span_id, "tether.tool.error", t0 + 45_000, {"message": "✗"}),
        _event(started, None, "tether.control.decision", t0 + 46_000, NESTED_ATTRIBUTES),
    ]
    checkpoint = CheckpointRecord(
        started.trace_id,
        1,
        t0 + 60_000,
        '{"trace_id": "x", "messages": ["ü"]}',
        "escalated",
        run_id=started.run_id,
    )
    ended = RunRecord(
        trace_id=started.trace_id,
        run_id=started.run_id,
        agent_name="support",
        agent_version="v1",
        started_ns=t0,
        status="completed",
        outcome="final_answer",
        input=started.input,
        output="Ваш заказ в пути ✓",
        ended_ns=t0 + 90_000,
        input_tokens=123,
        output_tokens=45,
        cached_input_tokens=6,
        cost_usd=0.001234,
        turns=2,
        tool_calls=1,
        error=None,
        attributes={**started.attributes, "stop_reason": None, "nested": {"a": [1, "é"]}},
    )
    store.write(
        TraceBatch(
            runs_started=[started],
            spans=[root, model, tool],
            events=events,
            checkpoints=[checkpoint],
            runs_ended=[ended],
        )
    )

    assert store.get_run(started.run_id) == ended
    assert store.get_run(started.trace_id) == ended
    assert store.get_spans(started.run_id) == [root, model, tool]
    assert store.get_events(started.run_id) == events
    assert store.get_checkpoints(started.run_id) == [checkpoint]
    assert store.get_spans(started.run_id)[0].attributes == NESTED_ATTRIBUTES


def test_started_run_reads_back_as_running(store: Store) -> None:
    run = _run(attributes={"k": "v"})
    store.write(TraceBatch(runs_started=[run]))
    got = store.get_run(run.trace_id)
    assert got == run
    assert got.status == "running"
    assert got.ended_ns is None
    assert got.latency_ms is None
    assert store.get_spans(run.run_id) == []
    assert store.get_events(run.run_id) == []
    assert store.get_checkpoints(run.run_id) == []


def test_a_failed_batch_writes_nothing(store: Store) -> None:
    run = _run()
    good = _span(run, now_ns())
    orphan = _span(_run(), now_ns())
    with pytest.raises(StoreError):
        store.write(TraceBatch(runs_started=[run], spans=[good, orphan]))
    with pytest.raises(StoreError, match="no run or trace"):
        store.get_run(run.trace_id)
    assert store.get_spans(run.run_id) == []


# -- looking runs up -----------------------------------------------------------------------------


def test_get_run_by_run_or_trace_id_or_prefix(store: Store) -> None:
    a = _run("abcdef0" + "1" * 25, run_id="0123456789abcdef")
    b = _run("abcdef1" + "2" * 25, run_id="fedcba9876543210")
    store.write(TraceBatch(runs_started=[a, b]))

    assert store.get_run(a.trace_id) == a
    assert store.get_run(a.run_id) == a
    assert store.get_run("abcdef0") == a
    assert store.get_run("abcdef12") == b
    assert store.get_run("FEDCBA98") == b  # ids are hex: case does not matter
    assert store.get_run("0123456") == a

    with pytest.raises(StoreError, match="ambiguous") as ambiguous:
        store.get_run("abcdef")
    assert "'abcdef'" in str(ambiguous.value)
    assert "more characters" in str(ambiguous.value)

    with pytest.raises(StoreError, match="no run or trace 'ffffff99'") as unknown:
        store.get_run("ffffff99")
    assert unknown.value.hint and "tether traces list" in unknown.value.hint

    with pytest.raises(StoreError, match="too short") as short:
        store.get_run("abcde")
    assert "at least 6 characters" in str(short.value)
    with pytest.raises(StoreError, match="too short"):
        store.get_run("")


def test_get_run_prefix_is_literal_not_a_pattern(store: Store) -> None:
    """``%`` and ``_`` in a prefix are characters, not SQL LIKE wildcards."""
    run = _run("abcdef" + "0" * 26, run_id="abcdef" + "1" * 10)
    store.write(TraceBatch(runs_started=[run]))
    for pattern in ("______", "%%%%%%", "abcde_", "abc%00"):
        with pytest.raises(StoreError, match="no run or trace"):
            store.get_run(pattern)


def test_list_runs_newest_first_with_limit_and_agent_filter(store: Store) -> None:
    t0 = now_ns()
    runs = [
        _run(agent_name="support" if i % 2 == 0 else "billing", started_ns=t0 + i * 1_000)
        for i in range(6)
    ]
    # Written out of order: the store sorts by start time, not by insertion.
    store.write(TraceBatch(runs_started=[runs[3], runs[0], runs[5], runs[1], runs[4], runs[2]]))
    newest_first = list(reversed(runs))

    assert store.list_runs() == newest_first
    assert store.list_runs(limit=2) == newest_first[:2]
    assert store.list_runs(agent="support") == [runs[4], runs[2], runs[0]]
    assert store.list_runs(agent="billing", limit=1) == [runs[5]]
    assert store.list_runs(agent="nobody") == []


# -- the batching writer -------------------------------------------------------------------------


def test_writer_writes_everything_in_order(make_writer: Callable[..., BatchingWriter]) -> None:
    writer = make_writer()
    store = writer.store
    run = _run()
    t0 = now_ns()
    writer.run_started(run)
    spans = [_span(run, t0 + i, attributes={"i": i}) for i in range(5_000)]
    same_time = t0 + 10_000
    events = [_event(run, None, "e", same_time, {"i": i}) for i in range(5_000)]
    for span, event in zip(spans, events, strict=True):
        writer.span(span)
        writer.event(event)
    ended = _ended(run, status="completed", turns=5_000)
    writer.run_ended(ended)

    assert writer.flush(timeout=60)
    assert writer.pending == 0
    assert writer.dropped == 0
    assert store.get_spans(run.run_id) == spans
    # Equal timestamps: the events come back in insertion order, which is submission order.
    got = store.get_events(run.run_id)
    assert [e.attributes["i"] for e in got] == list(range(5_000))
    assert store.get_run(run.trace_id) == ended


def test_writer_accepts_records_from_many_threads(
    make_writer: Callable[..., BatchingWriter],
) -> None:
    writer = make_writer(max_batch=200)
    store = writer.store
    run = _run()
    writer.run_started(run)
    assert writer.flush()
    n_threads, per_thread = 8, 500
    t0 = now_ns()
    start = threading.Barrier(n_threads)
    sent: dict[int, list[SpanRecord]] = {}

    def produce(t: int) -> None:
        mine = [_span(run, t0 + i, attributes={"t": t, "i": i}) for i in range(per_thread)]
        sent[t] = mine
        start.wait()
        for i, span in enumerate(mine):
            writer.span(span)
            writer.event(_event(run, span.span_id, "e", t0, {"t": t, "i": i}))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert writer.flush(timeout=60)
    assert writer.dropped == 0
    spans = store.get_spans(run.run_id)
    assert len(spans) == n_threads * per_thread
    assert {s.span_id for s in spans} == {s.span_id for ss in sent.values() for s in ss}
    by_id = {s.span_id: s for s in spans}
    assert all(by_id[s.span_id] == s for ss in sent.values() for s in ss)
    events = store.get_events(run.run_id)
    assert len(events) == n_threads * per_thread
    for t in range(n_threads):
        # Each thread's records keep their order.
        assert [e.attributes["i"] for e in events if e.attributes["t"] == t] == list(
            range(per_thread)
        )


def test_flush_covers_everything_accepted_before_it(
    make_writer: Callable[..., BatchingWriter],
) -> None:
    """Many small bursts, each followed by flush(): after every flush the store holds all of
    them (bursts larger than a batch, with the writer also waking on its own timer)."""
    writer = make_writer(max_batch=8, flush_interval_s=0.001)
    store = writer.store
    run = _run()
    writer.run_started(run)
    assert writer.flush()
    t0 = now_ns()
    total = 0
    for _ in range(300):
        for _ in range(12):
            writer.event(_event(run, None, "e", t0, {"n": total}))
            total += 1
        assert writer.flush(timeout=30)
        with store.engine.connect() as conn:
            written = conn.execute(
                text("SELECT count(*) FROM tether_events WHERE run_id = :r"),
                {"r": run.run_id},
            ).scalar_one()
        assert written == total, f"flush returned with {total - written} records unwritten"


def test_rejected_record_is_skipped_and_the_rest_of_its_batch_lands(
    make_writer: Callable[..., BatchingWriter],
) -> None:
    # A long interval: nothing is written until flush(), so all records share one batch.
    writer = make_writer(flush_interval_s=3600)
    store = writer.store
    run = _run()
    missing = _run()  # never written
    t0 = now_ns()
    good_before = _span(run, t0 + 1)
    orphan_span = _span(missing, t0 + 2)
    orphan_event = _event(missing, None, "orphan", t0 + 3, {})
    good_after = _span(run, t0 + 4)
    good_event = _event(run, good_after.span_id, "ok", t0 + 5, {"é": "✓"})
    checkpoint = CheckpointRecord(run.trace_id, 1, t0 + 6, "{}", "paused", run_id=run.run_id)
    ended = _ended(run, status="completed", turns=1)

    writer.run_started(run)
    writer.span(good_before)
    writer.span(orphan_span)
    writer.event(orphan_event)
    writer.span(good_after)
    writer.event(good_event)
    writer.checkpoint(checkpoint)
    writer.run_ended(ended)
    assert writer.pending == 8

    assert writer.flush(timeout=30)
    assert writer.dropped == 2
    assert writer.last_rejection is not None
    assert store.get_run(run.trace_id) == ended
    assert store.get_spans(run.run_id) == [good_before, good_after]
    assert store.get_events(run.run_id) == [good_event]
    assert store.get_checkpoints(run.run_id) == [checkpoint]
    assert store.get_spans(missing.run_id) == []
    assert store.get_events(missing.run_id) == []

    # The writer carries on normally afterwards.
    later = _span(run, t0 + 7)
    writer.span(later)
    assert writer.flush(timeout=30)
    assert store.get_spans(run.run_id)[-1] == later
    assert writer.dropped == 2


def test_unserializable_attribute_is_written_as_a_note_and_the_writer_survives(
    make_writer: Callable[..., BatchingWriter],
) -> None:
    writer = make_writer(flush_interval_s=3600)
    run = _run()
    circular: dict[str, object] = {}
    circular["self"] = circular
    bad = _span(run, now_ns(), attributes=circular)
    good = _span(run, now_ns() + 1)
    writer.run_started(run)
    writer.span(bad)
    writer.span(good)
    assert writer.flush(timeout=30)
    # Kept, with a note where the value that cannot be written was (it used to be dropped).
    assert writer.dropped == 0
    stored_bad, stored_good = writer.store.get_spans(run.run_id)
    assert stored_good == good
    assert stored_bad.span_id == bad.span_id
    assert stored_bad.attributes == {"self": "<not serializable: dict: RecursionError>"}


def test_nul_bytes_in_user_text_do_not_lose_the_trace(store: Store) -> None:
    run = _run(input="order\x00 42")
    span = _span(run, now_ns(), status="error", status_message="bad\x00byte")
    store.write(TraceBatch(runs_started=[run], spans=[span]))
    stored = store.get_run(run.trace_id)
    assert stored.input == "order\ufffd 42"
    assert store.get_spans(run.run_id)[0].status_message == "bad\ufffdbyte"


def test_writer_failure_messages_do_not_contain_record_content(
    make_writer: Callable[..., BatchingWriter], caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer(flush_interval_s=3600)
    orphan = _span(
        _run(),
        now_ns(),
        status_message="hunter2-in-a-column",
        attributes={"secret": "hunter2-user-content"},
    )
    with caplog.at_level("WARNING", logger="tether.trace"):
        writer.span(orphan)
        assert writer.flush(timeout=30)
    assert writer.dropped == 1
    assert writer.last_rejection is not None and "hunter2" not in writer.last_rejection
    assert caplog.records and "rejected" in caplog.text
    assert "hunter2" not in caplog.text


def test_many_runs_ending_in_one_batch_each_get_their_own_values(store: Store) -> None:
    runs = [_run() for _ in range(5)]
    store.write(TraceBatch(runs_started=runs))
    ended = [_ended(r, status="completed", outcome=f"o{i}", turns=i) for i, r in enumerate(runs)]
    store.write(TraceBatch(runs_ended=ended))
    for i, r in enumerate(runs):
        got = store.get_run(r.trace_id)
        assert (got.outcome, got.turns, got.status) == (f"o{i}", i, "completed")


def test_many_processes_opening_a_new_store_at_once_all_succeed(
    store_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    child = (
        "import os, sys, time\n"
        "from tether.store import Store\n"
        f"open(os.path.join({str(tmp_path)!r}, 'ready-' + sys.argv[1]), 'w').close()\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.005)\n"
        f"Store({store_url!r}).close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", child, str(i)], stderr=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all six start migrating together
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(errors)
    with Store(store_url).engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM tether_alembic_version")).scalar()
            == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        )


def test_writer_survives_attributes_whose_str_raises(
    make_writer: Callable[..., BatchingWriter],
) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    writer = make_writer(flush_interval_s=3600)
    run = _run()
    writer.run_started(run)
    writer.span(_span(run, now_ns(), attributes={"x": Hostile(), "y": 1}))
    good = _span(run, now_ns() + 1)
    writer.span(good)
    assert writer.flush(timeout=30)
    assert writer.dropped == 0 and not writer.closed
    hostile, stored_good = writer.store.get_spans(run.run_id)
    assert stored_good == good
    assert hostile.attributes == {"x": "<not serializable: Hostile: RuntimeError>", "y": 1}


def test_sqlite_url_with_a_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = Store("sqlite:///~/nested/tether.db")
    store.close()
    assert (tmp_path / "nested" / "tether.db").is_file()
