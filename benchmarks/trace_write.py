"""Trace persistence throughput: tether's ``BatchingWriter`` vs raw stdlib ``sqlite3``.

Both paths write the same pre-built ``SpanRecord`` objects (about ten realistic OTel GenAI
attributes each) into the ``tether_spans`` table of a fresh SQLite file:

  tether  ``BatchingWriter(Store(url), journal=...)``, configured as ``writer_for`` does it
          (each record also appended to the crash journal when accepted):
          ``writer.span(s)`` for every span, then ``writer.flush()``; the clock stops when
          everything is in the database.
  raw     ``sqlite3.executemany`` of the same rows into a file whose schema ``Store`` created,
          with the same pragmas (WAL, synchronous=NORMAL, foreign_keys=ON), committed in
          batches of the writer's ``max_batch``; the attributes are serialized with the
          store's own ``dumps_attributes``, so both paths do the same work.

The run row the spans point to (foreign key) is written before the clock starts. Each size is
repeated (default 3x), interleaving the two paths with a fresh file every time; the median
rate is reported.

A second part measures what a flush costs per *run*, with the records the runtime makes: a
``tether.Agent`` (2 model turns + 1 tool call, the shipped ``ScriptedModel``) is run with a
collecting ``TraceSink``, and its records (a run's start, 4 spans, its end) are then written:

  tether  ``writer.run_started/span/run_ended`` for every record of ``--runs`` runs (the
          journal copy counted), then ``writer.flush()``.
  raw     ``sqlite3``: one transaction per ``max_batch`` records with ``executemany`` of the
          run INSERTs, the span INSERTs and the run-end UPDATEs, the attributes serialized
          with the store's ``dumps_attributes``: the floor for these rows.

No timing is asserted: this prints numbers, it does not pass or fail on them.

Usage::

    python benchmarks/trace_write.py [--sizes 10000 50000] [--repeats 3] [--runs 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

import tether
from tether.store import RunRecord, SpanRecord, Store, TraceBatch, dumps_attributes, tables
from tether.store.db import SQLITE_BUSY_TIMEOUT_MS
from tether.trace import BatchingWriter

TARGET_RATIO = 0.5  # issue target: at least half the raw sqlite3 rate
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
RUN_ID = "b7ad6b7169203331"
"""The run's id, which is its root span's id: the spans' parent."""
SPAN_COLUMNS = (
    "span_id",
    "run_id",
    "trace_id",
    "parent_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status",
    "status_message",
    "attributes",
    "run_seq",
)
INSERT_SQL = (
    f"INSERT INTO tether_spans ({', '.join(SPAN_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in SPAN_COLUMNS)})"
)


def make_spans(n: int) -> list[SpanRecord]:
    """``n`` spans of one trace, alternating model and tool spans like a real run."""
    t0 = time.time_ns()
    spans = []
    for i in range(n):
        start = t0 + i * 1000
        if i % 2 == 0:
            name, kind = "chat gpt-4.1-mini", "model"
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4.1-mini",
                "gen_ai.response.model": "gpt-4.1-mini-2025-04-14",
                "gen_ai.response.finish_reasons": ["tool_calls"],
                "gen_ai.usage.input_tokens": 812 + i % 97,
                "gen_ai.usage.output_tokens": 41 + i % 13,
                "tether.turn": 1 + i % 5,
                "tether.cost_usd": 0.0004312,
                # Structured, as the runtime stores it (serialized once, with the rest).
                "gen_ai.output.messages": [
                    {
                        "role": "assistant",
                        "parts": [
                            {
                                "type": "tool_call",
                                "id": f"call_{i}",
                                "name": "get_weather",
                                "arguments": {"city": "Paris"},
                            }
                        ],
                        "finish_reason": "tool_calls",
                    }
                ],
            }
        else:
            name, kind = "execute_tool get_weather", "tool"
            attrs = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": f"call_{i - 1}",
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": "Sunny, 21 °C, light wind from the west.",
                "tether.tool.side_effects": "read",
                "tether.turn": 1 + i % 5,
                "tether.tool.attempt": 0,
                "tether.tool.cached": False,
            }
        spans.append(
            SpanRecord(
                trace_id=TRACE_ID,
                run_id=RUN_ID,
                span_id=os.urandom(8).hex(),
                parent_id=RUN_ID,
                name=name,
                kind=kind,
                start_ns=start,
                end_ns=start + 800,
                attributes=attrs,
            )
        )
    return spans


