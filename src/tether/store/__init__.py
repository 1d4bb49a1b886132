"""The store: SQLAlchemy tables, Alembic migrations, and the ``Store`` repository."""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports
from tether.store.records import (
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
    TraceBatch,
)

if TYPE_CHECKING:
    from tether.store.db import (
        canonical_url,
        create_store_engine,
        migrate,
        redact_url,
        store_identity,
    )
    from tether.store.repository import Store
    from tether.store.values import dumps_attributes

# The records are plain dataclasses; the database side (SQLAlchemy, Alembic) loads on first
# use, so code that only builds or reads records does not pay for it.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        ".db": (
            "canonical_url",
            "create_store_engine",
            "migrate",
            "redact_url",
            "store_identity",
        ),
        ".repository": ("Store",),
        ".values": ("dumps_attributes",),
    },
)

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
