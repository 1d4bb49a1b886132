"""OTLP ingest rate: spans per second until every span sent is queryable.

Agent-shaped traces (1 agent span, 4 model spans with ~1 KB of messages each, 3 tool spans:
8 spans a trace), sent as OTLP/HTTP protobuf in batches of 512 spans, one request at a time
(as an exporter sends), side by side in one run:

  raw floor   protobuf decode + ``sqlite3`` executemany of (ids, name, times, attributes as
              JSON) into one table, WAL, one transaction a batch: what the work alone costs
              (``synchronous=NORMAL``; and again with ``FULL``, each commit synced to disk,
              as Tether syncs the transaction behind each 2xx: the like-for-like floor)
  tether      POST /v1/traces to ``tether serve`` (its own process, 127.0.0.1), a fresh SQLite store
              (and, with ``--database-url``, a fresh schema of that PostgreSQL database);
              each 200 means the batch is committed; the clock stops when the store counts
              every span (it already does when the last reply comes: no acknowledging early)
  phoenix     Arize Phoenix (``arize-phoenix``, pinned in benchmarks/requirements.txt) as its
              own ``phoenix serve`` process on 127.0.0.1 with its default SQLite storage in a
              fresh folder, offline; sent the first ``--phoenix-traces`` traces' batches (the
              same bodies); it answers before it stores, so the clock stops when its spans
              table counts them all (read from its SQLite file)

The floor and Tether alternate for ``--rounds`` rounds (the machines here are shared: each
round's ratio compares neighbours in time); the medians are printed, with the load average.
Phoenix runs once, after them (its rate is about a hundred spans a second: the whole set
would take minutes). Targets: Tether >= 0.5x the floor and >= 50x Phoenix. Asserts nothing.

Usage::

    python benchmarks/otlp_ingest.py [--traces 2000] [--rounds 3] [--database-url URL]
                                     [--phoenix-traces 512 | --no-phoenix]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.server import tether_serve
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store, tables

BATCH = 512
SPANS_PER_TRACE = 8
MESSAGE = "x" * 900  # with its JSON wrapping: about 1 KB of messages per model span
PROTOBUF = {"Content-Type": "application/x-protobuf"}


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


def _warm_up() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "warm-up"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    return request.SerializeToString()


WARM_UP = _warm_up()


class Exporter:
    """POSTs OTLP bodies one at a time on one kept-alive connection, as an exporter does.
    The standard library's client: the same for every side, and the lightest (httpx cost about
    3 us of CPU a span here, urllib3 2, this 1: CPU the server would otherwise have)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
        self.headers = headers

    def post(self, body: bytes) -> None:
        self.conn.request("POST", "/v1/traces", body=body, headers=self.headers)
        answer = self.conn.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise SystemExit(f"POST /v1/traces answered {answer.status}: {content[:300]!r}")
        if (answer.getheader("content-type") or "").startswith(PROTOBUF["Content-Type"]):
            reply = ExportTraceServiceResponse.FromString(content)
            if reply.partial_success.rejected_spans:
                raise SystemExit(f"a batch was not taken whole: {reply.partial_success}")

    def close(self) -> None:
        self.conn.close()


def _post_all(exporter: Exporter, payloads: list[bytes]) -> None:
    for body in payloads:
        exporter.post(body)


@dataclass(frozen=True)
class Rate:
    spans_per_s: float
    cpu_us_per_span: float
    """CPU time of every process taking part (server and client), per span: a figure the
    load of a shared host changes far less than the rate."""


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds of this process, or of process ``pid`` (user + system, from /proc)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_tether(payloads: list[bytes], total: int, url: str) -> Rate:
    key = AccessStore(url).create_key("default", Role.AGENT)[1]
    store = Store(url)
    headers = {"Authorization": f"Bearer {key}", **PROTOBUF}
    env = {**os.environ, "TETHER_DATABASE_URL": url}
    with tether_serve(env=env) as served:
        client = Exporter(served.url, headers)
        _post_all(client, [WARM_UP])  # a server that has run a while: its modules are loaded
        cpu = _cpu_s() + _cpu_s(served.proc.pid)
        start = time.perf_counter()
        _post_all(client, payloads)
        with store.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(tables.spans)).scalar()
        elapsed = time.perf_counter() - start
        cpu = _cpu_s() + _cpu_s(served.proc.pid) - cpu
        client.close()
    store.close()
    stored -= 1  # the warm-up span
    if stored != total:
        raise SystemExit(f"tether stored {stored} of {total} spans")
    return Rate(total / elapsed, cpu / total * 1e6)


@contextmanager
def pg_schema(admin_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of ``admin_url``'s database, dropped after."""
    import psycopg

    schema = f"tether_bench_{uuid.uuid4().hex[:12]}"
    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in admin_url else "?"
        yield f"{admin_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_floor(
    payloads: list[bytes], total: int, workdir: Path, synchronous: str = "NORMAL"
) -> Rate:
    """``synchronous``: NORMAL (a commit survives the process, as the store's other writes),
    or FULL (synced at each commit: survives a power cut, as Tether's OTLP 2xx)."""
    db = sqlite3.connect(workdir / f"floor-{synchronous}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute(
        "CREATE TABLE spans (span_id TEXT PRIMARY KEY, trace_id TEXT, parent_id TEXT, "
        "name TEXT, start_ns INTEGER, end_ns INTEGER, attributes TEXT)"
    )
    cpu = _cpu_s()
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
    cpu = _cpu_s() - cpu
    db.close()
    if stored != total:
        raise SystemExit(f"the floor stored {stored} of {total} spans")
    return Rate(total / elapsed, cpu / total * 1e6)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spans_stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or busy a moment
        return -1


