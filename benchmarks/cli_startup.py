"""Start-up time of the ``tether`` command: what a user waits for before anything happens.

Measured, each in a fresh interpreter, interleaved round by round so that machine noise hits
them alike:

  python -c pass          the bare interpreter (the floor no command can go below)
  import pydantic         one library every spec check needs, for scale
  click+pydantic+yaml     ``import click, pydantic, yaml``: the libraries ``tether validate``
                          cannot do without (the CLI, the spec's models, its YAML): its floor
  tether --help           the console script; only the CLI's own modules should load
  tether validate         ``tether validate examples/support/agent.yaml`` (spec, tools, models)
  tether validate --json  the same, printed as JSON
  eager imports           the modules every command loaded before imports were made lazy
                          (the store with SQLAlchemy and Alembic, the trace writer, the runtime,
                          httpx): the pre-change import path, as a baseline in the same run

Two figures per command: wall time of the whole process (median over the rounds) and the time
``python -X importtime`` attributes to imports (the sum of the top-level imports' cumulative
times, median over the rounds). Ratios: wall against ``python -c pass``, imports against the
``click+pydantic+yaml`` floor and against the eager path.

Python compiles a module it has no cached bytecode for (``__pycache__/*.pyc``) every time it
imports it, which triples import times. Two bytecode modes, each measured in its own rounds:

  installed   the venv as it is, with ``PYTHONDONTWRITEBYTECODE=1`` so that measuring does not
              change it; the report says whether the dependencies have bytecode (a venv made
              with ``uv pip install`` has none unless given ``--compile-bytecode``, and where
              ``PYTHONDONTWRITEBYTECODE`` is set, as on the shared machines, none is written)
  cached      every module's bytecode cached in a fresh ``PYTHONPYCACHEPREFIX`` folder, warmed
              by one run of each command first: what a ``pip install`` gives (pip compiles),
              and what any install gives from the second run on where Python may write caches

With ``--compare-src DIR`` (the ``src`` folder of another checkout, for example of the commit
before a change: ``git archive <commit> src | tar -x -C /tmp/before``), ``tether --help`` and
``tether validate`` are also measured with that code first on ``PYTHONPATH``, in the same rounds.

Usage::

    python benchmarks/cli_startup.py [--rounds 7] [--bytecode installed|cached|both]
                                     [--compare-src DIR] [--json]

The load average (``os.getloadavg``) is printed before and after each mode: the machines here
are shared, and other processes slow every row of a round alike, which the ratios absorb
better than the absolute figures. No timing is asserted anywhere: this prints numbers, it does
not pass or fail on them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
FLOOR = "click+pydantic+yaml"

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import pydantic": ["-c", "import pydantic"],
    FLOOR: ["-c", "import click, pydantic, yaml"],
    "tether --help": ["-m", "tether", "--help"],
    "tether validate": ["-m", "tether", "validate", str(EXAMPLE)],
    "tether validate --json": ["-m", "tether", "validate", "--json", str(EXAMPLE)],
    "eager imports": ["-c", "import " + ", ".join(EAGER_MODULES)],
}
COMPARED = ("tether --help", "tether validate")
BYTECODE_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")


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


def measure(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, import seconds) of one fresh interpreter running ``args``."""
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


def dependencies_have_bytecode() -> dict[str, bool]:
    """Whether the venv holds cached bytecode for the dependencies' ``__init__`` modules."""
    found = {}
    for name in ("click", "pydantic", "yaml", "httpx", "rich", "sqlalchemy"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        source = Path(spec.origin)
        cached = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
        found[name] = cached.exists()
    return found


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_mode(
    mode: str, runs: dict[str, tuple[list[str], str | None]], rounds: int
) -> dict[str, Any]:
    """Measure every command in ``runs`` for ``rounds`` interleaved rounds in one bytecode
    mode; the figures and the load average before and after."""
    base = {k: v for k, v in os.environ.items() if k not in BYTECODE_ENV}
    base["ORDER_API_URL"] = "http://127.0.0.1:9"  # validate: the URL is checked, no warning
    cache_dir = None
    if mode == "installed":
        base["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        cache_dir = tempfile.TemporaryDirectory(prefix="tether-pycache-")
        base["PYTHONPYCACHEPREFIX"] = cache_dir.name
    envs = {}
    for name, (_, src) in runs.items():
        envs[name] = {**base, "PYTHONPATH": src} if src else base
    if mode == "cached":  # warm the cache: one run of each command writes its bytecode
        for name, (args, _) in runs.items():
            subprocess.run([sys.executable, *args], capture_output=True, env=envs[name], cwd=ROOT)
    load_before = load_average()
    walls: dict[str, list[float]] = {name: [] for name in runs}
    imports: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (args, _) in runs.items():
            wall, imported = measure(args, envs[name])
            walls[name].append(wall)
            imports[name].append(imported)
    load_after = load_average()
    if cache_dir is not None:
        cache_dir.cleanup()

    base_wall = statistics.median(walls["python -c pass"])
    floor_imports = statistics.median(imports[FLOOR])
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
                "imports_vs_floor": round(imported / floor_imports, 2) if floor_imports else None,
                "imports_vs_eager": round(imported / eager_imports, 3) if eager_imports else None,
            }
        )
    return {
        "bytecode": mode,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "results": rows,
    }


def print_mode(figures: dict[str, Any]) -> None:
    print(
        f"\nbytecode: {figures['bytecode']}; load average (1, 5, 15 min) before "
        f"{figures['load_average_before']}, after {figures['load_average_after']}"
    )
    print(
        f"{'command':<31} {'wall':>9} {'imports':>9} {'wall/python':>12} "
        f"{'imports/floor':>14} {'imports/eager':>14}"
    )
    for row in figures["results"]:
        print(
            f"{row['command']:<31} {row['wall_s'] * 1000:>7.0f}ms {row['imports_s'] * 1000:>7.0f}ms"
            f" {row['wall_vs_python']:>11.1f}x {row['imports_vs_floor']:>13.2f}x"
            f" {row['imports_vs_eager']:>13.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--bytecode", choices=("installed", "cached", "both"), default="both", help="see above"
    )
    parser.add_argument("--compare-src", metavar="DIR", help="also measure this src folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()

    runs: dict[str, tuple[list[str], str | None]] = {
        name: (args, None) for name, args in COMMANDS.items()
    }
    if opts.compare_src:
        for name in COMPARED:
            runs[f"{name} (compared)"] = (COMMANDS[name], opts.compare_src)
    modes = ("installed", "cached") if opts.bytecode == "both" else (opts.bytecode,)
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rounds": opts.rounds,
        "dependencies_have_bytecode": dependencies_have_bytecode(),
        "compared": opts.compare_src,
    }
    figures = [run_mode(mode, runs, opts.rounds) for mode in modes]
    if opts.json:
        print(json.dumps({**info, "modes": figures}, indent=2))
        return
    print(f"python {info['python']}, {info['cpus']} cpus, {opts.rounds} rounds")
    print(f"bytecode in the venv for: {info['dependencies_have_bytecode']}")
    if opts.compare_src:
        print(f"compared: {opts.compare_src}")
    for mode_figures in figures:
        print_mode(mode_figures)


if __name__ == "__main__":
    main()
