"""OTLP ingest in process, for counting instructions: ``decode`` + ``otlp_store.ingest`` of
``otlp_ingest.py``'s request bodies (agent-shaped traces, batches of 512 spans) into a fresh
SQLite store, one request after another, as ``tether serve``'s worker does them.

Wall-clock figures on a shared machine swing by 2x; instruction counts move by ~1%. Run it under
callgrind twice with different batch counts and take the difference, so start-up (imports,
migrations, the warm-up batch) cancels out::

    python benchmarks/otlp_ingest_instructions.py --count [--what ingest]

runs ``valgrind --tool=callgrind`` on itself with 2 and with 10 batches and prints
(Ir(10) - Ir(2)) / (8 * 512), the instructions a span.

``--what decode`` decodes only (the store is not touched), ``--what map`` decodes and maps
the spans (``mapped_spans``) without storing them; ``--what floor`` runs the benchmark's
raw floor on the same bodies instead of Tether. The ids are drawn from a seeded generator, so
two runs insert the same keys. Without valgrind (``--time``) it prints CPU microseconds a span
of the timed batches.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import otlp_ingest

from tether.server.otlp import PROTOBUF, decode
from tether.server.otlp_store import Ingested, ingest, mapped_spans
from tether.store import Store


def seeded_bodies(batches: int) -> list[bytes]:
    """``batches`` + 1 bodies of ``otlp_ingest.BATCH`` spans (the first one a warm-up), their
    ids from a seeded generator."""
    rng = random.Random(15)
    real = os.urandom
    os.urandom = rng.randbytes  # type: ignore[assignment]
    try:
        traces = (batches + 1) * otlp_ingest.BATCH // otlp_ingest.SPANS_PER_TRACE
        payloads, _ = otlp_ingest.bodies(traces)
    finally:
        os.urandom = real
    return payloads


def count(what: str, low: int = 2, high: int = 10) -> float:
    """Instructions a span of ``what``: callgrind's totals of two runs, differenced."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for batches in (low, high):
            out = Path(tmp) / f"cg.{batches}"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    __file__,
                    "--batches",
                    str(batches),
                    "--what",
                    what,
                ],
                check=True,
                capture_output=True,
            )
            found = re.search(rb"^(?:summary|totals): (\d+)", out.read_bytes(), re.MULTILINE)
            assert found is not None, "no totals in callgrind's output"
            totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / ((high - low) * otlp_ingest.BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches after the warm-up")
    parser.add_argument("--what", choices=("ingest", "map", "decode", "floor"), default="ingest")
    parser.add_argument("--time", action="store_true", help="print CPU us a span")
    parser.add_argument("--count", action="store_true", help="instructions a span (valgrind)")
    args = parser.parse_args()
    if args.count:
        print(f"{args.what}: {count(args.what):,.0f} instructions a span")
        return
    # As many bodies made whatever the batch count (making them costs more than storing
    # them: it must cancel out of the difference too).
    payloads = seeded_bodies(max(args.batches, 10))[: args.batches + 1]
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "floor":
            gc.freeze()
            cpu = time.process_time()
            otlp_ingest.run_floor(payloads, len(payloads) * otlp_ingest.BATCH, Path(tmp), "FULL")
            cpu = time.process_time() - cpu
        else:
            store = Store(f"sqlite:///{tmp}/tether.db")
            first, rest = payloads[0], payloads[1:]
            ingest(store, "default", decode(PROTOBUF, "", first))
            gc.freeze()  # as tether serve does after start-up
            cpu = time.process_time()
            for body in rest:
                message = decode(PROTOBUF, "", body)
                if args.what == "map":
                    mapped_spans(message, Ingested())
                elif args.what == "ingest":
                    result = ingest(store, "default", message)
                    if result.rejected:
                        raise SystemExit(f"rejected: {result.reasons}")
            cpu = time.process_time() - cpu
            store.close()
    if args.time:
        spans = args.batches * otlp_ingest.BATCH
        print(f"{args.what}: {cpu / spans * 1e6:.1f} us CPU a span over {spans} spans")


if __name__ == "__main__":
    main()
