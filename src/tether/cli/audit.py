"""``tether audit``: list the audit log and verify its hash chain."""

from __future__ import annotations

import sys
from typing import Any

import click

from tether.cli import render
from tether.cli.base import EXIT_ERROR, handle_errors, open_reader
from tether.cli.terminal import PlainStyle, visible
from tether.core import TetherError


@click.group()
def audit() -> None:
    """The audit log: every non-allow decision, policy load and admin change, hash-chained."""


@audit.command("verify")
@click.option(
    "--require-keyed",
    is_flag=True,
    help="Fail on any entry not keyed with TETHER_AUDIT_KEY (needs the key).",
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:HASH",
    help="An entry seen before (the head printed by an earlier verify): it must still be there.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@handle_errors
def verify(
    ctx: click.Context, require_keyed: bool, anchors: tuple[str, ...], as_json: bool
) -> None:
    """Check the chain; exit 1 at the first edited, deleted, inserted or reordered entry.

    The chain cannot show entries cut off its end, or a log written again whole: keep the
    head it prints (SEQ:HASH) elsewhere now and then, and give it back with --anchor."""
    from tether.store.audit import audit_key
    from tether.store.audit_verify import verify_audit
    from tether.store.db import sqlite_file

    key = audit_key()
    if require_keyed and key is None:
        raise click.UsageError("--require-keyed needs the key: set TETHER_AUDIT_KEY")
    kept = [_anchor(text) for text in anchors]
    reader = open_reader(ctx)
    path = sqlite_file(reader.url)
    if path is not None and not path.exists():
        # Read as an empty store (a fresh home for `traces list`), a mistyped path verified
        # as "0 entries, chain intact", exit 0: a check that passes whatever the log holds.
        raise TetherError(
            f"no audit log to verify: there is no store at {visible(path)}",
            hint="give the store the writers use (--database-url, TETHER_DATABASE_URL or "
            "TETHER_HOME)",
        )
    with reader.engine.connect() as conn:
        report = verify_audit(conn, key, require_keyed=require_keyed, anchors=kept)
    problem = report.problem
    head = None if report.head_hash is None else f"{report.head_seq}:{report.head_hash}"
    if as_json:
        body: dict[str, Any] = {
            "ok": report.ok,
            "entries": report.entries,
            "unkeyed": report.unkeyed,
            "head": head,
        }
        if problem is not None:
            body["problem"] = {"kind": problem.kind, "seq": problem.seq, "message": problem.message}
        click.echo(render.dumps(body))
    else:
        style = PlainStyle(sys.stdout if problem is None else sys.stderr)
        if problem is None:
            click.echo(
                f"{style('✓', fg='green')} audit log of {visible(reader.display_url)}: "
                f"{report.entries} entries, chain intact"
            )
            if head is not None:
                click.echo(f"  head {head} (keep it elsewhere; --anchor {head} checks it later)")
            if key is not None and report.unkeyed:
                # With a key, unkeyed entries are the part of the chain it does not protect.
                click.echo(
                    f"  note: entries 1 to {report.unkeyed} are not keyed: written before "
                    "TETHER_AUDIT_KEY was set, or rewritten by someone without it "
                    "(--require-keyed fails on them)"
                )
        else:
            click.echo(
                f"{style('✗', fg='red')} audit log of {visible(reader.display_url)}: "
                f"{problem.kind} at entry {problem.seq}: {visible(problem.message)}",
                err=True,
            )
    if problem is not None:
        sys.exit(EXIT_ERROR)


def _anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as (seq, hash); a usage error naming what is wrong."""
    seq, sep, digest = text.strip().partition(":")
    if not sep or not (seq.isascii() and seq.isdigit()) or int(seq) < 1:
        raise click.BadParameter(
            f"{text!r} is not SEQ:HASH (an entry's seq, a colon and its hash)",
            param_hint="--anchor",
        )
    if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise click.BadParameter(
            f"the hash of {seq}:… must be 64 hexadecimal digits", param_hint="--anchor"
        )
    return int(seq), digest


@audit.command("list")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Entries after this seq.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    metavar="N",
    help="How many entries.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.pass_context
@handle_errors
def list_entries(ctx: click.Context, after: int, limit: int, as_json: bool) -> None:
    """Show audit entries in order, from seq AFTER + 1."""
    from tether.store.audit import iter_audit

    reader = open_reader(ctx)
    with reader.engine.connect() as conn:
        entries = [e for e, _a, _d in iter_audit(conn, after=after, limit=limit)]
    if as_json:
        click.echo(
            render.dumps(
                {
                    "entries": [
                        {
                            "seq": e.seq,
                            "time_ns": e.time_ns,
                            "kind": e.kind,
                            "actor": e.actor,
                            "trace_id": e.trace_id,
                            "run_id": e.run_id,
                            "span_id": e.span_id,
                            "details": e.details,
                            "prev_hash": e.prev_hash,
                            "hash": e.hash,
                        }
                        for e in entries
                    ]
                }
            )
        )
        return
    if not entries:
        click.echo(f"no audit entries in {visible(reader.display_url)}")
        return
    for e in entries:
        who = ",".join(f"{k}={v}" for k, v in sorted(e.actor.items()))
        what = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
        line = visible(f"{e.seq:>6}  {e.kind:<14} {who}  {what}  {e.hash[:12]}")
        # One line per entry: a newline in a value (an approval's free-text reason) would
        # print a line that reads as another entry.
        click.echo(line.replace("\n", "\\n"))
