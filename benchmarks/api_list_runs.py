"""Listing the newest 50 runs and opening one trace through the API, with many spans stored.

Builds a SQLite store (or uses ``--database-url``, e.g. PostgreSQL) of agent-shaped runs
(1 agent span, 4 model spans, 3 tool spans: 8 spans a run), serves it with ``create_app``
on uvicorn (127.0.0.1), and times, side by side in the same rounds:

  api list        GET /api/v1/runs?limit=50 (newest first, total counted)
  api filtered    GET /api/v1/runs?limit=50&agent=support&outcome=final_answer
  api trace       GET /api/v1/runs/{run_id} (8 spans with their attributes)
  ui runs page    GET /runs (HTML, 50 rows)
  sql floor       the list's keyset query straight through SQLAlchemy Core (no HTTP, no
                  views): what the database alone costs

Prints p50/p95 per request kind and the ratio of the API list to the floor. Target: list p95
<= 150 ms at 1M spans. Asserts nothing.

Usage::

    python benchmarks/api_list_runs.py [--spans 1000000] [--requests 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from store_upkeep import vacuum_analyze

from fakes.server import serving
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import RunRecord, SpanRecord, Store, TraceBatch, tables

MESSAGE = "x" * 1000


def build(url: str, spans: int) -> None:
    store = Store(url)
    runs = spans // 8
    start = time.time_ns() - runs * 1_000_000_000
    batch = TraceBatch()
    for n in range(runs):
        run_id, trace_id = f"{n + 1:016x}", f"{n + 1:032x}"
        t = start + n * 1_000_000_000
        run = RunRecord(
            trace_id,
            run_id=run_id,
            agent_name="support" if n % 3 else "billing",
            agent_version="v1",
            started_ns=t,
            status="completed",
            outcome="final_answer" if n % 7 else "limit_exceeded",
            input="question " + str(n),
            output="answer",
            ended_ns=t + 900_000_000,
            input_tokens=400,
            output_tokens=80,
            cost_usd=0.001,
        )
        batch.runs_started.append(run)
        batch.runs_ended.append(run)
        batch.spans.append(
            SpanRecord(
                trace_id,
                run_id=run_id,
                span_id=run_id,
                parent_id=None,
                name="invoke_agent support",
                kind="agent",
                start_ns=t,
                end_ns=t + 900_000_000,
            )
        )
        for i in range(7):
            kind = "model" if i % 2 == 0 else "tool"
            attrs = (
                {"gen_ai.request.model": "gpt-4.1-mini", "gen_ai.input.messages": MESSAGE}
                if kind == "model"
                else {"gen_ai.tool.name": "lookup"}
            )
            batch.spans.append(
                SpanRecord(
                    trace_id,
                    run_id=run_id,
                    span_id=f"{0x8000000000000000 + n * 8 + i:016x}",
                    parent_id=run_id,
                    name=f"{kind} {i}",
                    kind=kind,
                    start_ns=t + i * 1000,
                    end_ns=t + i * 1000 + 500,
                    attributes=attrs,
                )
            )
        if len(batch.spans) >= 8000:
            store.write(batch)
            batch = TraceBatch()
    if batch.spans:
        store.write(batch)
    store.close()


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = client.get(path)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.text[:200]
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="time the store at --database-url as it is (built by an earlier run)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        if not args.no_build:
            began = time.perf_counter()
            build(url, args.spans)
            took = time.perf_counter() - began
            print(f"built {args.spans:,} spans in {took:.0f} s ({url.split(':')[0]})")
        vacuum_analyze(url)
        print(f"load average {os.getloadavg()[0]:.1f}")
        access = AccessStore(url)
        key = access.create_key("default", Role.VIEWER)[1]
        app = create_app(ServerConfig(database_url=url))
        runs = tables.runs.c
        floor_stmt = (
            select(tables.runs)
            .where(runs.project == "default")
            .order_by(runs.started_ns.desc(), runs.run_id.desc())
            .limit(51)
        )
        with (
            serving(app) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as client,
        ):
            run_id = client.get("/api/v1/runs?limit=1").json()["runs"][0]["run_id"]
            kinds = {
                "api list": "/api/v1/runs?limit=50",
                "api filtered": "/api/v1/runs?limit=50&agent=support&outcome=final_answer",
                "api trace": f"/api/v1/runs/{run_id}",
                "ui runs page": "/runs",
            }
            times: dict[str, list[float]] = {k: [] for k in [*kinds, "sql floor"]}
            for _ in range(args.requests):
                for name, path in kinds.items():
                    times[name].append(timed(client, path))
                started = time.perf_counter()
                with access.engine.connect() as conn:
                    conn.execute(floor_stmt).all()
                times["sql floor"].append((time.perf_counter() - started) * 1000)
        for name, values in times.items():
            values.sort()
            p95 = values[max(int(len(values) * 0.95) - 1, 0)]
            print(f"{name:<14} p50 {statistics.median(values):8.1f} ms   p95 {p95:8.1f} ms")
        ratio = statistics.median(times["api list"]) / statistics.median(times["sql floor"])
        print(f"api list / sql floor (p50): {ratio:.1f}x   target: list p95 <= 150 ms")


if __name__ == "__main__":
    main()
