"""``insert_rows`` writes every row once, whatever the count: on SQLite it cuts the rows into
multi-row INSERTs of powers of two (at most 64 rows, and never more parameters than the
oldest SQLite allows), so the counts around each cut are tried, with rows already stored
(``skip_existing``) among them. The real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tether.core import StoreError
from tether.store import RunRecord, Store, tables
from tether.store.repository import INSERT_COLUMNS, insert_rows, run_row


def _run(i: int) -> RunRecord:
    return RunRecord(
        trace_id=f"{i:032x}",
        run_id=f"{i:016x}",
        agent_name="bulk",
        agent_version="1",
        started_ns=1_700_000_000_000_000_000 + i,
        input=f"question {i}",
    )


@pytest.mark.parametrize("count", [1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 200])
def test_every_row_is_written_once(store_url: str, count: int) -> None:
    store = Store(store_url)
    try:
        rows = [tuple(run_row(_run(i), run_seq=i).values()) for i in range(count)]
        span_rows = [
            (f"{i:016x}", f"{i:016x}", f"{i:032x}", None, f"span {i}", "agent", i, i + 1, "ok",
             None, "{}", i)
            for i in range(count)
        ]  # fmt: skip
        assert len(span_rows[0]) == len(INSERT_COLUMNS[tables.spans.name])
        with store.transaction() as conn:
            insert_rows(conn, tables.runs, rows[: count // 2])
        with store.transaction() as conn:  # the first half again: left as they are
            insert_rows(conn, tables.runs, rows, skip_existing=True)
            insert_rows(conn, tables.spans, span_rows)
        with store.engine.connect() as conn:
            stored = (
                conn.execute(tables.runs.select().order_by(tables.runs.c.run_seq)).mappings().all()
            )
            spans = conn.execute(tables.spans.select().order_by(tables.spans.c.run_seq)).all()
        assert [r["run_id"] for r in stored] == [f"{i:016x}" for i in range(count)]
        assert [r["input"] for r in stored] == [f"question {i}" for i in range(count)]
        assert [tuple(s) for s in spans] == span_rows
    finally:
        store.close()


def test_a_row_stored_twice_without_skip_existing_fails_the_whole_transaction(
    store_url: str,
) -> None:
    store = Store(store_url)
    try:
        rows = [tuple(run_row(_run(i), run_seq=i).values()) for i in range(70)]
        with store.transaction() as conn:
            insert_rows(conn, tables.runs, rows[65:])
        with pytest.raises(StoreError, match=r"(?i)unique|duplicate"), store.transaction() as conn:
            insert_rows(conn, tables.runs, rows)
        with store.engine.connect() as conn:
            count = conn.execute(tables.runs.select()).all()
        assert len(count) == 5  # nothing of the failed transaction
    finally:
        store.close()
