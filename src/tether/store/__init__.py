"""The store: SQLAlchemy tables, Alembic migrations, and the ``Store`` repository."""

from tether.store.db import (
    canonical_url,
    create_store_engine,
    migrate,
    redact_url,
    store_identity,
)
from tether.store.records import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    TraceBatch,
)
from tether.store.repository import Store
from tether.store.values import dumps_attributes

__all__ = [
    "CheckpointRecord",
    "EventRecord",
    "RunRecord",
    "SpanRecord",
    "Store",
    "TraceBatch",
    "canonical_url",
    "create_store_engine",
    "dumps_attributes",
    "migrate",
    "redact_url",
    "store_identity",
]
