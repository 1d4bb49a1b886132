"""The ``tether`` command line: verbs over nouns, ``--json`` on every command."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from tether.cli import render
from tether.cli.options import CURSOR, OUTCOMES, RUN_STATUSES, TEXT, WHEN
from tether.cli.scan import scan
from tether.cli.terminal import LazyConsole, PlainStyle, escape, visible
from tether.core import Settings, SpecError, StoreError, TetherError

if TYPE_CHECKING:
    from rich.console import Console

    from tether.providers import StreamEvent
    from tether.runtime import Agent, RunResult, SpecCheck
    from tether.store import StoreReader
    from tether.trace import BatchingWriter

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_STOPPED = 3
"""``tether run``: the run ended without a final answer (limit, loop, block, pause)."""

# Piped output (make, CI logs) gets 120 columns instead of rich's 80 so tables stay readable.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
# emoji=False: ":thumbs_up:" in an answer is text, not a picture (and rich's emoji table is
# not loaded).
console = cast("Console", LazyConsole(width=_WIDTH, emoji=False))
err_console = cast("Console", LazyConsole(stderr=True, width=_WIDTH, emoji=False))
MAX_LIST_LIMIT = 10_000
"""Most runs ``traces list`` shows at once (``-n``)."""


# The runtime, the store (SQLAlchemy, Alembic) and httpx are imported when a command uses
# them, not with this module: `tether --help` and `tether validate` start in a fraction of the
# time.
def check_spec(path: Path, *args: Any, **kwargs: Any) -> SpecCheck:
    """``tether.runtime.check_spec``."""
    from tether.runtime import check_spec as check

    return check(path, *args, **kwargs)


def writer_for(url: str) -> BatchingWriter:
    """``tether.trace.writer_for``: the process's trace writer for a store."""
    from tether.trace import writer_for as writer

    return writer(url)


def handle_errors(func: F) -> F:
    """Turn Tether errors into a clear message and exit code 1 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TetherError as exc:
            if kwargs.get("as_json"):  # scripts asked for JSON: errors come as JSON too
                error: dict[str, Any] = {"error": exc.message, "hint": exc.hint}
                if isinstance(exc, SpecError) and exc.problems:
                    error["problems"] = exc.problems
                click.echo(render.dumps(error))
                sys.exit(EXIT_ERROR)
            # escape(): rich markup escaped and control characters shown (the message may
            # quote a model's output, a tool's error, a file name).
            # soft_wrap: never break a path or a command across lines; the terminal wraps it.
            err_console.print(
                f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True
            )
            if exc.hint:
                err_console.print(
                    f"[dim]hint: {escape(exc.hint)}[/]", highlight=False, soft_wrap=True
                )
            sys.exit(EXIT_ERROR)
        except click.ClickException:
            raise  # a usage error found by the command itself: click says it
        except BrokenPipeError:
            raise  # the reader went away (`| head`): main() ends quietly
        except KeyboardInterrupt:
            err_console.print("interrupted; an unfinished run is recorded as failed")
            sys.exit(130)
        except _Terminated as exc:
            err_console.print(
                f"terminated by {exc.signal_name}; an unfinished run is recorded as failed",
                highlight=False,
            )
            raise
        except Exception as exc:
            if os.environ.get("TETHER_DEBUG"):
                raise
            err_console.print(
                f"[bold red]unexpected error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                "[dim]run again with TETHER_DEBUG=1 for the traceback, and please report it[/]",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(EXIT_ERROR)
        finally:
            _close_writers()

    return wrapper  # type: ignore[return-value]


def _close_writers() -> None:
    """Flush and close the trace writers, if this command opened any."""
    recorder = sys.modules.get("tether.trace.recorder")
    if recorder is not None:
        recorder.close_writers()


def tether_command(ctx: click.Context) -> str:
    """How to call tether again against the same store (for the hints we print)."""
    arg0 = sys.argv[0]
    on_path = shutil.which("tether")
    invoked_by_path = "/" in arg0 and arg0.endswith("/tether")
    if invoked_by_path and (on_path is None or Path(on_path).resolve() != Path(arg0).resolve()):
        program = arg0  # e.g. .venv/bin/tether, as `make demo` runs it
    else:
        program = "tether"
    url: str | None = ctx.obj.get("database_url") if ctx.obj else None
    if url and not os.environ.get("TETHER_DATABASE_URL"):
        from tether.store import redact_url

        return f"{program} --database-url {shlex.quote(redact_url(url))}"
    return program


def database_url(ctx: click.Context) -> str:
    url: str | None = ctx.obj.get("database_url") if ctx.obj else None
    return url or Settings.from_env().database_url


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url",
    envvar="TETHER_DATABASE_URL",
    metavar="URL",
    help="Trace store, e.g. sqlite:///path.db or postgresql://user@host/db (default: "
    "tether.db in $TETHER_HOME, else in $XDG_DATA_HOME/tether or ~/.local/share/tether).",
)
@click.version_option(package_name="tether")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Tether: run agents through one policy pipeline and keep one trace of everything."""
    ctx.ensure_object(dict)
    ctx.obj["database_url"] = database_url
    _show_library_warnings()


