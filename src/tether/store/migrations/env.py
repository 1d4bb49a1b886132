"""Alembic environment. Tether runs migrations in-process with a connection it already holds."""

from __future__ import annotations

from alembic import context

from tether.store.tables import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
if (
    connection.dialect.name == "sqlite"
    and not connection.connection.dbapi_connection.in_transaction
):
    # Python's sqlite3 opens a transaction only before DML, so each DDL statement would
    # commit on its own and a migration failing halfway would leave a store that no version
    # can open. SQLite has transactional DDL: one explicit transaction makes it all or nothing.
    connection.exec_driver_sql("BEGIN")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    # Not alembic's default "alembic_version": the store may share a database with an
    # application that has its own migrations.
    version_table=VERSION_TABLE,
    # tether.store.db.migrate follows which migrations ran (to name the one that failed).
    on_version_apply=context.config.attributes.get("on_version_apply", ()),
)
with context.begin_transaction():
    context.run_migrations()