def fresh_store(path: Path) -> Store:
    """A migrated store at ``path`` holding the run row the spans refer to."""
    store = Store(f"sqlite:///{path}")
    run = RunRecord(
        trace_id=TRACE_ID, run_id=RUN_ID, agent_name="bench", agent_version="v1", started_ns=1
    )
    store.write(TraceBatch(runs_started=[run]))
    return store


def count_spans(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.spans)).scalar_one())


def bench_tether(spans: list[SpanRecord], path: Path) -> float:
    return _time_writer(fresh_store(path), path, [("span", s) for s in spans])


def _time_writer(store: Store, path: Path, records: list[tuple[str, Any]]) -> float:
    """Seconds from handing ``records`` (``(writer method, record)``) to a journaled writer
    until its flush returns; checks the spans are all in the store."""
    writer = BatchingWriter(store, journal=path.parent / f"{path.stem}-journal")
    try:
        writer.flush(timeout=None)  # opened and migrated before the clock starts
        t0 = time.perf_counter()
        for kind, record in records:
            getattr(writer, kind)(record)
        ok = writer.flush(timeout=None)
        elapsed = time.perf_counter() - t0
        assert ok and writer.dropped == 0
    finally:
        writer.close()
    written = count_spans(store)
    store.close()
    expected = sum(1 for kind, _ in records if kind == "span")
    if written != expected:
        raise SystemExit(f"tether wrote {written} spans, expected {expected}")
    return elapsed


def _dumps(value: dict[str, Any]) -> str:
    # The store's own serialization (orjson), so that both paths do the same work.
    return dumps_attributes(value)


def _raw_connection(path: Path) -> sqlite3.Connection:
    """A stdlib connection with the store's pragmas."""
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return conn


def _span_row(s: SpanRecord, run_seq: int) -> tuple[Any, ...]:
    """A span as the row the raw path inserts (the columns of ``INSERT_SQL``), under its
    run's ``run_seq`` (the key of the spans' run index, as the store writes it)."""
    return (
        s.span_id,
        s.run_id,
        s.trace_id,
        s.parent_id,
        s.name,
        s.kind,
        s.start_ns,
        s.end_ns,
        s.status,
        s.status_message,
        _dumps(s.attributes),
        run_seq,
    )


def bench_raw(spans: list[SpanRecord], path: Path, batch: int) -> float:
    fresh_store(path).close()  # same schema and run row, written by Store
    conn = _raw_connection(path)
    try:
        (seq,) = conn.execute(
            "SELECT run_seq FROM tether_runs WHERE run_id = ?", (RUN_ID,)
        ).fetchone()
        t0 = time.perf_counter()
        for i in range(0, len(spans), batch):
            rows = [_span_row(s, seq) for s in spans[i : i + batch]]
            with conn:  # one transaction per batch, like the writer
                conn.executemany(INSERT_SQL, rows)
        elapsed = time.perf_counter() - t0
        written = conn.execute("SELECT count(*) FROM tether_spans").fetchone()[0]
    finally:
        conn.close()
    if written != len(spans):
        raise SystemExit(f"raw sqlite3 wrote {written} spans, expected {len(spans)}")
    return elapsed


# -- per run: the records an agent run makes -----------------------------------------------------


class CollectingSink:
    """A ``TraceSink`` keeping what it is given, in order: ``(kind, record)``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any]] = []

    def run_started(self, run: Any) -> None:
        self.records.append(("run_started", run))

    def span(self, span: Any) -> None:
        self.records.append(("span", span))

    def event(self, event: Any) -> None:
        self.records.append(("event", event))

    def checkpoint(self, checkpoint: Any) -> None:
        self.records.append(("checkpoint", checkpoint))

    def run_ended(self, run: Any) -> None:
        self.records.append(("run_ended", run))


async def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: City name.
    """
    return "sunny, 21 C"


