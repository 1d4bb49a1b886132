"""``tether_otlp_waits`` keyed by the span waited for *and* the run waiting: pending runs of
two projects may wait for one span.

Projects share the span id space: a service of one project names, as its missing parent, the
span of another project's trace that called it (read off ``traceparent``). Keyed by the span
alone, the table held one waiting run a span: the first project to name a span made every
later span of another project naming it join that project's pending run, refused ('its run
id is already taken'), so one span naming another project's root before that project's own
children came had those children refused (lost: OTLP does not send refused spans again).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _rebuild(primary_key: tuple[str, ...], name: str, keep: str) -> None:
    # (PostgreSQL: a key's name is an index's, unique in the schema while both tables exist)
    op.create_table(
        "tether_otlp_waits_new",
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name=name),
    )
    op.execute(f"INSERT INTO tether_otlp_waits_new (span_id, run_id) {keep}")
    op.drop_table("tether_otlp_waits")
    op.rename_table("tether_otlp_waits_new", "tether_otlp_waits")


def upgrade() -> None:
    _rebuild(
        ("span_id", "run_id"),
        "tether_otlp_waits_span_run_pkey",
        "SELECT span_id, run_id FROM tether_otlp_waits",
    )


def downgrade() -> None:
    # 0012 holds one run a span: the oldest run waiting for it keeps the wait (the others,
    # later, were refused before this revision anyway).
    _rebuild(
        ("span_id",),
        "tether_otlp_waits_pkey",
        "SELECT w.span_id, min(w.run_id) FROM tether_otlp_waits w GROUP BY w.span_id",
    )
