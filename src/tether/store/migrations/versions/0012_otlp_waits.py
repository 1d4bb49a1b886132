"""Pending OTLP runs wait through a table: ``tether_otlp_waits`` maps the span a pending run
waits for (the missing parent of its topmost span) to the run.

A pending run was named after the parent it waited for, so each span of a chain sent leaf
first, one a request, moved every span and event of the chain into a new run named after its
own parent: rows written grew with the square of the chain (1,000 spans: about 500,000
rows). With the table the run keeps its id, the link it waits for is one row, and its spans
move once, into the root's run. Pending runs stored before wait for the span they are named
after.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tether_otlp_waits",
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("run_id", sa.String(16), nullable=False),
    )
    op.execute(
        "INSERT INTO tether_otlp_waits (span_id, run_id) SELECT r.run_id, r.run_id "
        "FROM tether_runs r WHERE r.status = 'running' AND r.entry_point = 'otlp' "
        "AND NOT EXISTS (SELECT 1 FROM tether_spans s WHERE s.span_id = r.run_id)"
    )


def downgrade() -> None:
    # 0011 finds a pending run by its name: a run waiting for another span than the one it
    # is named after takes that span's id (its spans, events and models follow).
    conn = op.get_bind()
    columns = [c["name"] for c in sa.inspect(conn).get_columns("tether_runs")]
    copied = ", ".join(":new" if c == "run_id" else c for c in columns)
    moves = conn.execute(
        sa.text(
            "SELECT w.span_id, w.run_id FROM tether_otlp_waits w WHERE w.span_id <> w.run_id "
            "AND NOT EXISTS (SELECT 1 FROM tether_runs r WHERE r.run_id = w.span_id)"
        )
    ).all()
    for new, old in moves:
        ids = {"new": new, "old": old}
        conn.execute(
            sa.text(
                f"INSERT INTO tether_runs ({', '.join(columns)}) "
                f"SELECT {copied} FROM tether_runs WHERE run_id = :old"
            ),
            ids,
        )
        for table in ("tether_spans", "tether_events", "tether_run_models"):
            conn.execute(sa.text(f"UPDATE {table} SET run_id = :new WHERE run_id = :old"), ids)
        conn.execute(sa.text("DELETE FROM tether_runs WHERE run_id = :old"), ids)
    op.drop_table("tether_otlp_waits")
