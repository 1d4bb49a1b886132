"""Projects, API keys and browser sessions: what ``tether serve`` checks every request against.

``tether_projects`` lists the projects (the tenant boundary), with ``default`` made here.
``tether_api_keys`` holds each key's id, project, role and the SHA-256 of its secret (never the
secret). ``tether_sessions`` holds the SHA-256 of each browser session's token, the key it was
opened with and the project it looks at.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    projects = op.create_table(
        "tether_projects",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="tether_projects_pkey"),
    )
    op.bulk_insert(projects, [{"name": "default", "created_ns": time.time_ns()}])
    op.create_table(
        "tether_api_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("expires_ns", sa.BigInteger),
        sa.Column("revoked_ns", sa.BigInteger),
        sa.PrimaryKeyConstraint("key_id", name="tether_api_keys_pkey"),
        sa.ForeignKeyConstraint(
            ["project"], ["tether_projects.name"], name="tether_api_keys_project_fkey"
        ),
    )
    op.create_index("ix_tether_api_keys_project", "tether_api_keys", ["project", "created_ns"])
    op.create_table(
        "tether_sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("expires_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="tether_sessions_pkey"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["tether_api_keys.key_id"], name="tether_sessions_key_id_fkey"
        ),
    )
    op.create_index("ix_tether_sessions_key", "tether_sessions", ["key_id"])


def downgrade() -> None:
    op.drop_table("tether_sessions")
    op.drop_table("tether_api_keys")
    op.drop_table("tether_projects")
