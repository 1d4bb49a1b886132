"""Stores at schema revision 0002 (runs keyed by run id; no project, kind, entry point or
caller; an agent on every run), built row by row the way Tether wrote them then."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from fakes.store_0001 import insert, run_row_0001, upgrade_to


def upgrade_to_0002(conn: Connection) -> None:
    """Create the 0002 schema (an empty database) with Alembic."""
    upgrade_to(conn, "0002")


def run_0002(conn: Connection, run_id: str, started_ns: int, **kw: Any) -> None:
    row = {**run_row_0001(run_id * 2, started_ns), "run_id": run_id, "agent_name": "support"}
    row.update(agent_version="3f2a9c1e" * 8, input=f"input of {run_id[:4]}", **kw)
    insert(conn, "tether_runs", **row)


def span_row(
    run_id: str,
    span_id: str,
    parent_id: str | None,
    kind: str,
    start: int,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "run_id": run_id,
        "trace_id": run_id * 2,
        "parent_id": parent_id,
        "name": f"{kind} step",
        "kind": kind,
        "start_ns": start,
        "end_ns": start + 100,
        "status": "ok",
        "status_message": None,
        "attributes": json.dumps(attributes or {}),
    }


def spans_0002(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert span rows (``span_row``) in one statement."""
    columns = list(rows[0])
    conn.execute(
        text(
            f"INSERT INTO tether_spans ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        ),
        rows,
    )
