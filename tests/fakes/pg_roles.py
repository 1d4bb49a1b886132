"""A PostgreSQL user who may only read a test schema's tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def read_only_user(pg_url: str, pg_admin_url: str) -> Iterator[str]:
    """The URL of ``pg_url``'s schema for a new role that may read its tables (those there
    now) and write none; the role is dropped afterwards."""
    import psycopg

    schema = pg_url.rsplit("search_path%3D", 1)[1]
    role = f"tether_reader_{uuid.uuid4().hex[:8]}"
    conninfo = pg_admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    try:
        yield pg_url.replace("postgres@", f"{role}@")
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')
