"""The dashboards' figures over many runs: counted by the database (the server's path,
``tether.server.metrics_sql``) against every run read into Python and counted there (the old
path, kept as ``tether.server.metrics_reference``).

Builds a store (SQLite by default, or ``--database-url``, e.g. the local PostgreSQL) of varied
runs over the last 7 days (three projects, agents, versions, 0-2 models, error events, blocked
decisions, unpriced runs; ``tests/fakes/dashboard_runs.py``), then times, interleaved round by
round so machine noise hits both alike:

  sql          metrics_sql.compute       (what /dashboard and /api/v1/metrics run)
  python       metrics_reference.compute (the path before: every run row into Python)

for the whole range over every project (an admin's "all projects") and for one project. The
two answers are checked equal first. Prints p50/p95 per path and the ratio python / sql.
Asserts nothing about speed.

Usage::

    python benchmarks/dashboard_query.py [--runs 100000] [--rounds 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from store_upkeep import vacuum_analyze

from fakes.dashboard_runs import write_runs
from tether.server import metrics_reference, metrics_sql
from tether.store import Store

DAY_NS = 86_400 * 1_000_000_000


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * 0.95 + 0.999999) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="an empty store (a fresh PostgreSQL schema)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = Store(url)
        now = time.time_ns()
        began = time.perf_counter()
        write_runs(store, args.runs, start_ns=now - 7 * DAY_NS, span_ns=7 * DAY_NS - 1)
        print(
            f"built {args.runs:,} runs in {time.perf_counter() - began:.0f} s "
            f"({url.split(':')[0]}); load average {os.getloadavg()[0]:.1f}"
        )
        vacuum_analyze(url)
        engine = store.engine
        since, until = now - 7 * DAY_NS, now
        scopes = {"all projects": None, "one project": ["default"]}
        for scope, projects in scopes.items():
            sql = metrics_sql.compute(engine, projects, since, until)
            ref = metrics_reference.compute(engine, projects, since, until)
            assert sql.totals.requests == ref.totals.requests, scope
            assert sql.totals.p95_ms == ref.totals.p95_ms, scope
            assert sql.outcomes == ref.outcomes and sql.error_categories == ref.error_categories
        for scope, projects in scopes.items():
            times: dict[str, list[float]] = {"sql": [], "python": []}
            for _ in range(args.rounds):
                times["sql"].append(
                    timed(lambda p=projects: metrics_sql.compute(engine, p, since, until))
                )
                times["python"].append(
                    timed(lambda p=projects: metrics_reference.compute(engine, p, since, until))
                )
            runs = metrics_sql.compute(engine, projects, since, until).totals.requests
            print(f"{scope} ({runs:,} runs in range):")
            for name, values in times.items():
                print(
                    f"  {name:<7} p50 {statistics.median(values):9.1f} ms"
                    f"   p95 {p95(values):9.1f} ms"
                )
            ratio = statistics.median(times["python"]) / statistics.median(times["sql"])
            print(f"  python / sql (p50): {ratio:.1f}x")
        store.close()
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
