"""OTLP ingest rate: spans per second until every span sent is queryable.

Agent-shaped traces (1 agent span, 4 model spans with ~1 KB of messages each, 3 tool spans:
8 spans a trace), sent as OTLP/HTTP protobuf in batches of 512 spans, side by side in one run:

  tether      POST /v1/traces to ``create_app`` on uvicorn (127.0.0.1), a fresh SQLite store;
              each 200 means the batch is committed; the clock stops when the store counts
              every span (it already does when the last reply comes: no acknowledging early)
  raw floor   protobuf decode + ``sqlite3`` executemany of (ids, name, times, attributes as
              JSON) into one table, WAL, one transaction a batch: what the work alone costs

Prints spans/s of each and the ratio tether/floor (target >= 0.5). Arize Phoenix is not run
here (see docs/benchmarks.md). Asserts nothing.

Usage::

    python benchmarks/otlp_ingest.py [--traces 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.server import serving
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store, tables

BATCH = 512
MESSAGE = "x" * 900  # with its JSON wrapping: about 1 KB of messages per model span


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _trace(n: int, t0: int) -> list[Span]:
    trace_id = os.urandom(16)
    root_id = os.urandom(8)
    spans = [
        Span(
            trace_id=trace_id,
            span_id=root_id,
            name="invoke_agent support",
            start_time_unix_nano=t0,
            end_time_unix_nano=t0 + 9_000_000,
            attributes=[
                _kv("gen_ai.operation.name", "invoke_agent"),
                _kv("gen_ai.agent.name", "support"),
            ],
        )
    ]
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": MESSAGE}]}])
    for i in range(4):
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                parent_span_id=root_id,
                name="chat gpt-4.1-mini",
                start_time_unix_nano=t0 + i * 2_000_000,
                end_time_unix_nano=t0 + i * 2_000_000 + 1_000_000,
                attributes=[
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.request.model", "gpt-4.1-mini"),
                    _kv("gen_ai.usage.input_tokens", 300),
                    _kv("gen_ai.usage.output_tokens", 40),
                    _kv("gen_ai.input.messages", messages),
                ],
            )
        )
    for i in range(3):
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                parent_span_id=root_id,
                name="execute_tool lookup",
                start_time_unix_nano=t0 + i * 2_000_000 + 1_000_000,
                end_time_unix_nano=t0 + i * 2_000_000 + 1_500_000,
                attributes=[
                    _kv("gen_ai.operation.name", "execute_tool"),
                    _kv("gen_ai.tool.name", "lookup"),
                    _kv("gen_ai.tool.call.arguments", json.dumps({"key": str(n)})),
                ],
            )
        )
    return spans


def bodies(traces: int) -> tuple[list[bytes], int]:
    """Protobuf request bodies of ``BATCH`` spans (whole traces in order), and the span count."""
    t0 = time.time_ns()
    spans = [s for n in range(traces) for s in _trace(n, t0 + n * 10_000_000)]
    out = []
    for i in range(0, len(spans), BATCH):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", "bench"))
        rs.scope_spans.add().spans.extend(spans[i : i + BATCH])
        out.append(request.SerializeToString())
    return out, len(spans)


def run_tether(payloads: list[bytes], total: int, workdir: Path) -> float:
    url = f"sqlite:///{workdir / 'tether.db'}"
    key = AccessStore(url).create_key("default", Role.AGENT)[1]
    store = Store(url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
    app = create_app(ServerConfig(database_url=url))
    with serving(app) as base, httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        start = time.perf_counter()
        for body in payloads:
            answer = client.post("/v1/traces", content=body)
            answer.raise_for_status()
        with store.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(tables.spans)).scalar()
        elapsed = time.perf_counter() - start
    if stored != total:
        raise SystemExit(f"tether stored {stored} of {total} spans")
    return total / elapsed


def run_floor(payloads: list[bytes], total: int, workdir: Path) -> float:
    db = sqlite3.connect(workdir / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE spans (span_id TEXT PRIMARY KEY, trace_id TEXT, parent_id TEXT, "
        "name TEXT, start_ns INTEGER, end_ns INTEGER, attributes TEXT)"
    )
    start = time.perf_counter()
    for body in payloads:
        request = ExportTraceServiceRequest.FromString(body)
        rows = [
            (
                s.span_id.hex(),
                s.trace_id.hex(),
                s.parent_span_id.hex() or None,
                s.name,
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                json.dumps(
                    {kv.key: kv.value.string_value or kv.value.int_value for kv in s.attributes}
                ),
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        db.execute("BEGIN")
        db.executemany("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    stored = db.execute("SELECT count(*) FROM spans").fetchone()[0]
    elapsed = time.perf_counter() - start
    db.close()
    if stored != total:
        raise SystemExit(f"the floor stored {stored} of {total} spans")
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=2000, help="agent traces (8 spans each)")
    args = parser.parse_args()
    payloads, total = bodies(args.traces)
    with tempfile.TemporaryDirectory() as tmp:
        floor = run_floor(payloads, total, Path(tmp))
        tether = run_tether(payloads, total, Path(tmp))
    print(f"spans: {total} in {len(payloads)} batches of {BATCH}")
    print(f"raw floor   {floor:10,.0f} spans/s")
    print(f"tether      {tether:10,.0f} spans/s   (until queryable; every 200 = committed)")
    print(f"ratio tether/floor: {tether / floor:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
