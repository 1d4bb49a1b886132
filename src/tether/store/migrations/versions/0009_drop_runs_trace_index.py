"""The runs' trace id index goes: no read uses it, and every run paid for it.

Runs are found by their run id (primary key), listed through the project, status, outcome,
agent and time indexes, and looked up by an id prefix with ``LIKE`` (``get_run``), which
neither SQLite nor PostgreSQL answers from a plain B-tree index on ``trace_id`` (both scan:
checked with ``EXPLAIN``). Its one user was the replay of a crash journal written before runs
had ids (migration 0002), which now scans the runs once per chunk of trace ids. Its key is
random (32 hex characters), so each run written dirtied another leaf of it: raw ``sqlite3``
inserts of a 1-turn run's rows, 50 runs a transaction into a store of 10,000 runs, cost 63 µs
of CPU without it against 74 (2-turn: 102 against 127; docs/benchmarks.md, "Results: store
writes per run and per span").

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_tether_runs_trace", table_name="tether_runs")


def downgrade() -> None:
    op.create_index("ix_tether_runs_trace", "tether_runs", ["trace_id"])
