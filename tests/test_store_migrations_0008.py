"""A golden store at revision 0006 (runs, a hash-chained audit log of several runs and kinds,
budget counters) upgrades in place to the head (0007: keys' last use; 0008: the audit index on
``(run_id, kind, seq)``): nothing stored before is lost or changed, the chain still
verifies, a run's entries of one kind are read through the index in chain order, and the
schema is the table definitions'."""

from __future__ import annotations

from sqlalchemy import Connection, inspect, select

from fakes.store_0001 import downgrade_to, insert, run_row_0001, schema_differences, upgrade_to
from tether.store import AuditRecord, Store, create_store_engine, tables
from tether.store.audit import append_audit, iter_audit, run_entries
from tether.store.audit_verify import verify_audit
from tether.store.db import HEAD_REVISION
from tether.store.tables import VERSION_TABLE

RUNS = ("1a1a1a1a1a1a1a1a", "2b2b2b2b2b2b2b2b")
T0 = 1_795_100_000_000_000_000
INDEX = "ix_tether_audit_run_kind"


def _records() -> list[AuditRecord]:
    """Entries of two runs and of no run, their kinds interleaved in the chain."""
    out = [AuditRecord("0" * 32, T0, "policy_load", {"project": "shop"}, {"files": ["a"]})]
    for i in range(12):
        run = RUNS[i % 2]
        kind = ("decision", "approval", "run_resumed")[i % 3]
        out.append(
            AuditRecord(
                f"{i + 1:032x}",
                T0 + i + 1,
                kind,
                {"project": "shop", "approver": f"p{i}"},
                {"i": i},
                trace_id=run * 2,
                run_id=run,
            )
        )
    return out


def make_store_0006(url: str) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0006")
            for run in RUNS:
                row = {**run_row_0001(run * 2, T0), "run_id": run, "agent_name": "support"}
                insert(conn, "tether_runs", **row, project="shop", caller='{"project":"shop"}')
            budget = "project:shop:usd:day:20261124"
            insert(conn, "tether_budgets", key=budget, used=7, expires_ns=T0)
            append_audit(conn, _records(), None)
    finally:
        engine.dispose()


def _stored(conn: Connection) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(select(tables.audit).order_by(tables.audit.c.seq))]


def test_a_0006_store_gets_the_audit_index_and_keeps_its_entries(store_url: str) -> None:
    make_store_0006(store_url)
    engine = create_store_engine(store_url)
    with engine.connect() as conn:
        before = _stored(conn)
        assert INDEX not in {i["name"] for i in inspect(conn).get_indexes("tether_audit")}
    engine.dispose()
    assert len(before) == 13

    store = Store(store_url)  # migrates to the head when it opens
    try:
        assert store.get_run(RUNS[0]).project == "shop"
        with store.engine.connect() as conn:
            assert _stored(conn) == before  # every entry as it was, hashes included
            report = verify_audit(conn, None)
            assert report.ok and report.entries == 13
            revision = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
            assert revision == HEAD_REVISION
            [index] = [i for i in inspect(conn).get_indexes("tether_audit") if i["name"] == INDEX]
            assert index["column_names"] == ["run_id", "kind", "seq"]
            found = run_entries(conn, RUNS[1], "approval")
            expected = [
                e for e, _, _ in iter_audit(conn) if e.run_id == RUNS[1] and e.kind == "approval"
            ]
            assert [e.seq for e, _, _ in found] == [e.seq for e in expected] != []
            assert [e.seq for e, _, _ in found] == sorted(e.seq for e, _, _ in found)
            assert _plan_uses_index(conn)
            used = conn.exec_driver_sql("SELECT used FROM tether_budgets").scalar()
            assert used == 7
        assert schema_differences(store.engine) == []
    finally:
        store.close()


def _plan_uses_index(conn: Connection) -> bool:
    """Whether the database reads ``run_entries``' query through the new index (PostgreSQL is
    told to avoid a sequential scan where it can: a table this small is cheaper to scan)."""
    a = tables.audit.c
    query = (
        select(tables.audit)
        .where(a.kind == "approval", a.run_id == RUNS[1])
        .order_by(a.seq)
        .compile(conn, compile_kwargs={"literal_binds": True})
    )
    if conn.dialect.name == "sqlite":
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
        return INDEX in plan and "TEMP B-TREE" not in plan  # no sort: seq comes in order
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = " ".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
    return INDEX in plan and "Sort" not in plan


def test_0008_downgrades_to_0007_and_back(store_url: str) -> None:
    make_store_0006(store_url)
    engine = create_store_engine(store_url)
    try:
        for target, present in (("0008", True), ("0007", False), ("0008", True)):
            with engine.begin() as conn:
                if target == "0007":
                    downgrade_to(conn, "0007")
                else:
                    upgrade_to(conn, target)
            with engine.connect() as conn:
                names = {i["name"] for i in inspect(conn).get_indexes("tether_audit")}
                assert (INDEX in names) is present
                assert len(_stored(conn)) == 13
    finally:
        engine.dispose()
