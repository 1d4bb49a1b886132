"""The audit log: an append-only, hash-chained list of decisions, policy loads and admin changes.

``tether_audit`` holds the entries (``seq`` from 1; each entry's ``prev_hash`` is the hash of
the entry before it). ``tether_audit_head`` holds one row, the last entry's seq and hash
(seq 0 and the genesis hash when the log is empty): writers lock it to append in turn.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "tether_audit",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("run_id", sa.String(16)),
        sa.Column("span_id", sa.String(16)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="tether_audit_pkey"),
        sa.UniqueConstraint("entry_id", name="tether_audit_entry_id_key"),
    )
    head = op.create_table(
        "tether_audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="tether_audit_head_pkey"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade() -> None:
    op.drop_table("tether_audit_head")
    op.drop_table("tether_audit")
