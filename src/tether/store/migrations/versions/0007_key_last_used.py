"""API keys: when each was last used (``tether_api_keys.last_used_ns``, null: never since this
revision). Written at most once a minute per key, off the request's path
(``tether.server.access.AccessStore.note_used``).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tether_api_keys", sa.Column("last_used_ns", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tether_api_keys") as batch:
        batch.drop_column("last_used_ns")
