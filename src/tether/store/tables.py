"""SQLAlchemy 2 table definitions. Schema changes go through Alembic migrations only."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    select,
)

from tether.store.records import AGENT_RUN, DEFAULT_PROJECT, RUNTIME

metadata = MetaData()

VERSION_TABLE = "tether_alembic_version"
"""Where Alembic records the store's schema revision (its own table, so the store can share a
database with an application that uses Alembic too)."""

runs = Table(
    "tether_runs",
    metadata,
    # The id of the run's root (``invoke_agent``) span: several runs may share a trace id.
    Column("run_id", String(16), primary_key=True),
    Column("trace_id", String(32), nullable=False),
    Column("project", String(128), nullable=False, server_default=DEFAULT_PROJECT),
    Column("kind", String(16), nullable=False, server_default=AGENT_RUN),
    Column("entry_point", String(16), nullable=False, server_default=RUNTIME),
    # Null when the run is not an agent's (a gateway request).
    Column("agent_name", String(64)),
    Column("agent_version", String(64)),
    # ``Caller.stored()`` as compact JSON text, like ``attributes``; null when not known.
    Column("caller", Text),
    Column("status", String(16), nullable=False),
    Column("outcome", String(32)),
    Column("input", Text, nullable=False),
    Column("output", Text),
    Column("started_ns", BigInteger, nullable=False),
    Column("ended_ns", BigInteger),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cached_input_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("turns", Integer, nullable=False, default=0),
    Column("tool_calls", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("attributes", Text, nullable=False),
    # The key the run's spans are stored under (migration 0010): given when the run is first
    # written, from the writer's clock, and never changed. It grows with each run written, so
    # the spans of new runs go to the right edge of the spans' run index, not to random
    # places (a random key there dirtied another page of that index per run, at each commit).
    # Not unique: spans are found by ``(run_seq, run_id)`` (``spans_of_run``).
    Column("run_seq", BigInteger),
    # Runs are read newest first, by the key ``(started_ns, run_id)`` (keyset pages): each
    # filter of ``RunQuery`` has an index that leads with it and keeps that order. No index
    # on ``trace_id``: no read uses one (migration 0009), and its random key cost every write.
    Index("ix_tether_runs_started", "started_ns", "run_id"),
    Index("ix_tether_runs_project", "project", "started_ns", "run_id"),
    Index("ix_tether_runs_status", "status", "started_ns"),
    Index("ix_tether_runs_outcome", "outcome", "started_ns"),
    Index("ix_tether_runs_agent", "agent_name", "agent_version", "started_ns"),
)

run_models = Table(
    "tether_run_models",
    metadata,
    # The models a run requested (``gen_ai.request.model`` of its model spans, fallbacks
    # included), kept by the store as it writes the spans: what ``RunQuery.model`` filters on.
    Column("run_id", String(16), ForeignKey("tether_runs.run_id"), primary_key=True),
    Column("model", String(128), primary_key=True),
    Index("ix_tether_run_models_model", "model", "run_id"),
)

spans = Table(
    "tether_spans",
    metadata,
    Column("span_id", String(16), primary_key=True),
    Column("run_id", String(16), ForeignKey("tether_runs.run_id"), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("parent_id", String(16)),
    Column("name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),
    Column("status_message", Text),
    Column("attributes", Text, nullable=False),
    # The run's ``run_seq``: a run's spans are read through it (``spans_of_run``).
    Column("run_seq", BigInteger),
    Index("ix_tether_spans_run_seq", "run_seq", "start_ns"),
)

events = Table(
    "tether_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(16), ForeignKey("tether_runs.run_id"), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16)),
    Column("name", String(128), nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("attributes", Text, nullable=False),
    Index("ix_tether_events_run", "run_id", "time_ns"),
)

otlp_waits = Table(
    "tether_otlp_waits",
    metadata,
    # What a pending OTLP run (``running``, its root not arrived) waits for: the missing parent
    # of its topmost span (migration 0012). The run keeps its id while a chain sent leaf first
    # grows upwards, one row changing a link, and its spans move once, when the root comes
    # (they moved at each link when a pending run was named after what it waited for).
    # Keyed by both: runs of two projects may wait for one span (migration 0013).
    Column("span_id", String(16), primary_key=True),
    Column("run_id", String(16), primary_key=True),
)

checkpoints = Table(
    "tether_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(16), ForeignKey("tether_runs.run_id"), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("state", Text, nullable=False),
    Index("ix_tether_checkpoints_run", "run_id", "created_ns"),
)

projects = Table(
    "tether_projects",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_ns", BigInteger, nullable=False),
)

api_keys = Table(
    "tether_api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("project", String(128), ForeignKey("tether_projects.name"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    # SHA-256 of the key's random secret, hex: never the secret itself.
    Column("secret_sha256", String(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger),
    Column("revoked_ns", BigInteger),
    Column("last_used_ns", BigInteger),  # at most a minute old (migration 0007)
    Index("ix_tether_api_keys_project", "project", "created_ns"),
)

sessions = Table(
    "tether_sessions",
    metadata,
    # SHA-256 of the session cookie's random token, hex: a stolen table opens no session.
    Column("token_sha256", String(64), primary_key=True),
    Column("key_id", String(16), ForeignKey("tether_api_keys.key_id"), nullable=False),
    Column("project", String(128), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Index("ix_tether_sessions_key", "key_id"),
)

audit = Table(
    "tether_audit",
    metadata,
    # Position in the chain, from 1, given when the entry is written (one writer at a time).
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    # The entry's own id, made when it is accepted: a replayed crash journal writes it once.
    Column("entry_id", String(32), nullable=False, unique=True),
    Column("time_ns", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    # Who: JSON text (project, key id, end user, agent), as hashed.
    Column("actor", Text, nullable=False),
    Column("trace_id", String(32)),
    Column("run_id", String(16)),
    Column("span_id", String(16)),
    Column("details", Text, nullable=False),
    # "sha256" or "hmac-sha256" (keyed with TETHER_AUDIT_KEY).
    Column("alg", String(16), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # A run's entries of one kind, in chain order (approvals, resumes: migration 0008).
    Index("ix_tether_audit_run_kind", "run_id", "kind", "seq"),
)

audit_head = Table(
    "tether_audit_head",
    metadata,
    # One row (id 1): the last entry's seq and hash. Writers lock it to append in turn, and
    # ``tether audit verify`` finds entries deleted from the end of the chain by it.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

budgets = Table(
    "tether_budgets",
    metadata,
    # ``scope:who:counter:window:period`` (``project:acme:usd:day:20261124``).
    Column("key", String(255), primary_key=True),
    # What reconciled calls used (tokens, micro-USD or model calls).
    Column("used", BigInteger, nullable=False),
    # When the row may be dropped (past the end of its window).
    Column("expires_ns", BigInteger, nullable=False),
    Index("ix_tether_budgets_expires", "expires_ns"),
)

budget_holds = Table(
    "tether_budget_holds",
    metadata,
    # One reservation's amount on one budget, until it is reconciled or expires (its caller died).
    Column("hold_id", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Index("ix_tether_budget_holds_key", "key", "expires_ns"),
    Index("ix_tether_budget_holds_expires", "expires_ns"),
)


def spans_of_run(run_id: str) -> ColumnElement[bool]:
    """The condition that selects one run's spans through the spans' run index: their
    ``run_seq`` is the run's (looked up by its id once), and their run id is the run's (two
    runs may share a ``run_seq``)."""
    seq = select(runs.c.run_seq).where(runs.c.run_id == run_id).scalar_subquery()
    return and_(spans.c.run_seq == seq, spans.c.run_id == run_id)
