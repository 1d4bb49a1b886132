"""``tether approvals`` and ``tether resume``: a person answers the tool call a paused run
waits on (a control escalated it: a Cedar ``@escalate`` permit, a guard), and the run goes on.

    tether approvals list                          # runs waiting, with the call and why
    tether approvals approve RUN_ID --by alice     # or: deny RUN_ID --by alice --reason ...
    tether resume agent.yaml RUN_ID                # the approved call runs, once

Answers and resumes are entries of the hash-chained audit log (``tether audit list``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tether.cli import render
from tether.cli.base import (
    console,
    database_url,
    handle_errors,
    open_reader,
    tether_command,
    writer_for,
)
from tether.cli.options import TEXT
from tether.cli.run import StreamPrinter, report_run
from tether.cli.terminal import escape, one_line, visible
from tether.core import Settings

if TYPE_CHECKING:
    from tether.runtime import Agent, RunResult
    from tether.runtime.approvals import WaitingCall


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a container)
        return ""


def _cli_actor() -> dict[str, Any]:
    login = _login()
    return {"via": "cli", "os_user": login} if login else {"via": "cli"}


def _call_text(tool: str, args: dict[str, Any]) -> str:
    """A call as ``tool(name=value, ...)``."""
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    return f"{tool}({shown})"


def _row(waiting: WaitingCall) -> dict[str, Any]:
    """What ``approvals list`` shows of a run waiting on a call (``--json`` alike)."""
    run, pending = waiting.run, waiting.call
    if pending is None:
        return {"run_id": run.run_id, "agent": run.agent_name, "problem": waiting.problem}
    return {
        "run_id": run.run_id,
        "trace_id": run.trace_id,
        "agent": run.agent_name,
        "agent_version": run.agent_version,
        "call_id": pending.call_id,
        "call": _call_text(pending.tool, waiting.arguments or {}),
        "control": pending.control,
        "escalation": pending.reason,
        "answer": waiting.answer.to_json() if waiting.answer is not None else None,
        "resumed_as": waiting.resumed_as,
    }


def print_next_steps(ctx: click.Context, run_id: str, spec: Path | str) -> None:
    """What to do with a run paused on a tool call: answer it, then resume the run."""
    command = escape(tether_command(ctx))
    console.print(
        f"[dim]approve or deny the call:[/] {command} approvals approve {run_id} --by NAME  "
        f"[dim](or deny)[/]\n[dim]then go on:[/] {command} resume "
        f"{escape(shlex.quote(str(spec)))} {run_id}",
        highlight=False,
        soft_wrap=True,
    )


@click.group()
def approvals() -> None:
    """Tool calls waiting for a person: list them, approve or deny one, then `tether resume`."""


@approvals.command("list")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    metavar="N",
    help="How many runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def list_waiting(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Runs paused on an escalated tool call, newest first: the call, why it asked, and its
    answer (or that it waits)."""
    from tether.runtime.approvals import waiting_calls

    reader = open_reader(ctx)
    found, _ = waiting_calls(reader, limit=limit)
    rows = [_row(w) for w in found]
    if as_json:
        click.echo(render.dumps({"runs": rows}))
        return
    if not rows:
        click.echo(f"no run waits for approval in {visible(reader.display_url)}")
        return
    for row in rows:
        if "problem" in row:
            click.echo(f"{row['run_id']}  {one_line(row['agent'])}  {one_line(row['problem'])}")
            continue
        answer = row["answer"]
        if row["resumed_as"]:
            status = f"resumed as {row['resumed_as']}"
        elif answer is not None:
            said = "approved" if answer["approved"] else "denied"
            status = f"{said} by {answer['approver']}; resume it"
        else:
            status = "waiting"
        # free text (an agent's name, a call's arguments, a reason): each row stays one line
        call, status = one_line(row["call"]), one_line(status)
        click.echo(f"{row['run_id']}  {one_line(row['agent'])}  {call}  [{status}]")
        click.echo(f"    {one_line(row['escalation'])}")


