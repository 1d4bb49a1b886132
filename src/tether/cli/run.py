"""``tether validate`` and ``tether run``: check an agent spec, run an agent once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tether.cli import render
from tether.cli.base import (
    EXIT_ERROR,
    EXIT_STOPPED,
    check_spec,
    close_trace_writers,
    console,
    database_url,
    detach_stdout,
    handle_errors,
    in_memory_store,
    tether_command,
    writer_for,
)
from tether.cli.terminal import PlainStyle, escape, visible
from tether.core import Settings

if TYPE_CHECKING:
    from tether.providers import StreamEvent
    from tether.runtime import Agent, RunResult


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--no-import",
    "no_import",
    is_flag=True,
    help="Do not import Python tool modules (runs none of their code); check references only.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def validate(file: Path, no_import: bool, as_json: bool) -> None:
    """Check an agent spec without running it: YAML, fields, model script, tools, limits.

    The checks are the ones `tether run` makes, except that environment variables the agent
    needs to run (API keys, URLs of HTTP tools) are warnings here, so specs can be checked
    where secrets are not available.

    Checking Python tools imports their modules, which RUNS THEIR CODE: validate only specs
    you trust, or pass --no-import to check that each tool's file or module exists without
    importing it (the tools' code is then not checked).
    """
    check = check_spec(file, import_tools=not no_import)
    spec, tools = check.spec, check.tools
    info = {
        "file": str(file),
        "valid": True,
        "agent": spec.name,
        "version": spec.version,
        "model": f"{spec.model.provider}/{spec.model.name}",
        "fallback_models": [f"{m.provider}/{m.name}" for m in spec.fallback_models],
        "paradigm": spec.paradigm,
        # A tool not imported is described as the spec declares it (a decorator may add more).
        "tools": [
            {"name": t.name, "side_effects": t.side_effects, "scopes": list(t.scopes)}
            for t in (tools.get(d.name, d) for d in spec.tools)
        ],
        "tool_code_checked": not check.not_imported,
        "limits": spec.limits.model_dump(),
        "loop_breaker": spec.loop_breaker.model_dump(),
        "missing_env": check.missing_env,
        "warnings": check.warnings,
    }
    if as_json:
        click.echo(render.dumps(info))
        return
    # click.echo, not rich: importing rich costs ~20 ms with cached bytecode and ~100 ms without
    # (see PlainStyle). Outside text is shown with visible(), as everywhere; the terminal, not
    # rich, wraps a long line.
    style = PlainStyle(sys.stdout)
    names = [t.name for t in spec.tools]
    lines = [
        f"{style('✓', fg='green')} {visible(file)}: agent {style(spec.name, bold=True)} "
        f"version {spec.version}",
        f"  model {visible(info['model'])}, paradigm {spec.paradigm}, "
        f"{len(names)} tool(s): {', '.join(names) or 'none'}",
    ]
    if check.not_imported:
        lines.append(
            f"{style('note:', fg='yellow')} tool code was not checked (--no-import): "
            f"{', '.join(check.not_imported)} (their references were checked; "
            "importing them may still fail)"
            + (
                "; Cedar policies were parsed, not checked against the tools: `tether policy check`"
                if spec.authorization
                else ""
            )
        )
    lines += [f"{style('warning:', fg='yellow')} {visible(warning)}" for warning in check.warnings]
    click.echo("\n".join(lines), color=style.enabled)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "-i", "input_text", required=True, help="The user's message.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--stream",
    is_flag=True,
    help="Print the answer as it comes (held until judged when a control may block or mask it).",
)
@click.pass_context
@handle_errors
def run(ctx: click.Context, file: Path, input_text: str, as_json: bool, stream: bool) -> None:
    """Run an agent once and print its answer, outcome, trace id, tokens, cost and latency.

    Exit status: 0 final answer, 3 stopped by a control (limit, loop, block, pause), 1 error.
    """
    from tether.runtime import Agent

    if stream and as_json:
        raise click.UsageError("--stream prints text as it comes; it cannot go with --json")
    settings = Settings.from_env()
    url = database_url(ctx)
    agent = Agent.from_yaml(file, trace=writer_for(url))
    printer = StreamPrinter() if stream else None
    if stream and agent.harness.holds_streamed_text:
        click.echo(
            "note: the answer is printed once the output guards have judged it (they may block "
            "or mask it), not as it streams",
            err=True,
        )
    result = asyncio.run(_run_once(agent, input_text, printer))
    report_run(ctx, result, settings, as_json=as_json, printer=printer, spec=file)


def report_run(
    ctx: click.Context,
    result: RunResult,
    settings: Settings,
    *,
    as_json: bool,
    printer: StreamPrinter | None = None,
    spec: Path | None = None,
    resumed_from: str | None = None,
) -> None:
    """Print a run's result as ``tether run`` does, and exit with its status (0 final answer,
    3 stopped by a control, 1 failed). A run paused on a tool call gets the commands that
    approve or deny it and resume the run (from ``spec``, the agent's file). ``resumed_from``:
    the paused run this one went on from (its figures count that run's too).

    The trace is flushed first: a run whose trace records were lost (the store cannot be
    written and neither can the journal) says so, and exits 1, whatever its outcome."""
    lost = close_trace_writers()
    if as_json:  # the output as the trace stores it (clipped past TETHER_MAX_PAYLOAD_CHARS)
        answer = render.result_json(result, settings.max_payload_chars)
        # trace_saved: written to the store, or kept in the journal to be written there.
        answer.update(trace_saved=not lost, trace_records_lost=lost)
        click.echo(render.dumps(answer))
    else:
        shown = printer is not None and printer.showed(result.output)
        if printer is not None and not shown and printer.printed:
            click.echo("\n[the streamed text above is not the answer; the answer is:]")
        render.print_result(console, result, settings.max_display_chars, answer_shown=shown)
        if resumed_from is not None:
            # The state goes on from the paused run's: its usage, turns and tool calls too,
            # where this run's trace counts its own (a figure that did not match traces show).
            console.print(
                f"[dim](tokens, cost, turns and tool calls count the paused run "
                f"{escape(resumed_from)}'s as well; traces show has each run's own)[/]",
                highlight=False,
            )
        # (Records that were lost were said on stderr as they were: no trace to point to.)
        if not lost and in_memory_store(database_url(ctx)):  # no later command can read it
            console.print(
                "[dim]the trace store is in memory: this run's trace is gone when the command "
                "ends (give --database-url or TETHER_DATABASE_URL a file to keep it)[/]",
                highlight=False,
            )
        elif not lost:
            console.print(
                f"[dim]inspect: {escape(tether_command(ctx))} traces show {result.run_id}[/]",
                highlight=False,
                soft_wrap=True,  # a command to copy must stay on one line
            )
        if result.state.awaiting_approval is not None and spec is not None:
            from tether.cli.approvals import print_next_steps

            print_next_steps(ctx, result.run_id, spec)
    if result.status == "failed" or lost:
        sys.exit(EXIT_ERROR)
    if not result.ok:
        sys.exit(EXIT_STOPPED)


async def _run_once(
    agent: Agent, input_text: str, printer: StreamPrinter | None = None
) -> RunResult:
    async with agent:
        return await agent.run(input_text, stream=printer)


class StreamPrinter:
    """Prints each model reply's text as it comes (control characters shown, not obeyed), and
    remembers the last reply's text to tell whether the run's answer was shown already."""

    def __init__(self) -> None:
        self.printed = False
        self._current: list[str] = []
        self._last = ""
        self._cannot_write = False

    def __call__(self, event: StreamEvent) -> None:
        from tether.providers import StreamEnd, TextDelta

        if isinstance(event, TextDelta) and event.text:
            self._echo(visible(event.text), nl=False)
            self._current.append(event.text)
            self.printed = True
        elif isinstance(event, StreamEnd):
            if self._current:
                self._echo("", nl=True)
            self._last, self._current = "".join(self._current), []

    def _echo(self, text: str, *, nl: bool) -> None:
        if self._cannot_write:
            return
        try:
            click.echo(text, nl=nl)
        except BrokenPipeError:
            # The reader went away (`tether run --stream ... | head -c 10`): the run goes on
            # and is recorded as it ends, not failed by the printer; the rest of the output
            # goes to /dev/null.
            detach_stdout()
        except OSError:
            # Output that cannot be written (a full disk): the run goes on all the same and
            # is recorded as it ends; printing its result fails again, and says why.
            self._cannot_write = True

    def showed(self, answer: str) -> bool:
        """Whether ``answer`` is exactly the last reply streamed (so need not print again)."""
        return bool(answer) and answer == self._last
