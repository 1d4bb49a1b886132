"""A golden store at revision 0005 (runs, a hash-chained audit log) upgrades in place to 0006,
the budgets' counters and holds, when a budget ledger first opens it: nothing stored before is
lost or changed, the audit chain still verifies, and the schema is the table definitions'."""

from __future__ import annotations

from fakes.store_0001 import (
    insert,
    run_row_0001,
    schema_differences,
    upgrade_to,
)
from tether.controls.budget_ledger import BudgetCharge
from tether.controls.budget_sql import SqlBudgetLedger
from tether.store import AuditRecord, Store, create_store_engine
from tether.store.audit import append_audit
from tether.store.audit_verify import verify_audit
from tether.store.db import HEAD_REVISION
from tether.store.tables import VERSION_TABLE

RUN = "5a5a5a5a5a5a5a5a"
T0 = 1_795_000_000_000_000_000


def make_store_0005(url: str) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            upgrade_to(conn, "0005")
            row = {**run_row_0001(RUN * 2, T0), "run_id": RUN, "agent_name": "support"}
            insert(conn, "tether_runs", **row, project="shop", caller='{"project":"shop"}')
            append_audit(
                conn,
                [
                    AuditRecord(
                        "e" * 32, T0, "decision", {"project": "shop"}, {"verdict": "block"}
                    ),
                    AuditRecord("f" * 32, T0 + 1, "policy_load", {"project": "shop"}, {}),
                ],
                None,
            )
    finally:
        engine.dispose()


def test_a_0005_store_takes_budgets_and_keeps_its_runs_and_audit_chain(store_url: str) -> None:
    make_store_0005(store_url)
    ledger = SqlBudgetLedger(store_url)  # migrates to the head on first use
    try:
        charge = BudgetCharge("project:shop:usd:month:202611", 5_000_000, 12_000)
        hold = ledger.reserve([charge], hold_s=60)
        assert hold.held and ledger.spent(charge.key) == (0, 12_000)
        ledger.reconcile(hold, [7_000])
        assert ledger.spent(charge.key) == (7_000, 0)
    finally:
        ledger.close()
    store = Store(store_url)
    try:
        run = store.get_run(RUN)
        assert (run.project, run.agent_name, run.cost_usd) == ("shop", "support", 0.5)
        with store.engine.connect() as conn:
            report = verify_audit(conn, None)
            revision = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
        assert report.ok and report.entries == 2
        assert revision == HEAD_REVISION  # 0006, and every revision since
        assert schema_differences(store.engine) == []
    finally:
        store.close()
