"""Alembic environment. Tether runs migrations in-process with a connection it already holds."""

from __future__ import annotations

from alembic import context

from tether.store.tables import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    # Not alembic's default "alembic_version": the store may share a database with an
    # application that has its own migrations.
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
