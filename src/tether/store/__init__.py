"""The store: SQLAlchemy tables, Alembic migrations, the ``Store`` that writes, and the
``StoreReader`` that reads runs by filters, a page at a time."""

from typing import TYPE_CHECKING

from tether.core.errors import InvalidQuery, NotFound
from tether.core.lazy import lazy_exports
from tether.store.records import (
    AuditRecord,
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
        parse_store_url,
        redact_url,
        store_identity,
    )
    from tether.store.query import RunQuery, decode_cursor, encode_cursor
    from tether.store.reader import RunListing, StoreReader, Trace
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
            "parse_store_url",
            "redact_url",
            "store_identity",
        ),
        ".query": ("RunQuery", "decode_cursor", "encode_cursor"),
        ".reader": ("RunListing", "StoreReader", "Trace"),
        ".repository": ("Store",),
        ".values": ("dumps_attributes",),
    },
)

__all__ = [
    "AuditRecord",
    "CheckpointRecord",
    "EventRecord",
    "InvalidQuery",
    "NotFound",
    "RunListing",
    "RunQuery",
    "RunRecord",
    "SpanRecord",
    "Store",
    "StoreReader",
    "Trace",
    "TraceBatch",
    "canonical_url",
    "create_store_engine",
    "decode_cursor",
    "dumps_attributes",
    "encode_cursor",
    "migrate",
    "parse_store_url",
    "redact_url",
    "store_identity",
]