def run_phoenix(payloads: list[bytes], total: int, workdir: Path) -> Rate | str:
    """Phoenix's spans/s until queryable, or why it could not be measured."""
    exe = Path(sys.executable).parent / "phoenix"
    if not exe.exists():
        return "not installed here (make bench installs arize-phoenix into .bench-venv)"
    port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        # Offline: no telemetry, nothing fetched from the internet (its docs assistant and
        # its code sandbox's download are off with it).
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = open(workdir / "phoenix.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(exe), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # its migrations take a minute or two on a busy host
        while True:
            if proc.poll() is not None:
                return f"phoenix serve exited ({proc.returncode}): see {workdir}/phoenix.log"
            try:
                if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                return "phoenix serve did not answer within 600 s"
            time.sleep(0.5)
        client = Exporter(base, PROTOBUF)
        try:
            db = workdir / "phoenix.db"
            cpu = _cpu_s() + _cpu_s(proc.pid)
            start = time.perf_counter()
            _post_all(client, payloads)
            acknowledged = time.perf_counter() - start
            while (stored := _spans_stored(db)) < total:
                if time.perf_counter() - start > 1800:
                    return f"phoenix stored {stored} of {total} spans in 1800 s"
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            cpu = _cpu_s() + _cpu_s(proc.pid) - cpu
        finally:
            client.close()
        print(f"  phoenix acknowledged all {total} spans after {acknowledged:.2f} s;")
        print(f"  they were queryable after {elapsed:.1f} s")
        return Rate(total / elapsed, cpu / total * 1e6)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=2000, help="agent traces (8 spans each)")
    parser.add_argument("--rounds", type=int, default=3, help="floor/tether rounds")
    parser.add_argument("--database-url", help="also measure Tether on this PostgreSQL database")
    parser.add_argument(
        "--phoenix-traces", type=int, default=512, help="traces sent to Phoenix (the first ones)"
    )
    parser.add_argument("--no-phoenix", action="store_true", help="leave Phoenix out")
    args = parser.parse_args()
    payloads, total = bodies(args.traces)
    print(f"spans: {total} in {len(payloads)} batches of {BATCH}; load average {_load()}")
    floors: list[Rate] = []
    synced: list[Rate] = []
    tethers: list[Rate] = []
    pgs: list[Rate] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            folder = Path(tmp) / f"round{n}"
            folder.mkdir()
            floors.append(run_floor(payloads, total, folder))
            synced.append(run_floor(payloads, total, folder, "FULL"))
            tethers.append(run_tether(payloads, total, f"sqlite:///{folder / 'tether.db'}"))
            line = (
                f"  round {n + 1}: floor {_shown(floors[-1])}  floor-synced "
                f"{_shown(synced[-1])}  tether {_shown(tethers[-1])}"
            )
            if args.database_url:
                with pg_schema(args.database_url) as url:
                    pgs.append(run_tether(payloads, total, url))
                line += f"  tether-pg {_shown(pgs[-1])}"
            print(f"{line} (load {_load()})")
        phoenix: Rate | str = "left out (--no-phoenix)"
        if not args.no_phoenix:
            sent = payloads[: -(-args.phoenix_traces * SPANS_PER_TRACE // BATCH)]
            sent_spans = min(total, len(sent) * BATCH)
            print(f"phoenix: {sent_spans} spans in {len(sent)} batches (load {_load()})")
            folder = Path(tmp) / "phoenix"
            folder.mkdir()
            phoenix = run_phoenix(sent, sent_spans, folder)
    floor, tether = _median(floors), _median(tethers)
    ratio = statistics.median(
        t.spans_per_s / f.spans_per_s for t, f in zip(tethers, floors, strict=True)
    )
    cpu_ratio = statistics.median(
        f.cpu_us_per_span / t.cpu_us_per_span for t, f in zip(tethers, floors, strict=True)
    )
    synced_ratio = statistics.median(
        t.spans_per_s / f.spans_per_s for t, f in zip(tethers, synced, strict=True)
    )
    print(f"raw floor   {_shown(floor)}  (medians of {args.rounds} rounds)")
    print(f"  synced    {_shown(_median(synced))}  (synchronous=FULL: each commit synced)")
    print(f"tether      {_shown(tether)}  (until queryable; every 200 = committed)")
    if pgs:
        pg = _median(pgs)
        print(
            f"tether-pg   {_shown(pg)}  (PostgreSQL; CPU of Tether's processes, not the database's)"
        )
    if isinstance(phoenix, Rate):
        print(f"phoenix     {_shown(phoenix)}  (until queryable; it acknowledges first)")
    else:
        print(f"phoenix     not measured: {phoenix}")
    print(f"ratio tether/floor: {ratio:.2f}  (median of the rounds' ratios; target >= 0.5)")
    print(f"  in CPU time: the floor's CPU per span / Tether's = {cpu_ratio:.2f}")
    print(f"  against the synced floor (Tether syncs each 2xx too): {synced_ratio:.2f}")
    if isinstance(phoenix, Rate):
        print(
            f"ratio tether/phoenix: {tether.spans_per_s / phoenix.spans_per_s:,.0f}  (target >= 50)"
        )
    print(f"load average at the end: {_load()}")


def _median(rates: list[Rate]) -> Rate:
    return Rate(
        statistics.median(r.spans_per_s for r in rates),
        statistics.median(r.cpu_us_per_span for r in rates),
    )


def _shown(rate: Rate) -> str:
    return f"{rate.spans_per_s:10,.1f} spans/s ({rate.cpu_us_per_span:,.0f} us CPU/span)"


if __name__ == "__main__":
    main()
