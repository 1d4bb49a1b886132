"""Initial trace store: runs, spans, events, checkpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tether_runs",
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("agent_name", sa.String(64), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("ended_ns", sa.BigInteger),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_input_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_index("ix_tether_runs_started", "tether_runs", ["started_ns"])
    op.create_index("ix_tether_runs_agent", "tether_runs", ["agent_name", "started_ns"])
    op.create_table(
        "tether_spans",
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("trace_id", sa.String(32), sa.ForeignKey("tether_runs.trace_id"), nullable=False),
        sa.Column("parent_id", sa.String(16)),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("status_message", sa.Text),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_index("ix_tether_spans_trace", "tether_spans", ["trace_id", "start_ns"])
    op.create_table(
        "tether_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), sa.ForeignKey("tether_runs.trace_id"), nullable=False),
        sa.Column("span_id", sa.String(16)),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_index("ix_tether_events_trace", "tether_events", ["trace_id", "time_ns"])
    op.create_table(
        "tether_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), sa.ForeignKey("tether_runs.trace_id"), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_index("ix_tether_checkpoints_trace", "tether_checkpoints", ["trace_id", "created_ns"])


def downgrade() -> None:
    for table in ("tether_checkpoints", "tether_events", "tether_spans", "tether_runs"):
        op.drop_table(table)
