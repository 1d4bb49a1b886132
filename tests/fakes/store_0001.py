"""Stores at schema revision 0001 (runs keyed by trace id), built row by row the way Tether
wrote them then, for tests of the upgrade and of replaying old journals into upgraded stores."""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text

from tether.store.db import MIGRATIONS_DIR
from tether.store.tables import VERSION_TABLE, metadata


def upgrade_to(conn: Connection, revision: str) -> None:
    """Bring the schema to an old ``revision`` with Alembic (from an empty database, or from
    an older revision)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def downgrade_to(conn: Connection, revision: str) -> None:
    """Take the schema back to an older ``revision`` with Alembic."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, revision)


def upgrade_to_0001(conn: Connection) -> None:
    """Create the 0001 schema (an empty database) with Alembic."""
    upgrade_to(conn, "0001")


def insert(conn: Connection, table: str, **values: Any) -> None:
    names = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({params})"), values)


def insert_span_0009(
    conn: Connection,
    *,
    span_id: str,
    run_id: str,
    trace_id: str,
    parent_id: str | None,
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int,
) -> None:
    """A span as a writer from before migration 0010 inserts it (no ``run_seq``), status ok."""
    insert(
        conn,
        "tether_spans",
        span_id=span_id,
        run_id=run_id,
        trace_id=trace_id,
        parent_id=parent_id,
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=end_ns,
        status="ok",
        status_message=None,
        attributes="{}",
    )


def schema_differences(engine: Engine) -> list[Any]:
    """How the store's schema differs from the table definitions (none once at the head)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        return list(compare_metadata(context, metadata))


def run_row_0001(trace_id: str, started_ns: int) -> dict[str, Any]:
    """A finished run's row as revision 0001 has it (a row of later revisions starts so)."""
    return {
        "trace_id": trace_id,
        "agent_name": "legacy",
        "agent_version": "v0",
        "status": "completed",
        "outcome": "final_answer",
        "input": f"input of {trace_id[:4]}",
        "output": "answer",
        "started_ns": started_ns,
        "ended_ns": started_ns + 10_000,
        "input_tokens": 12,
        "output_tokens": 4,
        "cached_input_tokens": 0,
        "cost_usd": 0.5,
        "turns": 1,
        "tool_calls": 0,
        "error": None,
        "attributes": json.dumps({"tether.agent.paradigm": "react"}),
    }


def run_0001(conn: Connection, trace_id: str, started_ns: int, **kw: Any) -> None:
    insert(conn, "tether_runs", **{**run_row_0001(trace_id, started_ns), **kw})


def span_0001(
    conn: Connection, trace_id: str, span_id: str, parent_id: str | None, kind: str, start: int
) -> None:
    insert(
        conn,
        "tether_spans",
        span_id=span_id,
        trace_id=trace_id,
        parent_id=parent_id,
        name=f"{kind} step",
        kind=kind,
        start_ns=start,
        end_ns=start + 100,
        status="ok",
        status_message=None,
        attributes="{}",
    )


def event_0001(conn: Connection, trace_id: str, span_id: str | None, time_ns: int) -> None:
    insert(
        conn,
        "tether_events",
        trace_id=trace_id,
        span_id=span_id,
        name="tether.control.decision",
        time_ns=time_ns,
        attributes='{"tether.decision":"allow"}',
    )
