"""The audit log gets an index on ``(run_id, kind, seq)``.

Approvals read a run's entries of one kind in chain order (``run_entries``: the answers to a
paused run's call, whether it was resumed) on every answer, resume and listed approval; with
no index that read went through the whole log. ``seq`` last: the entries come out in chain
order from the index, with no sort.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tether_audit_run_kind", "tether_audit", ["run_id", "kind", "seq"])


def downgrade() -> None:
    op.drop_index("ix_tether_audit_run_kind", table_name="tether_audit")
