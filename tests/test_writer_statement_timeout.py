"""The database's statement timeout and the trace writer (real PostgreSQL): a batch holding a
record that can never be written in the time allowed is written in halves, the rest of it
lands, and that record is skipped and said, instead of the whole batch (and everything queued
behind it) being retried for ever; while the tables themselves are locked, nothing is
skipped: the records wait."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import AuditRecord, RunRecord, SpanRecord, Store
from tether.store.audit import iter_audit
from tether.trace import BatchingWriter


def _conninfo(pg_url: str) -> str:
    return pg_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]


def _schema(pg_url: str) -> str:
    return pg_url.rsplit("search_path%3D", 1)[1]


@pytest.fixture
def store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A migrated store whose statements may run 150 ms; a span named ``huge`` takes 400 ms
    to insert (a trigger sleeps), like a record too big for the server to take in time."""
    Store(pg_url).close()
    schema = _schema(pg_url)
    with psycopg.connect(_conninfo(pg_url), autocommit=True) as conn:
        conn.execute(
            f'CREATE FUNCTION "{schema}".slow_row() RETURNS trigger LANGUAGE plpgsql AS '
            "$$ BEGIN IF NEW.name = 'huge' THEN PERFORM pg_sleep(0.4); END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER slow BEFORE INSERT ON "{schema}".tether_spans '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".slow_row()'
        )
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "0.15")
    opened = Store(pg_url)
    yield opened
    opened.close()


def _records(names: list[str]) -> tuple[RunRecord, list[SpanRecord]]:
    run = RunRecord(new_trace_id(), "support", "v1", now_ns(), run_id=new_span_id())
    start = now_ns()
    spans = [
        SpanRecord(
            run.trace_id,
            new_span_id(),
            None,
            name,
            "tool",
            start + i,
            start + i + 1,
            run_id=run.run_id,
        )
        for i, name in enumerate(names)
    ]
    return run, spans


def test_a_record_the_statement_timeout_always_cuts_off_is_skipped_and_the_rest_lands(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tether.trace")
    writer = BatchingWriter(store, flush_interval_s=3600, max_backoff_s=0.1)
    try:
        names = [f"s{i}" for i in range(12)]
        names[3] = "huge"
        run, spans = _records(names)
        writer.run_started(run)
        for span in spans:
            writer.span(span)
        assert writer.flush(timeout=120), writer.last_error
        stored = {s.name for s in store.get_spans(run.run_id)}
        assert stored == set(names) - {"huge"}
        assert store.get_run(run.run_id).agent_name == "support"
        assert writer.dropped == 1
        assert "TETHER_DB_STATEMENT_TIMEOUT_S" in (writer.last_rejection or "")
        assert "smaller pieces" in caplog.text
        # The writer goes on normally afterwards, and remembers the rejection.
        later_run, later = _records(["after"])
        writer.run_started(later_run)
        writer.span(later[0])
        assert writer.flush(timeout=60)
        assert [s.name for s in store.get_spans(later_run.run_id)] == ["after"]
        assert writer.last_rejection is not None and writer.last_error is None
    finally:
        writer.close()


def test_records_wait_while_the_trace_tables_are_locked_past_the_statement_timeout(
    store: Store, pg_url: str
) -> None:
    writer = BatchingWriter(store, flush_interval_s=3600, max_backoff_s=0.1)
    locked = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(_conninfo(pg_url)) as conn:
            conn.execute(f'LOCK TABLE "{_schema(pg_url)}".tether_spans IN ACCESS EXCLUSIVE MODE')
            locked.set()
            time.sleep(2.5)  # many statement timeouts long
            conn.rollback()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        run, spans = _records([f"s{i}" for i in range(6)])
        writer.run_started(run)
        for span in spans:
            writer.span(span)
        assert writer.flush(timeout=120), writer.last_error
        holder.join()
        assert writer.dropped == 0, writer.last_rejection
        assert len(store.get_spans(run.run_id)) == 6
    finally:
        holder.join()
        writer.close()


def test_audit_entries_wait_while_a_stuck_session_holds_the_chains_head_row(
    store: Store, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another replica cut off mid-append (a frozen host, a partition) keeps the audit
    chain's head row locked until its server notices. Appends time out behind it while the
    tables answer at once: the entries were skipped as records too slow to write (lost
    audit entries); they wait, as behind a locked table."""
    caplog.set_level(logging.WARNING, logger="tether.trace")
    writer = BatchingWriter(store, flush_interval_s=0.05, max_backoff_s=0.1)
    locked, release = threading.Event(), threading.Event()

    def hold_head() -> None:
        with psycopg.connect(_conninfo(pg_url)) as conn:
            conn.execute(
                f'SELECT 1 FROM "{_schema(pg_url)}".tether_audit_head WHERE id = 1 FOR UPDATE'
            )
            locked.set()
            release.wait(120)
            conn.rollback()

    holder = threading.Thread(target=hold_head)
    holder.start()
    try:
        assert locked.wait(10)
        entry = AuditRecord("e" * 32, now_ns(), "decision", {"project": "p"}, {"n": 1})
        writer.audit(entry)
        # Long enough to have been skipped twice over: the record's write timed out in a
        # row, each time with the tables answering.
        deadline = time.monotonic() + 60
        while caplog.text.count("smaller pieces") < 6 and not writer.dropped:
            assert time.monotonic() < deadline, (caplog.text, writer.last_error, writer.dropped)
            time.sleep(0.05)
        release.set()
        assert writer.flush(timeout=120), writer.last_error
        assert writer.dropped == 0, writer.last_rejection
        with store.engine.connect() as conn:
            assert [e.entry_id for e, _a, _d in iter_audit(conn)] == [entry.entry_id]
    finally:
        release.set()
        holder.join()
        writer.close()