def agent_records(runs: int) -> list[tuple[str, Any]]:
    """The trace records of ``runs`` agent runs (2 model turns + 1 tool call each)."""
    import asyncio

    sink = CollectingSink()
    spec = tether.AgentSpec(
        name="bench_weather",
        instructions="Answer weather questions with the get_weather tool.",
        model=tether.ModelConfig(provider="scripted", name="scripted-bench", script="unused.yaml"),
        tools=[{"name": "get_weather"}],
    )
    model = tether.ScriptedModel(
        [
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"text": "The weather in Paris: {result:get_weather}."},
        ],
        name="scripted-bench",
    )
    agent = tether.Agent(spec, tools=[tether.tool(get_weather)], model=model, trace=sink)

    async def go() -> None:
        for _ in range(runs):
            await agent.run("What's the weather in Paris?")

    asyncio.run(go())
    return sink.records


def bench_tether_runs(records: list[tuple[str, Any]], path: Path) -> float:
    return _time_writer(Store(f"sqlite:///{path}"), path, records)


def _table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def bench_raw_runs(records: list[tuple[str, Any]], path: Path, batch: int) -> float:
    Store(f"sqlite:///{path}").close()  # the schema, made by Store
    conn = _raw_connection(path)
    try:
        # The run columns this store has, by the RunRecord fields of the same name.
        run_columns = _table_columns(conn, "tether_runs")
        fields = [f for f in RunRecord.__slots__ if f in run_columns]  # type: ignore[attr-defined]
        insert_run = (  # and the run's run_seq (the key its spans are indexed by), last
            f"INSERT INTO tether_runs ({', '.join(fields)}, run_seq) "
            f"VALUES ({', '.join('?' * (len(fields) + 1))})"
        )
        seqs: dict[str, int] = {}
        ended = [f for f in fields if f not in ("run_id", "trace_id", "started_ns")]
        update_run = (
            f"UPDATE tether_runs SET {', '.join(f'{f} = ?' for f in ended)} "
            "WHERE run_id = ? AND started_ns = ?"
        )

        def run_values(r: Any, names: list[str]) -> list[Any]:
            # JSON columns (the attributes, the caller) as the store writes them
            return [_dumps(v) if isinstance(v := getattr(r, f), dict) else v for f in names]

        t0 = time.perf_counter()
        for i in range(0, len(records), batch):
            chunk = records[i : i + batch]
            started = []
            for k, r in chunk:
                if k == "run_started":
                    seqs[r.run_id] = seq = time.time_ns()
                    started.append([*run_values(r, fields), seq])
            spans = [_span_row(s, seqs[s.run_id]) for k, s in chunk if k == "span"]
            ends = [
                (*run_values(r, ended), r.run_id, r.started_ns)
                for k, r in chunk
                if k == "run_ended"
            ]
            with conn:  # one transaction per batch, like the writer
                conn.executemany(insert_run, started)
                conn.executemany(INSERT_SQL, spans)
                conn.executemany(update_run, ends)
        elapsed = time.perf_counter() - t0
        written = conn.execute("SELECT count(*) FROM tether_spans").fetchone()[0]
    finally:
        conn.close()
    expected = sum(1 for kind, _ in records if kind == "span")
    if written != expected:
        raise SystemExit(f"raw sqlite3 wrote {written} spans, expected {expected}")
    return elapsed


def _interleaved(
    rep: int,
    times: dict[str, list[float]],
    path_for: Callable[[str], Path],
    tether_path: Callable[[Path], float],
    raw_path: Callable[[Path], float],
) -> None:
    """One repeat of both paths, each into its own fresh file, tether first on even repeats."""
    order = ["tether", "raw"] if rep % 2 == 0 else ["raw", "tether"]
    for name in order:
        timed = tether_path if name == "tether" else raw_path
        times[name].append(timed(path_for(name)))


