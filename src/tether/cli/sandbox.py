"""``tether sandbox run FILE``: run one Python file in the sandbox the ``python_sandbox`` tool
uses, and show what it did."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import click

from tether.cli import render
from tether.cli.base import EXIT_ERROR, EXIT_OK, EXIT_STOPPED, handle_errors
from tether.cli.terminal import visible
from tether.core import TetherError
from tether.sandbox.limits import (
    MAX_MEMORY_MB,
    MAX_TIMEOUT_S,
    MIN_MEMORY_MB,
    MIN_TIMEOUT_S,
    SandboxLimits,
)

_DEFAULTS = SandboxLimits()


def _finite(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    if math.isnan(value):  # FloatRange lets NaN through: it compares false both ways
        raise click.BadParameter("must be a number of seconds, not nan", param=param)
    return value


@click.group()
def sandbox() -> None:
    """Run code in the sandbox of `kind: python_sandbox` tools."""


@sandbox.command("run")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=MIN_TIMEOUT_S, max=MAX_TIMEOUT_S),
    default=_DEFAULTS.timeout_s,
    show_default=True,
    metavar="S",
    callback=_finite,
    help="Wall-clock seconds; then every process of the run is killed.",
)
@click.option(
    "--memory-mb",
    type=click.IntRange(min=MIN_MEMORY_MB, max=MAX_MEMORY_MB),
    default=_DEFAULTS.memory_mb,
    show_default=True,
    metavar="N",
    help="Address space of each process, in MiB.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def sandbox_run(file: Path, timeout_s: float, memory_mb: int, as_json: bool) -> None:
    """Run a Python file (- for stdin) in the sandbox: no network, no host files, an
    unprivileged uid, limits on time, memory, processes, files and output (docs/sandbox.md).

    Prints the program's stdout and stderr, then how it ended; --json prints exit_code,
    stdout, stderr, timed_out, killed_reason and duration_ms.

    Exit status: 0 the program exited 0, 3 the sandbox stopped it (timeout, output, CPU,
    memory, file size, signal), 1 it exited non-zero or could not run.
    """
    from tether.sandbox import Sandbox

    limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb)
    # One byte past the limit is enough to refuse it: /dev/zero is never read to the end.
    try:
        if str(file) == "-":
            source = sys.stdin.buffer.read(limits.max_code_bytes + 1)
        else:
            with file.open("rb") as f:
                source = f.read(limits.max_code_bytes + 1)
    except OSError as exc:
        raise TetherError(
            f"cannot read {file}: {exc.strerror or exc}", hint="give the path of a Python file"
        ) from None
    result = asyncio.run(Sandbox(limits).run(source))
    if as_json:
        click.echo(render.dumps(result.to_json()))
    else:
        # The program's output is outside text: its control characters are shown, not obeyed.
        if result.stdout:
            click.echo(visible(result.stdout), nl=not result.stdout.endswith("\n"))
        if result.stderr:
            click.echo(visible(result.stderr), nl=not result.stderr.endswith("\n"), err=True)
        click.echo(_summary(result.exit_code, result.killed_reason, result.duration_ms), err=True)
    if result.killed_reason is not None:
        sys.exit(EXIT_STOPPED)
    sys.exit(EXIT_OK if result.exit_code == 0 else EXIT_ERROR)


def _summary(exit_code: int | None, killed_reason: str | None, duration_ms: float) -> str:
    took = f"{duration_ms:,.0f} ms"
    if killed_reason is not None:
        status = "" if exit_code is None else f", exit status {exit_code}"
        return f"[sandbox] stopped: {killed_reason}{status} after {took}"
    return f"[sandbox] exit status {exit_code} after {took}"