class _StderrHandler(logging.Handler):
    """Tether's own warnings (trace store down, records kept in the journal) on stderr, where
    the command prints them; stdout stays clean for --json."""

    def emit(self, record: logging.LogRecord) -> None:
        label = "error" if record.levelno >= logging.ERROR else "warning"
        click.echo(f"{label}: {visible(self.format(record))}", err=True)


def _show_library_warnings() -> None:
    logger = logging.getLogger("tether")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler(logging.WARNING))
        logger.setLevel(logging.WARNING)
        # psycopg logs, through Python's last-resort handler, the pipeline it abandons after a
        # failed batch ("error ignored terminating <psycopg.Pipeline ...>"): Tether's own
        # warning already says which write failed and why, in words.
        logging.getLogger("psycopg").addHandler(logging.NullHandler())


@cli.command()
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
        )
    lines += [f"{style('warning:', fg='yellow')} {visible(warning)}" for warning in check.warnings]
    click.echo("\n".join(lines), color=style.enabled)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "-i", "input_text", required=True, help="The user's message.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--stream", is_flag=True, help="Print the answer as it comes (controls judge it at the end)."
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
) -> None:
    """Print a run's result as ``tether run`` does, and exit with its status (0 final answer,
    3 stopped by a control, 1 failed). A run paused on a tool call gets the commands that
    approve or deny it and resume the run (from ``spec``, the agent's file)."""
    if as_json:  # the output as the trace stores it (clipped past TETHER_MAX_PAYLOAD_CHARS)
        click.echo(render.dumps(render.result_json(result, settings.max_payload_chars)))
    else:
        shown = printer is not None and printer.showed(result.output)
        if printer is not None and not shown and printer.printed:
            click.echo("\n[the streamed text above is not the answer; the answer is:]")
        render.print_result(console, result, settings.max_display_chars, answer_shown=shown)
        console.print(
            f"[dim]inspect: {escape(tether_command(ctx))} traces show {result.run_id}[/]",
            highlight=False,
            soft_wrap=True,  # a command to copy must stay on one line
        )
        if result.state.awaiting_approval is not None and spec is not None:
            from tether.cli.approvals import print_next_steps

            print_next_steps(ctx, result.run_id, spec)
    if result.status == "failed":
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

    def __call__(self, event: StreamEvent) -> None:
        from tether.providers import StreamEnd, TextDelta

        if isinstance(event, TextDelta) and event.text:
            click.echo(visible(event.text), nl=False)
            self._current.append(event.text)
            self.printed = True
        elif isinstance(event, StreamEnd):
            if self._current:
                click.echo()
            self._last, self._current = "".join(self._current), []

    def showed(self, answer: str) -> bool:
        """Whether ``answer`` is exactly the last reply streamed (so need not print again)."""
        return bool(answer) and answer == self._last


@cli.group()
def traces() -> None:
    """List and inspect stored traces."""


