"""Start-up of ``tether serve`` on a fresh store: from starting the process to the first
request answered (migrations done: a signed-in ``/api/v1/whoami`` needs the keys table).

Measured side by side, interleaved round by round so machine noise hits both alike:

  tether serve      ``tether serve --port 0 --print-key`` on a new SQLite file (migrations
                    0001..head, one admin key made), then ``GET /api/v1/whoami`` with that key
  fastapi floor     a bare FastAPI app with one route on uvicorn, started the same way: the
                    floor any FastAPI server pays (interpreter, imports, binding)

  tether restart    the same command again on that store, now at the newest revision (no
                    migration: its revision is read with plain SQL, Alembic is not loaded)

Also printed: how long tether's first UI page (``/runs``, which loads the UI's routes and
templates on first use) takes after that first answer, and the CPU seconds each process used
from start to stop (steadier than wall time on a loaded machine).

Target: tether serve ready in at most 2 s. Prints the medians and the ratio; asserts nothing.

Usage::

    python benchmarks/serve_startup.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLOOR_APP = """
import socket, sys
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/ping")
def ping() -> dict[str, bool]:
    return {"ok": True}
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
try:
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
except KeyboardInterrupt:
    pass
"""


def _first_answer(url: str, headers: dict[str, str], deadline: float) -> None:
    while True:
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _time(
    command: list[str], path: str, env: dict[str, str], with_key: bool, page: str | None = None
) -> tuple[float, float | None, float]:
    """Seconds to the first answer; then seconds to the first page (``page``, None: not
    asked); and the CPU seconds the process used from start to stop."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        if not match:
            raise RuntimeError(f"{command} did not print its URL")
        headers = {}
        if with_key:
            key = re.search(r"tth_\S+", proc.stdout.readline())
            assert key, "no key printed"
            headers["Authorization"] = f"Bearer {key.group(0)}"
        _first_answer(match.group(0) + path, headers, time.monotonic() + 60)
        ready = time.perf_counter() - started
        first_page = None
        if page is not None:
            began = time.perf_counter()
            _first_answer(match.group(0) + page, headers, time.monotonic() + 60)
            first_page = time.perf_counter() - began
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return ready, first_page, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tether: list[float] = []
    pages: list[float] = []
    tether_cpu: list[float] = []
    restart: list[float] = []
    restart_cpu: list[float] = []
    floor: list[float] = []
    floor_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            env = {**os.environ, "TETHER_DATABASE_URL": f"sqlite:///{Path(tmp) / f'{i}.db'}"}
            ready, page, cpu = _time(
                [sys.executable, "-m", "tether", "serve", "--port", "0", "--print-key"],
                "/api/v1/whoami",
                env,
                True,
                page="/runs",
            )
            tether.append(ready)
            pages.append(page or 0.0)
            tether_cpu.append(cpu)
            ready, _, cpu = _time(
                [sys.executable, "-m", "tether", "serve", "--port", "0", "--print-key"],
                "/api/v1/whoami",
                env,
                True,
            )
            restart.append(ready)
            restart_cpu.append(cpu)
            ready, _, cpu = _time([sys.executable, "-c", FLOOR_APP], "/ping", env, False)
            floor.append(ready)
            floor_cpu.append(cpu)
    result = {
        "rounds": args.rounds,
        "tether_serve_s": round(statistics.median(tether), 3),
        "first_page_after_s": round(statistics.median(pages), 3),
        "tether_cpu_s": round(statistics.median(tether_cpu), 3),
        "restart_s": round(statistics.median(restart), 3),
        "restart_cpu_s": round(statistics.median(restart_cpu), 3),
        "fastapi_floor_s": round(statistics.median(floor), 3),
        "fastapi_floor_cpu_s": round(statistics.median(floor_cpu), 3),
        "ratio": round(statistics.median(tether) / statistics.median(floor), 2),
        "target_s": 2.0,
        "load_avg": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"tether serve, fresh store, ready : {result['tether_serve_s']:.3f} s (median)")
    print(f"  then its first page (/runs)    : {result['first_page_after_s']:.3f} s")
    print(f"  CPU, start to stop             : {result['tether_cpu_s']:.3f} s")
    print(f"tether serve again, same store  : {result['restart_s']:.3f} s (median)")
    print(f"  CPU, start to stop             : {result['restart_cpu_s']:.3f} s")
    print(f"bare FastAPI on uvicorn (floor)  : {result['fastapi_floor_s']:.3f} s (median)")
    print(f"  CPU, start to stop             : {result['fastapi_floor_cpu_s']:.3f} s")
    print(f"ratio                            : {result['ratio']:.2f}x   target: <= 2.0 s")
    print(f"load average                     : {result['load_avg']:.2f}")


if __name__ == "__main__":
    main()
