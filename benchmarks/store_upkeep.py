"""Bringing a freshly built benchmark store to the state a store in service is in."""

from __future__ import annotations

from tether.store import create_store_engine, tables


def vacuum_analyze(url: str) -> None:
    """PostgreSQL: ``VACUUM ANALYZE`` the runs, their models, spans and events, as autovacuum
    leaves tables in service (a build updates every run once, at its end, and the planner has
    no statistics yet; autovacuum is off on this machine's test server). SQLite: nothing."""
    if not url.startswith("postgresql"):
        return
    engine = create_store_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in (tables.runs, tables.run_models, tables.spans, tables.events):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table.name}")
    finally:
        engine.dispose()
