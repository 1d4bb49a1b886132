"""Migration 0013: ``tether_otlp_waits`` keyed by the span waited for and the run waiting, so
pending runs of two projects may wait for one span. A store at 0012 keeps its waits through
the upgrade, takes a second run waiting for one span, goes down to 0012 (one run a span: the
smallest id stays) and up again. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from fakes.store_0001 import downgrade_to, insert, upgrade_to
from tether.store import create_store_engine

WAITED = "a000000000000001"


def _waits(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        sql = "SELECT span_id, run_id FROM tether_otlp_waits ORDER BY span_id, run_id"
        return [tuple(r) for r in conn.execute(text(sql))]


def test_0013_lets_two_runs_wait_for_one_span_and_goes_down_and_up(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0012")
            insert(conn, "tether_otlp_waits", span_id=WAITED, run_id="b000000000000002")
        try:  # 0012: one run a span
            with engine.begin() as conn:
                insert(conn, "tether_otlp_waits", span_id=WAITED, run_id="b000000000000001")
            raise AssertionError("0012 took a second run waiting for one span")
        except IntegrityError:
            pass
        with engine.begin() as conn:
            upgrade_to(conn, "0013")
            insert(conn, "tether_otlp_waits", span_id=WAITED, run_id="b000000000000001")
        assert _waits(engine) == [(WAITED, "b000000000000001"), (WAITED, "b000000000000002")]
        with engine.begin() as conn:
            downgrade_to(conn, "0012")
        assert _waits(engine) == [(WAITED, "b000000000000001")]
        with engine.begin() as conn:
            upgrade_to(conn, "0013")
            insert(conn, "tether_otlp_waits", span_id=WAITED, run_id="b000000000000003")
        assert _waits(engine) == [(WAITED, "b000000000000001"), (WAITED, "b000000000000003")]
    finally:
        engine.dispose()
