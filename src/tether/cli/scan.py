"""``tether scan``: run a guards policy over a JSONL file of texts, one JSON verdict per line,
so a team can try a policy on its own data before it guards an agent."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import IO, TYPE_CHECKING, Any

import click

from tether.cli.terminal import json_safe, visible

if TYPE_CHECKING:
    from tether.controls.guard_scan import PolicyScanner

EXIT_BAD_FILE = 2
MAX_LINE_BYTES = 128 << 20
"""Longest input line (a 10 MB text escaped as JSON can take several times its size)."""
CHANNELS = ("user", "tool_output", "document", "output", "tool_args")
"""``tether.guards.policy.CHANNELS``, spelled out so that ``tether --help`` does not load the
guards (a test keeps the two equal)."""

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    str: "a string",
}


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # int() refuses more than 4,300 digits
        raise ValueError(f"the integer {text[:20]}... is too long") from None


def _finite_float(text: str) -> float:
    # 1e999 reads as infinity, which the verdict (its "id") would print as `Infinity`: not
    # JSON.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")


class BadFile(Exception):
    """The input or the policy cannot be read; the message names the file and line."""


@click.command()
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--kind",
    "channel",
    type=click.Choice(CHANNELS),
    required=True,
    help="The channel the texts come from: the user, a tool's result, a document, the answer, "
    "a tool call's arguments (a JSON object as text, judged value by value).",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    help="A guards policy YAML (default: PII and secrets masked on every channel).",
)
def scan(file: str, channel: str, policy: str | None) -> None:
    """Judge texts with the guards: FILE is JSONL (`-` for stdin), one object per line with a
    "text" field; each line gets one JSON verdict on stdout: blocked, escalated, score,
    categories, action, redacted (the text with masked or hashed values, else null),
    findings (kind and span, never the value), errors, latency_ms, the line number, and the
    line's "id" if it has one.

    Exit status: 0 whatever the verdicts; 2 for a file or policy that cannot be read (naming
    the line).
    """
    try:
        scanner = _scanner(policy)
        # One event loop for the whole file: a policy's judge or async Python guard awaits.
        with asyncio.Runner() as runner:
            if file == "-":
                _scan_stream(scanner, runner, sys.stdin.buffer, "<stdin>", channel, flush=True)
            else:
                try:
                    stream = open(file, "rb")  # noqa: SIM115 - closed below; OSError said clearly
                except OSError as exc:
                    reason = (
                        "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror
                    )
                    raise BadFile(f"{file}: cannot read: {reason}") from None
                with stream:
                    _scan_stream(scanner, runner, stream, file, channel, flush=False)
    except BadFile as exc:
        click.echo(f"error: {visible(exc)}", err=True)
        sys.exit(EXIT_BAD_FILE)
    except BrokenPipeError:
        # The reader went away (`| head`): no one reads the rest, so stop; main() ends quietly.
        # Raised again without its errno, which click would catch itself and end with status 1.
        raise BrokenPipeError from None


def _scanner(policy: str | None) -> PolicyScanner:
    from pathlib import Path

    from tether.controls.guard_scan import PolicyScanner
    from tether.core import SpecError
    from tether.guards import load_policy

    try:
        loaded = load_policy(policy) if policy else None
        scanner = PolicyScanner(loaded, base_dir=Path(policy).parent if policy else None)
    except SpecError as exc:
        message = exc.message if not exc.hint else f"{exc.message}\n  hint: {exc.hint}"
        raise BadFile(message) from None
    scanner.warm()  # so that the first lines' latency_ms is not the patterns' compile time
    return scanner


def _scan_stream(
    scanner: PolicyScanner,
    runner: asyncio.Runner,
    stream: IO[bytes],
    name: str,
    channel: Any,
    *,
    flush: bool,
) -> None:
    out = sys.stdout.buffer
    lineno = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise BadFile(f"{name}:{lineno}: line longer than {MAX_LINE_BYTES:,} bytes")
        record = _record(raw, name, lineno)
        if record is None:
            continue
        verdict = runner.run(scanner.check(record["text"], channel))
        if "id" in record:
            verdict = {"id": record["id"], **verdict}
        verdict["line"] = lineno
        encoded = json_safe(json.dumps(verdict, ensure_ascii=False, separators=(",", ":")))
        out.write(encoded.encode("utf-8") + b"\n")
        if flush:
            out.flush()
    out.flush()


def _record(raw: bytes, name: str, lineno: int) -> dict[str, Any] | None:
    """The object on one line (``None`` for a blank line), or ``BadFile`` saying why not."""
    where = f"{name}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadFile(f"{where}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
    if lineno == 1:
        line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
    if not line.strip():
        return None
    try:
        record = json.loads(
            line, parse_int=_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise BadFile(f"{where}: not JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise BadFile(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # a number the verdict could not copy back as JSON
        raise BadFile(f"{where}: not JSON: {exc}") from None
    if not isinstance(record, dict):
        found = _JSON_TYPES.get(type(record), type(record).__name__)
        raise BadFile(f'{where}: expected a JSON object with a "text" field, found {found}')
    if "text" not in record:
        raise BadFile(f'{where}: no "text" field')
    if not isinstance(record["text"], str):
        text = record["text"]
        found = "null" if text is None else _JSON_TYPES.get(type(text), type(text).__name__)
        raise BadFile(f'{where}: "text" must be a string, found {found}')
    return record