def run_flush(runs: int, repeats: int, workdir: Path, batch: int) -> dict[str, Any]:
    """Per-run flush cost of the runtime's own records: tether's writer against raw sqlite3."""
    times: dict[str, list[float]] = {"tether": [], "raw": []}
    bench_tether_runs(agent_records(50), workdir / "warm-runs-tether.db")
    for rep in range(repeats):
        records = agent_records(runs)  # fresh ids: each file gets its own runs
        _interleaved(
            rep,
            times,
            lambda name: workdir / f"runs-{name}-{rep}.db",  # noqa: B023 - called at once
            lambda path: bench_tether_runs(records, path),  # noqa: B023
            lambda path: bench_raw_runs(records, path, batch),  # noqa: B023
        )
    per_run = {k: [t / runs * 1e6 for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in per_run.items()}
    return {
        "runs": runs,
        "records_per_run": 6,
        "tether_us_per_run": med["tether"],
        "raw_us_per_run": med["raw"],
        "ratio": med["tether"] / med["raw"],
        "tether_each_us": per_run["tether"],
        "raw_each_us": per_run["raw"],
    }


def run(sizes: list[int], repeats: int, runs: int, workdir: Path) -> dict[str, Any]:
    batch = BatchingWriter.__init__.__kwdefaults__["max_batch"]
    results: dict[str, Any] = {}
    warm = make_spans(500)
    bench_tether(warm, workdir / "warm-tether.db")
    bench_raw(warm, workdir / "warm-raw.db", batch)
    for n in sizes:
        spans = make_spans(n)
        times: dict[str, list[float]] = {"tether": [], "raw": []}
        for rep in range(repeats):
            _interleaved(
                rep,
                times,
                lambda name: workdir / f"{name}-{n}-{rep}.db",  # noqa: B023 - called at once
                lambda path: bench_tether(spans, path),  # noqa: B023
                lambda path: bench_raw(spans, path, batch),  # noqa: B023
            )
        rates = {k: [n / t for t in v] for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in rates.items()}
        results[str(n)] = {
            "spans": n,
            "tether_spans_per_s": med["tether"],
            "raw_spans_per_s": med["raw"],
            "ratio": med["tether"] / med["raw"],
            "tether_runs_spans_per_s": rates["tether"],
            "raw_runs_spans_per_s": rates["raw"],
        }
    return {
        "per_run": run_flush(runs, repeats, workdir, batch),
        "batch_size": batch,
        "repeats": repeats,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "results": results,
        "target_met": all(r["ratio"] >= TARGET_RATIO for r in results.values()),
    }


def report(data: dict[str, Any]) -> None:
    print(
        f"trace write: spans persisted per second, median of {data['repeats']} interleaved "
        f"repeats, batches of {data['batch_size']}; python {data['python']}, "
        f"SQLite {data['sqlite']}"
    )
    print(f"\n  {'spans':>8}{'tether spans/s':>16}{'raw spans/s':>14}{'ratio':>8}   (each repeat)")
    for r in data["results"].values():
        each = " ".join(
            f"{t / 1000:.0f}k/{w / 1000:.0f}k"
            for t, w in zip(r["tether_runs_spans_per_s"], r["raw_runs_spans_per_s"], strict=True)
        )
        print(
            f"  {r['spans']:>8}{r['tether_spans_per_s']:>16,.0f}{r['raw_spans_per_s']:>14,.0f}"
            f"{r['ratio']:>8.2f}   ({each})"
        )
    verdict = "MET" if data["target_met"] else "NOT MET"
    print(f"\n  target (tether >= {TARGET_RATIO} x raw sqlite3 rate at every size): {verdict}")
    pr = data["per_run"]
    each = " ".join(
        f"{t:.0f}/{w:.0f}" for t, w in zip(pr["tether_each_us"], pr["raw_each_us"], strict=True)
    )
    print(
        f"\n  per agent run ({pr['records_per_run']} records: run start, 4 spans, run end; "
        f"{pr['runs']} runs, median of {data['repeats']}):\n"
        f"  tether writer (journal + flush) {pr['tether_us_per_run']:.0f} µs/run, raw sqlite3 "
        f"{pr['raw_us_per_run']:.0f} µs/run: {pr['ratio']:.2f}x   (each: {each})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000, help="agent runs in the per-run part")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.runs < 1 or any(n < 1 for n in args.sizes):
        parser.error("--sizes, --repeats and --runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        data = run(args.sizes, args.repeats, args.runs, Path(tmp))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        report(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
