"""Start time of the code sandbox: what a ``python_sandbox`` tool call waits for before the
model's code runs, against bare ``bwrap`` running the same interpreter in the same run.

Contenders, interleaved call by call so that machine noise hits them alike:

  bwrap         ``bwrap --unshare-all --die-with-parent --ro-bind /usr /usr`` (plus the
                ``/bin``, ``/lib``... links), ``--proc /proc --dev /dev``, then
                ``python3 -I -S -c CODE``, by ``subprocess.run``: the usual bare invocation
  tether-argv   Tether's exact command line (``setpriv`` as root, every namespace and mount,
                the bootstrap that sets the rlimits) by ``subprocess.run``: the cost of the
                isolation itself
  tether        ``Sandbox().run(CODE)`` on one event loop: what a tool call pays (the command
                plus feeding the code, reading output and status, the result)

Two programs: ``pass`` (the start) and ``print(1)`` (a trivial run with output). Each is
checked first (``print(1)`` must print ``1``). Figures: p50 and p99 in milliseconds, and the
ratios tether / bwrap. The target is a Tether sandbox start of at most 25 ms p50.

Usage::

    python benchmarks/sandbox_start.py [--runs 150] [--warmup 10] [--json]

The load average is printed before and after: the machines here are shared and noisy. No
timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tether.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, find_host
from tether.sandbox.command import host_uid, sandbox_argv

PROGRAMS = {"start": "pass", "print": "print(1)"}
TARGET_MS = 25.0


def bare_bwrap(bwrap: str, python: str, code: str) -> list[str]:
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return [*argv, "--proc", "/proc", "--dev", "/dev", python, "-I", "-S", "-c", code]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=150, help="timed runs per contender")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    try:
        host = find_host()
    except SandboxUnavailable as exc:  # `make bench` goes on with the other scripts
        print(f"sandbox_start: skipped: {exc.message} ({exc.hint})", file=sys.stderr)
        return
    sandbox = Sandbox(SandboxLimits())
    loop = asyncio.new_event_loop()

    def tether(code: str) -> str:
        return loop.run_until_complete(sandbox.run(code)).stdout

    def tether_argv(code: str) -> str:
        read, write = os.pipe()
        try:
            argv = sandbox_argv(host, sandbox.limits, write, host_uid())
            done = subprocess.run(
                argv,
                input=code.encode(),
                capture_output=True,
                pass_fds=(write,),
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        finally:
            os.close(read)
            os.close(write)
        return done.stdout.decode()

    def bwrap(code: str) -> str:
        return subprocess.run(
            bare_bwrap(host.bwrap, host.python, code), capture_output=True
        ).stdout.decode()

    contenders: dict[str, Callable[[str], str]] = {
        "bwrap": bwrap,
        "tether-argv": tether_argv,
        "tether": tether,
    }
    for name, run in contenders.items():  # the same answer from each, before any timing
        if run("print(1)") != "1\n":
            sys.exit(f"{name} did not print 1: check that the sandbox runs here")
        for _ in range(args.warmup):
            run("pass")

    load_before = [round(x, 2) for x in os.getloadavg()]
    times: dict[tuple[str, str], list[float]] = {(c, p): [] for c in contenders for p in PROGRAMS}
    names = list(contenders)
    for i in range(args.runs):
        for program, code in PROGRAMS.items():
            for name in names[i % 3 :] + names[: i % 3]:  # rotate who goes first
                started = time.perf_counter()
                contenders[name](code)
                times[(name, program)].append((time.perf_counter() - started) * 1000)
    load_after = [round(x, 2) for x in os.getloadavg()]
    loop.close()

    rows = []
    for program in PROGRAMS:
        base = times[("bwrap", program)]
        for name in contenders:
            values = times[(name, program)]
            p50, p99 = statistics.median(values), percentile(values, 0.99)
            rows.append(
                {
                    "program": program,
                    "contender": name,
                    "p50_ms": round(p50, 2),
                    "p99_ms": round(p99, 2),
                    "p50_vs_bwrap": round(p50 / statistics.median(base), 2),
                    "p99_vs_bwrap": round(p99 / percentile(base, 0.99), 2),
                }
            )
    figures: dict[str, Any] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "as_root": os.geteuid() == 0,
        "runs": args.runs,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "target_p50_ms": TARGET_MS,
        "results": rows,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"sandbox start, {args.runs} runs each; {figures['machine']}; as root: "
        f"{figures['as_root']}; load average before {load_before}, after {load_after}"
    )
    print(f"{'program':<8} {'contender':<12} {'p50 ms':>8} {'p99 ms':>8} {'p50/bwrap':>10} "
          f"{'p99/bwrap':>10}")  # fmt: skip
    for row in rows:
        print(
            f"{row['program']:<8} {row['contender']:<12} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {row['p50_vs_bwrap']:>10.2f} {row['p99_vs_bwrap']:>10.2f}"
        )
    start = next(r for r in rows if r["contender"] == "tether" and r["program"] == "start")
    verdict = "within" if start["p50_ms"] <= TARGET_MS else "above"
    print(f"tether start p50 {start['p50_ms']:.2f} ms: {verdict} the {TARGET_MS:g} ms target")


if __name__ == "__main__":
    main()
