"""``tether keys`` and ``tether projects``: who may use ``tether serve``, from the machine that
holds the store (whoever can open the database is trusted already)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import click

from tether.cli import render
from tether.cli.base import database_url, handle_errors
from tether.cli.options import TEXT
from tether.cli.terminal import one_line, visible
from tether.core import TetherError
from tether.trace.readout import fmt_ns

if TYPE_CHECKING:
    from tether.server.access import AccessStore

ROLES = ("admin", "developer", "viewer", "agent")
_DURATION = re.compile(r"(\d{1,6})\s*([mhdw])")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> int:
    """Seconds in ``30d``, ``12h``, ``90m``, ``2w``; ``TetherError`` for anything else."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise TetherError(
            f"--expires {visible(text)!r} is not a duration",
            hint="give a number and a unit: 90m, 12h, 30d or 2w",
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _access(ctx: click.Context) -> AccessStore:
    from tether.server.access import AccessStore

    store = AccessStore(database_url(ctx))
    store.ensure_ready()
    return store


def _when(ns: int | None) -> str:
    return "never" if ns is None else fmt_ns(ns)


@click.group("keys")
def keys_group() -> None:
    """Make, list and revoke API keys for tether serve."""


@keys_group.command("create")
@click.option(
    "--project", "-p", type=TEXT, default="default", show_default=True, help="Whose key it is."
)
@click.option("--role", "-r", type=click.Choice(ROLES), required=True, help="What it may do.")
@click.option("--expires", metavar="DURATION", help="Stop working after 90m, 12h, 30d, 2w...")
@click.option("--name", "-n", "name", type=TEXT, help="A label to recognise it by.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def keys_create(
    ctx: click.Context,
    project: str,
    role: str,
    expires: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Make a key. Its text is printed once: only a hash of it is stored."""
    from tether.server.roles import Role

    expires_ns = None
    if expires is not None:
        expires_ns = time.time_ns() + parse_duration(expires) * 1_000_000_000
    info, key = _access(ctx).create_key(project, Role(role), name=name or "", expires_ns=expires_ns)
    if as_json:
        click.echo(render.dumps({**info.shown(), "key": key}))
        return
    click.echo(key)
    click.echo(
        f"key {info.key_id} ({info.role.value} of project {visible(info.project)}, expires "
        f"{_when(info.expires_ns)}): shown once, keep it now",
        err=True,
    )


@keys_group.command("list")
@click.option("--project", "-p", type=TEXT, help="Only keys of this project.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def keys_list(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """Keys, newest first (their ids, never their secrets)."""
    keys = _access(ctx).list_keys(project)
    if as_json:
        click.echo(render.dumps([k.shown() for k in keys]))
        return
    if not keys:
        click.echo("no API keys yet; make one: tether keys create --role admin")
        return
    now = time.time_ns()
    for k in keys:
        click.echo(
            f"{k.key_id}  {visible(k.project):<16} {k.role.value:<9} {k.state(now):<8} "
            f"created {fmt_ns(k.created_ns)}  expires {_when(k.expires_ns)}  "
            f"used {_when(k.last_used_ns)}  {one_line(k.name)}"
        )


@keys_group.command("revoke")
@click.argument("key_id", type=TEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def keys_revoke(ctx: click.Context, key_id: str, as_json: bool) -> None:
    """Revoke a key by its id (or the whole key, tth_...): it and its browser sessions stop
    working at once."""
    from tether.server.access import KEY_PREFIX, split_key

    # A leaked key is what one has at hand: take its id, and never echo its secret.
    parts = split_key(key_id)
    if parts is not None:
        key_id = parts[0]
    elif key_id.startswith(KEY_PREFIX):
        raise click.BadParameter(
            "this is not a whole key (tth_<16 hex digits>_<secret>): give its id, as "
            "tether keys list shows it",
            param_hint="KEY_ID",
        )
    info = _access(ctx).revoke_key(key_id)
    if as_json:
        click.echo(render.dumps(info.shown()))
        return
    click.echo(f"key {info.key_id} revoked")


@click.group("projects")
def projects_group() -> None:
    """Make and list projects (each has its own runs and keys)."""


@projects_group.command("create")
@click.argument("name", type=TEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def projects_create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Make a project."""
    _access(ctx).create_project(name)
    if as_json:
        click.echo(render.dumps({"name": name}))
        return
    click.echo(f"project {name} created; a key for it: tether keys create -p {name} -r developer")


@projects_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def projects_list(ctx: click.Context, as_json: bool) -> None:
    """Projects, by name."""
    projects = _access(ctx).list_projects()
    if as_json:
        click.echo(render.dumps([{"name": n, "created_ns": c} for n, c in projects]))
        return
    for name, created in projects:
        if created is None:
            click.echo(f"{name}  runs only, never created (tether projects create {name})")
        else:
            click.echo(f"{name}  created {fmt_ns(created)}")
