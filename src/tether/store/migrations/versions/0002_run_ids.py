"""Runs get their own id within a trace: several runs may share one trace id.

``tether_runs`` is keyed by ``run_id`` (the id of the run's root ``invoke_agent`` span), with a
non-unique index on ``trace_id``; spans, events and checkpoints belong to a run by ``run_id``.
Existing runs get the id of their trace's earliest root agent span, or, when that span was
never written (a run whose process died), the first 16 hex characters of their trace id.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHILDREN = {
    "tether_spans": "start_ns",
    "tether_events": "time_ns",
    "tether_checkpoints": "created_ns",
}
"""The tables that belong to a run, and the time column each is read in order of."""

# The names PostgreSQL gave the constraints of 0001; on SQLite, batch mode names the reflected
# (unnamed) constraints the same way, so one set of operations serves both.
NAMING = {"pk": "%(table_name)s_pkey", "fk": "%(table_name)s_%(column_0_name)s_fkey"}

_runs = sa.table("tether_runs", sa.column("run_id", sa.String), sa.column("trace_id", sa.String))
_spans = sa.table(
    "tether_spans",
    sa.column("span_id", sa.String),
    sa.column("trace_id", sa.String),
    sa.column("parent_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("start_ns", sa.BigInteger),
)


def _assign_run_ids() -> None:
    root = (
        sa.select(_spans.c.span_id)
        .where(
            _spans.c.trace_id == _runs.c.trace_id,
            _spans.c.parent_id.is_(None),
            _spans.c.kind == "agent",
        )
        # The trace's first run owns its row: runs that reused the trace id started later.
        .order_by(_spans.c.start_ns, _spans.c.span_id)
        .limit(1)
        .scalar_subquery()
    )
    derived = sa.func.substr(_runs.c.trace_id, 1, 16)
    op.execute(_runs.update().values(run_id=sa.func.coalesce(root, derived)))
    # A run without its root span (its process died) takes the first half of its trace id,
    # which two runs can share: a 64-bit trace id written as 128 bits (B3, Jaeger, Zipkin:
    # OpenTelemetry pads them with zeros on the left) leaves all-zero first halves, and the
    # primary key below failed on them, so the store could not be opened at all. Those runs
    # take the other half (the random one) instead.
    taken = sa.select(_runs.c.run_id).group_by(_runs.c.run_id).having(sa.func.count() > 1)
    shared = [row[0] for row in op.get_bind().execute(taken)]
    if shared:
        op.execute(
            _runs.update()
            .where(_runs.c.run_id.in_(shared), _runs.c.run_id == derived)
            .values(run_id=sa.func.substr(_runs.c.trace_id, 17, 16))
        )
    for name in CHILDREN:
        child = sa.table(name, sa.column("run_id", sa.String), sa.column("trace_id", sa.String))
        of_trace = (
            sa.select(_runs.c.run_id).where(_runs.c.trace_id == child.c.trace_id).scalar_subquery()
        )
        op.execute(child.update().values(run_id=of_trace))


def upgrade() -> None:
    for name in ("tether_runs", *CHILDREN):
        op.add_column(name, sa.Column("run_id", sa.String(16)))
    _assign_run_ids()
    # The children let go of tether_runs.trace_id first: on SQLite, batch mode recreates
    # tether_runs, and dropping a table that rows still refer to fails.
    for name in CHILDREN:
        with op.batch_alter_table(name, naming_convention=NAMING) as batch:
            batch.drop_constraint(f"{name}_trace_id_fkey", type_="foreignkey")
            batch.drop_index(f"ix_{name}_trace")
    with op.batch_alter_table("tether_runs", naming_convention=NAMING) as batch:
        batch.alter_column("run_id", existing_type=sa.String(16), nullable=False)
        batch.drop_constraint("tether_runs_pkey", type_="primary")
        batch.create_primary_key("tether_runs_pkey", ["run_id"])
        batch.create_index("ix_tether_runs_trace", ["trace_id"])
    for name, time_column in CHILDREN.items():
        with op.batch_alter_table(name, naming_convention=NAMING) as batch:
            batch.alter_column("run_id", existing_type=sa.String(16), nullable=False)
            batch.create_foreign_key(f"{name}_run_id_fkey", "tether_runs", ["run_id"], ["run_id"])
            batch.create_index(f"ix_{name}_run", ["run_id", time_column])


def downgrade() -> None:
    raise NotImplementedError("a store with runs that share a trace id cannot be keyed by trace")
