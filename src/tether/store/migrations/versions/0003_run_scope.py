"""Runs say whose they are and what they are; runs are read by filters, a page at a time.

``tether_runs`` gains ``project`` (``default``), ``kind`` (``agent_run``), ``entry_point``
(``runtime``) and ``caller`` (JSON text, null), and ``agent_name`` / ``agent_version`` become
nullable (a gateway request may have no agent). Its indexes follow the filters of the read
side, each keeping the order runs are read in (newest first, by ``(started_ns, run_id)``).
``tether_run_models`` lists the models each run requested, filled here from the model spans
already stored (their ``gen_ai.request.model``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MODEL_LENGTH = 128
OLD_COLUMNS = (
    "run_id",
    "trace_id",
    "agent_name",
    "agent_version",
    "status",
    "outcome",
    "input",
    "output",
    "started_ns",
    "ended_ns",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "turns",
    "tool_calls",
    "error",
    "attributes",
)
"""The columns of ``tether_runs`` at revision 0002."""


def _new_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("project", sa.String(128), nullable=False, server_default="default"),
        sa.Column("kind", sa.String(16), nullable=False, server_default="agent_run"),
        sa.Column("entry_point", sa.String(16), nullable=False, server_default="runtime"),
        sa.Column("caller", sa.Text),
    ]


def _runs_0003() -> list[Any]:
    """``tether_runs`` as this revision makes it (SQLite rebuilds the table)."""
    return [
        sa.Column("run_id", sa.String(16), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("agent_name", sa.String(64)),
        sa.Column("agent_version", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("ended_ns", sa.BigInteger),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_input_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attributes", sa.Text, nullable=False),
        *_new_columns(),
        sa.PrimaryKeyConstraint("run_id", name="tether_runs_pkey"),
    ]


def _rebuild_sqlite_runs() -> None:
    """SQLite cannot drop a NOT NULL: the table is rebuilt. Not the way batch mode does it
    (a new table renamed over the old one): spans, events and checkpoints refer to the runs,
    and with foreign keys on, dropping the old table breaks their references for good. Here
    the rows are set aside, the table made anew and the rows put back, with the foreign keys
    checked once, at commit (``defer_foreign_keys``): a reference the rows do not restore
    fails the whole migration, and the store stays as it was."""
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE _tether_runs_0002 AS SELECT * FROM tether_runs")
    op.drop_table("tether_runs")  # its indexes go with it
    op.create_table("tether_runs", *_runs_0003())
    columns = ", ".join(OLD_COLUMNS)
    op.execute(f"INSERT INTO tether_runs ({columns}) SELECT {columns} FROM _tether_runs_0002")
    op.drop_table("_tether_runs_0002")


def _clean(text: str) -> str:
    """A model name any database takes: no NUL, no lone surrogate, at most the column."""
    text = text.replace("\x00", "\ufffd")
    text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text[:MODEL_LENGTH]


def _fill_run_models(dialect: str) -> None:
    """The models each stored run requested, from its model spans."""
    conn = op.get_bind()
    spans = sa.table(
        "tether_spans",
        sa.column("run_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("attributes", sa.Text),
    )
    models = sa.table("tether_run_models", sa.column("run_id"), sa.column("model"))
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    ignoring = insert(models).on_conflict_do_nothing()
    query = (
        sa.select(spans.c.run_id, spans.c.attributes)
        .where(spans.c.kind == "model")
        .where(spans.c.attributes.like("%gen_ai.request.model%"))
    )
    pending: set[tuple[str, str]] = set()
    # Streamed, on the statement: options set on the connection would stay for the
    # statements Alembic runs after this one.
    for run_id, attributes in conn.execute(query.execution_options(yield_per=1000)):
        try:
            model = json.loads(attributes).get("gen_ai.request.model")
        except (ValueError, AttributeError):  # not a JSON object: nothing to read
            continue
        if isinstance(model, str) and model:
            pending.add((run_id, _clean(model)))
        if len(pending) >= 1000:
            conn.execute(ignoring, [{"run_id": r, "model": m} for r, m in sorted(pending)])
            pending.clear()
    if pending:
        conn.execute(ignoring, [{"run_id": r, "model": m} for r, m in sorted(pending)])


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _rebuild_sqlite_runs()
        op.create_index("ix_tether_runs_trace", "tether_runs", ["trace_id"])
    else:
        for column in _new_columns():
            op.add_column("tether_runs", column)
        for name in ("agent_name", "agent_version"):
            op.alter_column("tether_runs", name, existing_type=sa.String(64), nullable=True)
        op.drop_index("ix_tether_runs_started", "tether_runs")
        op.drop_index("ix_tether_runs_agent", "tether_runs")
    op.create_index("ix_tether_runs_started", "tether_runs", ["started_ns", "run_id"])
    op.create_index("ix_tether_runs_project", "tether_runs", ["project", "started_ns", "run_id"])
    op.create_index("ix_tether_runs_status", "tether_runs", ["status", "started_ns"])
    op.create_index("ix_tether_runs_outcome", "tether_runs", ["outcome", "started_ns"])
    op.create_index(
        "ix_tether_runs_agent", "tether_runs", ["agent_name", "agent_version", "started_ns"]
    )
    op.create_table(
        "tether_run_models",
        sa.Column("run_id", sa.String(16), nullable=False),
        sa.Column("model", sa.String(MODEL_LENGTH), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "model", name="tether_run_models_pkey"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["tether_runs.run_id"],
            name="tether_run_models_run_id_fkey",
        ),
    )
    op.create_index("ix_tether_run_models_model", "tether_run_models", ["model", "run_id"])
    _fill_run_models(dialect)


def downgrade() -> None:
    raise NotImplementedError("runs without an agent cannot go back to a schema that needs one")
