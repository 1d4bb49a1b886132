"""What every ``tether`` command shares: the consoles, exit codes, error handling (a clear
message and exit code 1 instead of a traceback), the store URL and the store reader."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from tether.cli import render
from tether.cli.terminal import LazyConsole, escape
from tether.core import Settings, SpecError, StoreError, TetherError

if TYPE_CHECKING:
    from rich.console import Console

    from tether.runtime import SpecCheck
    from tether.store import StoreReader
    from tether.trace import BatchingWriter

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_STOPPED = 3
"""``tether run``: the run ended without a final answer (limit, loop, block, pause)."""

# A standard stream the caller closed (`tether run ... >&-`, a service started without one)
# is None in Python: the command still does its work (a run is still recorded), reading
# nothing and printing to nowhere, instead of failing with a traceback as it is imported.
for _stream, _mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
    if getattr(sys, _stream) is None:
        setattr(sys, _stream, open(os.devnull, _mode))  # noqa: SIM115 - for the process's life

# Piped output (make, CI logs) gets 120 columns instead of rich's 80 so tables stay readable.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
# emoji=False: ":thumbs_up:" in an answer is text, not a picture (and rich's emoji table is
# not loaded).
console = cast("Console", LazyConsole(width=_WIDTH, emoji=False))
err_console = cast("Console", LazyConsole(stderr=True, width=_WIDTH, emoji=False))


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
        succeeded = False
        try:
            result = handled(*args, **kwargs)
            succeeded = True
            return result
        except SystemExit as exc:
            succeeded = exc.code in (None, 0)
            raise
        finally:
            # A command whose trace records were lost (the store failing and no journal to
            # keep them: a full disk; or records the store refused, each said as it was) did
            # not do all it says it did: its status says so.
            if close_trace_writers() and succeeded:
                sys.exit(EXIT_ERROR)

    def handled(*args: Any, **kwargs: Any) -> Any:
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
            # The reader went away (`| head`): main() ends quietly. Raised again without its
            # errno, which click would catch itself (EPIPE) and end with status 1.
            raise BrokenPipeError from None
        except KeyboardInterrupt:
            err_console.print(f"interrupted{_runs_left()}", highlight=False)
            sys.exit(130)
        except Terminated as exc:
            err_console.print(f"terminated by {exc.signal_name}{_runs_left()}", highlight=False)
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

    return wrapper  # type: ignore[return-value]


def _runs_left() -> str:
    """What a stopped command says of its runs: only one that traced runs (opened a trace
    writer) can have left one unfinished (``tether validate`` has none to speak of)."""
    recorder = sys.modules.get("tether.trace.recorder")
    if recorder is None or not recorder.writers_opened():
        return ""
    return "; an unfinished run is recorded as failed"


def close_trace_writers() -> int:
    """Flush and close the trace writers, if this command opened any; how many records were
    lost (each writer has said why). A command that reports what it stored calls this before
    printing its result, so the result can say so (later calls find nothing to close)."""
    recorder = sys.modules.get("tether.trace.recorder")
    if recorder is None:
        return 0
    lost: int = recorder.close_writers()
    return lost


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


def in_memory_store(url: str) -> bool:
    """Whether ``url`` is a SQLite store in memory (``sqlite://``, ``sqlite:///:memory:``, a
    ``mode=memory`` URI): what is written there is gone when the process ends."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return False
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or "mode=memory" in str(parsed)


def database_url(ctx: click.Context) -> str:
    url: str | None = ctx.obj.get("database_url") if ctx.obj else None
    return url or Settings.from_env().database_url


class Terminated(SystemExit):
    """SIGTERM, raised where the main thread is, so the run unwinds like on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name


def open_reader(ctx: click.Context) -> StoreReader:
    """The trace store for reading, once what a killed process left in its trace journal is
    written (here, once: no writer is started). A store that cannot be opened is one error
    (``StoreError``), said at once; a SQLite file this process cannot write is read as it
    is, read-only, and its journal left for a command that can write it."""
    from tether.store import Store, StoreReader, create_store_engine
    from tether.store.db import sqlite_file, sqlite_read_only
    from tether.trace.journal import replays_in_progress, undelivered
    from tether.trace.recorder import journal_for
    from tether.trace.recovery import deliver_orphans

    url = database_url(ctx)
    directory = journal_for(url)
    segments, records = (0, 0) if directory is None else undelivered(directory)
    replaying = [] if directory is None else replays_in_progress(directory)
    if replaying:
        warn(
            f"another process (pid {', '.join(map(str, replaying))}) is replaying a crash "
            f"journal ({directory}) into this store right now: what is read here may be "
            "incomplete (runs shown running, spans missing) until it has finished"
        )
    path = sqlite_file(url)
    if path is not None and not path.exists() and not segments:
        # Nothing was ever written there (a fresh home, or a mistyped path): read an empty
        # store without creating the file, its folder and a lock file at that path.
        reader = StoreReader(url, engine=create_store_engine("sqlite://"), connect=False)
        reader.ensure_ready()
        return reader
    read_only = sqlite_read_only(url)
    engine = create_store_engine(url, read_only=read_only)
    reader = StoreReader(url, engine=engine, connect=False)
    reader.ensure_ready()
    if read_only and records:
        warn(
            f"{records} trace record(s) in the journal {directory} wait for this store, which "
            "is read-only here; they are written by the next tether command that can write it"
        )
    elif segments and directory is not None:
        # A process died: write what it left, and close its unfinished runs.
        try:
            deliver_orphans(directory, Store(url, engine=engine, connect=False))
        except StoreError as exc:
            warn(
                f"trace records that a stopped process left in the journal {directory} cannot "
                f"be written now ({exc.message}); they are kept there, and the newest traces "
                "may be incomplete"
            )
    if directory is not None:
        _warn_replays_after(ctx, directory, replaying)
    return reader


def _warn_replays_after(ctx: click.Context, directory: Path, warned: list[int]) -> None:
    """Once the command is done, one line on stderr if a replay of the store's journal began
    while it read (still under way, or over already): what it read may be part of it. The
    check at the start sees only the replays under way then; a long read (a whole listing
    streamed as JSON) may meet one that starts later."""
    from tether.trace.journal import replays_begun, replays_in_progress

    begun = replays_begun(directory)

    def check() -> None:
        now = replays_in_progress(directory)
        new = [pid for pid in now if pid not in warned]
        if not new and replays_begun(directory) == begun:
            return
        who = f"another process (pid {', '.join(map(str, new))}) is" if new else "a process"
        when = "replaying" if new else "replayed"
        warn(
            f"{who} {when} a crash journal ({directory}) into this store while this "
            "command read it: what was read may be incomplete (runs shown running, spans "
            "missing); read again once it has finished"
        )

    ctx.call_on_close(check)


def warn_stranded_journals(ctx: click.Context) -> None:
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
    warn(
        f"{records} trace record(s) in the journal were never delivered to their store: "
        f"{', '.join(named)}{more}; to deliver them, run `tether --database-url URL traces "
        "list` with that store's URL (and its user and password)"
    )


def detach_stdout() -> None:
    """The reader of stdout went away (``tether traces show ID | head -1``): a normal end, with
    nothing more to say. Later writes (the flush at exit) go to /dev/null, not to an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
