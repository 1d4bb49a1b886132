"""Budgets: counters of token, US-dollar and rate budgets, and the reservations held on them.

``tether_budgets`` holds one row per budget and window (its key), with what reconciled calls
used. ``tether_budget_holds`` holds each live reservation's amount on each budget it touches;
a reservation whose caller died expires (``expires_ns``) and no longer counts. A reservation
locks its budgets' rows (an upsert's row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite)
while it checks and holds, so concurrent callers never both take the last room
(``tether.controls.budget_sql``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tether_budgets",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("expires_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", name="tether_budgets_pkey"),
    )
    op.create_index("ix_tether_budgets_expires", "tether_budgets", ["expires_ns"])
    op.create_table(
        "tether_budget_holds",
        sa.Column("hold_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("expires_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("hold_id", "key", name="tether_budget_holds_pkey"),
    )
    op.create_index("ix_tether_budget_holds_key", "tether_budget_holds", ["key", "expires_ns"])
    op.create_index("ix_tether_budget_holds_expires", "tether_budget_holds", ["expires_ns"])


def downgrade() -> None:
    op.drop_table("tether_budget_holds")
    op.drop_table("tether_budgets")