def _answer(
    ctx: click.Context,
    run_id: str,
    approved: bool,
    approver: str | None,
    reason: str,
    call_id: str | None,
    as_json: bool,
) -> None:
    from tether.runtime.approvals import decide, paused_state

    who = approver if approver is not None else _login()
    if not who:
        raise click.UsageError("say who answers: --by NAME (there is no login name here)")
    reader = open_reader(ctx)
    answer = decide(
        reader,
        run_id,
        approved=approved,
        approver=who,
        reason=reason,
        call_id=call_id,
        actor=_cli_actor(),
    )
    if as_json:
        click.echo(render.dumps(answer.to_json()))
        return
    state = paused_state(reader, answer.run_id)
    call = next((c for c in state.pending_tool_calls if c.id == answer.call_id), None)
    shown = _call_text(answer.tool, call.arguments if call is not None else {})
    mark = "[green]✓ approved[/]" if approved else "[red]✗ denied[/]"
    console.print(
        f"{mark} {escape(shown)} of run {answer.run_id}, as {escape(answer.approver)}"
        " (recorded in the audit log)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"[dim]go on with:[/] {escape(tether_command(ctx))} resume AGENT.yaml {answer.run_id}",
        highlight=False,
        soft_wrap=True,
    )


_RUN_ID = click.argument("run_id", metavar="RUN_ID", type=TEXT)


def _answer_command(approved: bool, doc: str, reason_help: str) -> click.Command:
    """``approvals approve`` or ``approvals deny``: the same options, the other answer."""

    @click.pass_context
    @handle_errors
    def command(
        ctx: click.Context,
        run_id: str,
        approver: str | None,
        reason: str,
        call_id: str | None,
        as_json: bool,
    ) -> None:
        _answer(ctx, run_id, approved, approver, reason, call_id, as_json)

    command.__doc__ = doc
    for option in (
        click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON."),
        click.option(
            "--call", "call_id", type=TEXT, help="The call's id: refused unless it is the one."
        ),
        click.option("--reason", default="", help=reason_help),
        click.option("--by", "approver", type=TEXT, help="Who answers (default: your login name)."),
        _RUN_ID,
    ):
        command = option(command)
    return approvals.command("approve" if approved else "deny")(command)


approve = _answer_command(
    True,
    """Approve the tool call the paused run RUN_ID waits on: resumed, the run makes that call
    (once). An answer is final.""",
    "Why (kept in the audit log).",
)
deny = _answer_command(
    False,
    """Deny the tool call the paused run RUN_ID waits on: resumed, the run is refused that
    call and the model is told who denied it. An answer is final.""",
    "Why (kept in the audit log, told to the model).",
)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_RUN_ID
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--stream", is_flag=True, help="Print the answer as it comes (controls judge it at the end)."
)
@click.pass_context
@handle_errors
def resume(ctx: click.Context, file: Path, run_id: str, as_json: bool, stream: bool) -> None:
    """Go on with the run RUN_ID of the agent in FILE, paused on a tool call that has been
    approved or denied (tether approvals). It goes on as a new run in the same trace; exit
    status as for tether run."""
    from tether.runtime import Agent

    if stream and as_json:
        raise click.UsageError("--stream prints text as it comes; it cannot go with --json")
    open_reader(ctx)  # what a killed process left in the journal is written first
    agent = Agent.from_yaml(file, trace=writer_for(database_url(ctx)))
    printer = StreamPrinter() if stream else None
    result = asyncio.run(_resume(agent, run_id, printer))
    report_run(
        ctx,
        result,
        Settings.from_env(),
        as_json=as_json,
        printer=printer,
        spec=file,
        resumed_from=run_id,
    )


async def _resume(agent: Agent, run_id: str, printer: StreamPrinter | None) -> RunResult:
    async with agent:
        return await agent.resume(run_id, stream=printer, actor=_cli_actor())
