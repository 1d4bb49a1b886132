"""Rows written without a ``run_seq`` get one from the database: a run its ``started_ns``, a
span its run's.

Migration 0010 keys a run's spans by the run's ``run_seq``, which the writer gives. A process
still running a Tether from before 0010 (a server replica not yet replaced in a rolling
upgrade, a long-lived worker) goes on writing to a store another process has upgraded: its
inserts name the columns it knows, so its runs and spans got no ``run_seq``, and every read of
a run's spans (``tables.spans_of_run``) found none of them, for good (``traces show`` printed
such a run without a span). Triggers now fill what such an insert leaves empty, as 0010 filled
the rows stored before it; rows a current writer inserts carry their ``run_seq`` and only pay
for the trigger's ``IS NULL`` test. Rows an older writer stored between 0010 and this
migration are filled here.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_FILL_EXISTING = (
    "UPDATE tether_runs SET run_seq = started_ns WHERE run_seq IS NULL",
    "UPDATE tether_spans SET run_seq = "
    "(SELECT r.run_seq FROM tether_runs r WHERE r.run_id = tether_spans.run_id) "
    "WHERE run_seq IS NULL",
)

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER tether_runs_run_seq AFTER INSERT ON tether_runs "
    "WHEN NEW.run_seq IS NULL BEGIN "
    "UPDATE tether_runs SET run_seq = NEW.started_ns WHERE run_id = NEW.run_id; END",
    "CREATE TRIGGER tether_spans_run_seq AFTER INSERT ON tether_spans "
    "WHEN NEW.run_seq IS NULL BEGIN "
    "UPDATE tether_spans SET run_seq = "
    "(SELECT r.run_seq FROM tether_runs r WHERE r.run_id = NEW.run_id) "
    "WHERE span_id = NEW.span_id; END",
)

# PostgreSQL: a BEFORE trigger sets the row's value as it goes in (no second write), and its
# WHEN keeps the function from being called for rows that carry their run_seq.
_PG_FUNCTION = """
CREATE FUNCTION tether_fill_run_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tether_runs' THEN
        NEW.run_seq := NEW.started_ns;
    ELSE
        SELECT r.run_seq INTO NEW.run_seq FROM tether_runs r WHERE r.run_id = NEW.run_id;
    END IF;
    RETURN NEW;
END
$$
"""
_PG_TRIGGERS = tuple(
    f"CREATE TRIGGER {table}_run_seq BEFORE INSERT ON {table} FOR EACH ROW "
    "WHEN (NEW.run_seq IS NULL) EXECUTE FUNCTION tether_fill_run_seq()"
    for table in ("tether_runs", "tether_spans")
)


def upgrade() -> None:
    for statement in _FILL_EXISTING:
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in ("tether_spans", "tether_runs"):
        op.execute(f"DROP TRIGGER {table}_run_seq" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION tether_fill_run_seq()")