@traces.command("list")
@click.option(
    "--limit",
    "-n",
    default=20,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_LIST_LIMIT),
    help=f"How many runs (at most {MAX_LIST_LIMIT:,}).",
)
@click.option(
    "--status", multiple=True, type=click.Choice(RUN_STATUSES), help="Only runs in this status."
)
@click.option(
    "--outcome",
    multiple=True,
    type=click.Choice(OUTCOMES),
    metavar="OUTCOME",
    help=f"Only runs that ended so: {', '.join(OUTCOMES)}.",
)
@click.option("--agent", multiple=True, type=TEXT, help="Only runs of this agent.")
@click.option(
    "--version", multiple=True, type=TEXT, help="Only runs of this agent version (or prefix)."
)
@click.option("--model", multiple=True, type=TEXT, help="Only runs that requested this model.")
@click.option("--project", multiple=True, type=TEXT, help="Only runs of this project.")
@click.option("--since", type=WHEN, metavar="TIME", help="Only runs started at TIME or later.")
@click.option("--until", type=WHEN, metavar="TIME", help="Only runs started before TIME.")
@click.option("--cursor", type=CURSOR, help="Start after the page that printed this cursor.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def traces_list(
    ctx: click.Context,
    limit: int,
    status: tuple[str, ...],
    outcome: tuple[str, ...],
    agent: tuple[str, ...],
    version: tuple[str, ...],
    model: tuple[str, ...],
    project: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Recent runs, newest first, a page at a time.

    Each filter can be given several times (a run matching any of its values passes);
    filters of different kinds must all hold. TIME is an ISO time (2026-11-23T10:00, UTC
    unless it says otherwise) or an age: 30m, 1h, 2d, 1w.
    """
    from pydantic import ValidationError

    from tether.store import RunQuery

    if since is not None and until is not None and until <= since:
        raise click.BadParameter("must be later than --since", param_hint="'--until'")
    try:
        query = RunQuery(
            status=status,
            outcome=outcome,
            agent=agent,
            version=version,
            model=model,
            project=project,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    except ValidationError as exc:  # what click's types do not check (how many values)
        problem = exc.errors()[0]
        option = str(problem["loc"][0]).replace("_", "-")
        raise click.BadParameter(
            str(problem["msg"]).removeprefix("Value error, "), param_hint=f"'--{option}'"
        ) from None
    reader = _open_reader(ctx)
    if as_json:  # a chunk of runs at a time: thousands of whole inputs and outputs add up
        stream = reader.stream_runs(query)
        _warn_stranded_journals(ctx)
        summaries = (render.run_view(r) for r in stream.runs)
        for piece in render.dumps_page(summaries, stream.total, stream.next_cursor):
            click.echo(piece, nl=False)
        click.echo()
        return
    page = reader.find_runs(query, text_chars=render.TABLE_TEXT_CHARS)
    _warn_stranded_journals(ctx)
    filters = query.model_dump(exclude_defaults=True).keys() - {"limit"}
    if page.runs:
        console.print(render.runs_table(page.runs))
    elif cursor:
        console.print("no more runs after this cursor", markup=False)
    elif filters == {"agent"}:
        shown = visible(", ".join(repr(a) for a in agent))
        console.print(f"no traces of agent {shown} in {reader.display_url}", markup=False)
    elif filters:
        console.print(f"no runs match these filters in {reader.display_url}", markup=False)
    else:
        console.print(f"no traces in {reader.display_url} yet; try: tether demo", markup=False)
    if page.next_cursor:
        err_console.print(
            f"[dim]{len(page.runs)} of {page.total} runs; next page: --cursor "
            f"{escape(page.next_cursor)}[/]",
            highlight=False,
            soft_wrap=True,  # a cursor to copy must stay on one line
        )


def _open_reader(ctx: click.Context) -> StoreReader:
    """The trace store for reading, once what a killed process left in its trace journal is
    written (here, once: no writer is started). A store that cannot be opened is one error
    (``StoreError``), said at once; a SQLite file this process cannot write is read as it
    is, read-only, and its journal left for a command that can write it."""
    from tether.store import Store, StoreReader, create_store_engine
    from tether.store.db import sqlite_read_only
    from tether.trace.journal import undelivered
    from tether.trace.recorder import journal_for
    from tether.trace.recovery import deliver_orphans

    url = database_url(ctx)
    read_only = sqlite_read_only(url)
    engine = create_store_engine(url, read_only=read_only)
    reader = StoreReader(url, engine=engine, connect=False)
    reader.ensure_ready()
    directory = journal_for(url)
    segments, records = (0, 0) if directory is None else undelivered(directory)
    if read_only and records:
        _warn(
            f"{records} trace record(s) in the journal {directory} wait for this store, which "
            "is read-only here; they are written by the next tether command that can write it"
        )
    elif segments and directory is not None:
        # A process died: write what it left, and close its unfinished runs.
        try:
            deliver_orphans(directory, Store(url, engine=engine, connect=False))
        except StoreError as exc:
            _warn(
                f"trace records that a stopped process left in the journal {directory} cannot "
                f"be written now ({exc.message}); they are kept there, and the newest traces "
                "may be incomplete"
            )
    return reader


def _warn_stranded_journals(ctx: click.Context) -> None:
    """One line on stderr when the journal holds records for stores other than this one
    (runs made with another URL), naming them without credentials and how to deliver them."""
    from tether.trace.recorder import stranded_journals

    stranded = stranded_journals(database_url(ctx))
    if not stranded:
        return
    records = sum(s.records for s in stranded)
    named = [
        f"{s.store} ({s.records} records)"
        if s.store
        else f"a store an older Tether did not name ({s.records} records in {s.directory})"
        for s in stranded[:3]
    ]
    more = f" and {len(stranded) - 3} more" if len(stranded) > 3 else ""
    _warn(
        f"{records} trace record(s) in the journal were never delivered to their store: "
        f"{', '.join(named)}{more}; to deliver them, run `tether --database-url URL traces "
        "list` with that store's URL (and its user and password)"
    )


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@traces.command("show")
@click.argument("run_or_trace_id", metavar="ID", type=TEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@handle_errors
def traces_show(ctx: click.Context, run_or_trace_id: str, as_json: bool) -> None:
    """One run's trace as a tree: spans with timings, tokens, cost, and control decisions.

    ID is a run id or a trace id (a trace several runs share asks for one of their run
    ids), or a unique prefix of either (at least 6 characters).
    """
    trace = _open_reader(ctx).get_trace(run_or_trace_id)
    if as_json:
        click.echo(render.dumps(render.trace_view(trace)))
        return
    display_chars = Settings.from_env().max_display_chars
    render.print_trace(console, trace.run, trace.spans, trace.events, display_chars)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the scenarios' results as JSON.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, as_json: bool) -> None:
    """Run the example agents offline: a normal answer, a recovered tool error, a broken
    loop, a tripped limit, an injection caught, personal data masked, a wrong answer
    re-asked, a refund denied by a Cedar policy, one approved by a person, a failing upstream
    behind a circuit breaker and a sandboxed calculation, then show how to inspect each
    trace."""
    from tether.cli.demo import run_demo

    run_demo(database_url(ctx), console=console, as_json=as_json, command=tether_command(ctx))


cli.add_command(scan)
# Commands in their own modules (they import what they need from this one).
from tether.cli.keys import keys_group, projects_group  # noqa: E402
from tether.cli.serve import serve  # noqa: E402

cli.add_command(serve)
cli.add_command(keys_group)
cli.add_command(projects_group)

from tether.cli.approvals import approvals, resume  # noqa: E402

cli.add_command(approvals)
cli.add_command(resume)


class _Terminated(SystemExit):
    """SIGTERM, raised where the main thread is, so the run unwinds like on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM (a container stop) unwinds like Ctrl-C: the interrupted run is recorded as
    # failed with a checkpoint, and queued trace records are flushed before exit.
    raise _Terminated(signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    code: int | str | None = EXIT_OK
    try:
        _main()
    except SystemExit as exc:
        code = exc.code
    except BrokenPipeError:
        _detach_stdout()
    try:
        sys.stdout.flush()  # a reader that went away shows here, not as noise at exit
    except BrokenPipeError:
        _detach_stdout()
    sys.exit(code)


def _detach_stdout() -> None:
    """The reader of stdout went away (``tether traces show ID | head -1``): a normal end, with
    nothing more to say. Later writes (the flush at exit) go to /dev/null, not to an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _main() -> None:
    try:
        cli.main(prog_name="tether", standalone_mode=False)
    except click.UsageError as exc:
        if "--json" in sys.argv[1:]:  # scripts asked for JSON: usage errors come as JSON too
            command = exc.ctx.command_path if exc.ctx else "tether"
            click.echo(render.dumps({"error": exc.format_message(), "hint": f"{command} --help"}))
        else:  # the message may quote an argument: its control characters are shown
            click.UsageError(visible(exc.format_message()), exc.ctx).show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.ClickException(visible(exc.format_message())).show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(1)


from tether.cli.policy import policy  # noqa: E402 (it uses handle_errors, defined above)

cli.add_command(policy)
from tether.cli.sandbox import sandbox  # noqa: E402 (it uses handle_errors, defined above)

cli.add_command(sandbox)

from tether.cli.audit import audit  # noqa: E402 (it uses handle_errors, defined above)

cli.add_command(audit)
