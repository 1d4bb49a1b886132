"""The ``tether`` command line: verbs over nouns, ``--json`` on every command. The group and
the process entry point live here; each command lives in a module of its own."""

from __future__ import annotations

import logging
import signal
import sys

import click

from tether.cli import render
from tether.cli.approvals import approvals, resume
from tether.cli.audit import audit
from tether.cli.base import (
    EXIT_OK,
    Terminated,
    console,
    database_url,
    detach_stdout,
    err_console,
    handle_errors,
    tether_command,
)
from tether.cli.keys import keys_group, projects_group
from tether.cli.policy import policy
from tether.cli.run import run, validate
from tether.cli.sandbox import sandbox
from tether.cli.scan import scan
from tether.cli.serve import serve
from tether.cli.terminal import visible
from tether.cli.traces import traces


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url",
    envvar="TETHER_DATABASE_URL",
    metavar="URL",
    help="sqlite:///path.db or postgresql://user@host/db; default: tether.db in "
    "$TETHER_HOME (~/.local/share/tether).",
)
@click.version_option(package_name="tether")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Tether: one policy pipeline and one trace for every call of your agents."""
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
@click.option("--json", "as_json", is_flag=True, help="Print the scenarios' results as JSON.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, as_json: bool) -> None:
    """Run the example agents offline: a normal answer, a recovered tool error, a broken
    loop, a tripped limit, an injection caught, personal data masked, a wrong answer
    re-asked, a refund denied by a Cedar policy, one approved by a person, a failing upstream
    behind a circuit breaker, a sandboxed calculation and a budget running out, then show how
    to inspect each trace."""
    from tether.cli.demo import run_demo

    run_demo(database_url(ctx), console=console, as_json=as_json, command=tether_command(ctx))


for command in (
    validate,
    run,
    traces,
    scan,
    serve,
    keys_group,
    projects_group,
    policy,
    sandbox,
    audit,
    approvals,
    resume,
):
    cli.add_command(command)


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM (a container stop) unwinds like Ctrl-C: the interrupted run is recorded as
    # failed with a checkpoint, and queued trace records are flushed before exit.
    raise Terminated(signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    code: int | str | None = EXIT_OK
    try:
        _main()
    except SystemExit as exc:
        code = exc.code
    except BrokenPipeError:
        detach_stdout()
    try:
        sys.stdout.flush()  # a reader that went away shows here, not as noise at exit
    except BrokenPipeError:
        detach_stdout()
    sys.exit(code)


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
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            # Ctrl-C in a command that does not say it itself (`tether scan`): the status of
            # every other interrupted command, 130, not the 1 of a failure.
            err_console.print("interrupted", highlight=False)
            sys.exit(130)
        err_console.print("aborted")
        sys.exit(1)
