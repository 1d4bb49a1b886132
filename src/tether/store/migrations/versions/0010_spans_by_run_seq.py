"""A run's spans are indexed by the run's ``run_seq``, a key that grows with each run written,
instead of by its random run id.

The spans' run index ``(run_id, start_ns)`` had a random first key (16 hex characters): the
spans of each run written went to another place of it, and every commit dirtied about one of
its pages per run. ``tether_runs.run_seq`` is given when a run is first written (the writer's
clock in ns) and never changes; each span carries its run's, and the index is
``(run_seq, start_ns)``: spans of new runs go to its right edge. Raw ``sqlite3`` inserts of a
1-turn run's rows cost 62 µs of CPU this way against 78, an OTLP span 10.9 against 13.6 (the
same as with no spans' run index at all; docs/benchmarks.md). A run's spans are read by
``(run_seq, run_id)``: ``tables.spans_of_run``.

Stored runs get their ``started_ns`` as ``run_seq``, and their spans their run's.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tether_runs", sa.Column("run_seq", sa.BigInteger))
    op.add_column("tether_spans", sa.Column("run_seq", sa.BigInteger))
    op.execute("UPDATE tether_runs SET run_seq = started_ns")
    op.execute(
        "UPDATE tether_spans SET run_seq = "
        "(SELECT r.run_seq FROM tether_runs r WHERE r.run_id = tether_spans.run_id)"
    )
    op.create_index("ix_tether_spans_run_seq", "tether_spans", ["run_seq", "start_ns"])
    op.drop_index("ix_tether_spans_run", table_name="tether_spans")


def downgrade() -> None:
    op.create_index("ix_tether_spans_run", "tether_spans", ["run_id", "start_ns"])
    op.drop_index("ix_tether_spans_run_seq", table_name="tether_spans")
    # SQLite (3.35 and later) drops a column in place: no index or key names it any more.
    op.drop_column("tether_spans", "run_seq")
    op.drop_column("tether_runs", "run_seq")
