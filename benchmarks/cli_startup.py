"""Start-up time of the ``tether`` command: what a user waits for before anything happens.

Measured, each in a fresh interpreter, interleaved round by round so that machine noise hits
them alike:

  python -c pass      the bare interpreter (the floor no command can go below)
  tether --help       the console script; only the CLI's own modules should load
  tether validate     ``tether validate examples/support/agent.yaml`` (spec, tools, models)
  eager imports       the modules every command loaded before imports were made lazy
                      (the store with SQLAlchemy and Alembic, the trace writer, the runtime,
                      httpx): the pre-change import path, as a baseline in the same run

Two figures per command: wall time of the whole process (median over the rounds) and the time
``python -X importtime`` attributes to imports (the sum of the top-level imports' cumulative
times, median over the rounds). Ratios are against ``python -c pass`` (wall) and against the
eager path (imports).

With ``--compare-src DIR`` (the ``src`` folder of another checkout, for example of the commit
before a change: ``git archive <commit> src | tar -x -C /tmp/before``), ``tether --help`` and
``tether validate`` are also measured with that code first on ``PYTHONPATH``, in the same rounds.

Usage::

    python benchmarks/cli_startup.py [--rounds 7] [--compare-src DIR] [--json]

No timing is asserted anywhere: this prints numbers, it does not pass or fail on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support" / "agent.yaml"
EAGER_MODULES = (
    "tether.cli",
    "tether.runtime.agent",
    "tether.store.db",
    "tether.store.repository",
    "tether.trace.recorder",
    "tether.tools.http",
    "tether.providers.openai_compat",
)

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "tether --help": ["-m", "tether", "--help"],
    "tether validate": ["-m", "tether", "validate", str(EXAMPLE)],
    "eager imports": ["-c", "import " + ", ".join(EAGER_MODULES)],
}


def import_us(stderr: str) -> int:
    """Microseconds ``-X importtime`` attributes to the top-level imports (nested ones are in
    their parent's cumulative figure)."""
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if cumulative.strip().isdigit() and not name[1:].startswith(" "):
            total += int(cumulative)
    return total


def measure(args: list[str], src: str | None = None) -> tuple[float, float]:
    """(wall seconds, import seconds) of one fresh interpreter running ``args``, with the
    ``tether`` package from ``src`` if given."""
    env = {**os.environ, "ORDER_API_URL": "http://127.0.0.1:9"}  # validate: no warning noise
    if src:
        env["PYTHONPATH"] = src
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=ROOT, check=True)
    wall = time.perf_counter() - started
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    return wall, import_us(done.stderr) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compare-src", metavar="DIR", help="also measure this src folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()

    runs: dict[str, tuple[list[str], str | None]] = {
        name: (args, None) for name, args in COMMANDS.items()
    }
    if opts.compare_src:
        for name in ("tether --help", "tether validate"):
            runs[f"{name} (compared)"] = (COMMANDS[name], opts.compare_src)
    walls: dict[str, list[float]] = {name: [] for name in runs}
    imports: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(opts.rounds):
        for name, (args, src) in runs.items():
            wall, imported = measure(args, src)
            walls[name].append(wall)
            imports[name].append(imported)

    base_wall = statistics.median(walls["python -c pass"])
    eager_imports = statistics.median(imports["eager imports"])
    rows = []
    for name in runs:
        wall, imported = statistics.median(walls[name]), statistics.median(imports[name])
        rows.append(
            {
                "command": name,
                "wall_s": round(wall, 4),
                "imports_s": round(imported, 4),
                "wall_vs_python": round(wall / base_wall, 2),
                "imports_vs_eager": round(imported / eager_imports, 3) if eager_imports else None,
            }
        )
    if opts.json:
        info = {"python": platform.python_version(), "cpus": os.cpu_count(), "rounds": opts.rounds}
        print(json.dumps({**info, "results": rows}, indent=2))
        return
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {opts.rounds} rounds")
    if opts.compare_src:
        print(f"compared: {opts.compare_src}")
    print(f"{'command':<29} {'wall':>9} {'imports':>9} {'wall/python':>12} {'imports/eager':>14}")
    for row in rows:
        print(
            f"{row['command']:<29} {row['wall_s'] * 1000:>7.0f}ms {row['imports_s'] * 1000:>7.0f}ms"
            f" {row['wall_vs_python']:>11.1f}x {row['imports_vs_eager']:>13.2f}x"
        )


if __name__ == "__main__":
    main()
