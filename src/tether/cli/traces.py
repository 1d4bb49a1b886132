"""``tether traces list`` and ``tether traces show``: read the trace store."""

from __future__ import annotations

from datetime import datetime

import click

from tether.cli import render
from tether.cli.base import console, err_console, handle_errors, open_reader, warn_stranded_journals
from tether.cli.options import CURSOR, OUTCOMES, RUN_STATUSES, TEXT, WHEN
from tether.cli.terminal import escape, visible
from tether.core import Settings

MAX_LIST_LIMIT = 10_000
"""Most runs ``traces list`` shows at once (``-n``)."""
DEFAULT_MAX_SPANS = 2_000
"""Spans ``traces show`` draws by default: a bigger trace is for ``--json``, the web UI or a
larger ``--max-spans`` (drawing 30,000 took 5 s here, more than anyone reads in a terminal)."""


@click.group()
def traces() -> None:
    """List and inspect stored traces."""


@traces.command("list")
@click.option(
    "--limit",
    "-n",
    default=20,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_LIST_LIMIT),
    metavar="N",
    help="How many runs.",
)
@click.option(
    "--status",
    multiple=True,
    type=click.Choice(RUN_STATUSES),
    metavar="STATUS",
    help=f"Only runs in status {', '.join(RUN_STATUSES)}.",
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
@click.option(
    "--since",
    type=WHEN,
    metavar="TIME",
    help="Only runs started at TIME or later: ISO (UTC unless it has an offset) or an age "
    "(30m, 1h, 2d, 1w).",
)
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
    reader = open_reader(ctx)
    if as_json:  # a chunk of runs at a time: thousands of whole inputs and outputs add up
        stream = reader.stream_runs(query)
        warn_stranded_journals(ctx)
        summaries = (render.run_view(r) for r in stream.runs)
        for piece in render.dumps_page(summaries, stream.total, stream.next_cursor):
            click.echo(piece, nl=False)
        click.echo()
        return
    page = reader.find_runs(query, text_chars=render.TABLE_TEXT_CHARS)
    warn_stranded_journals(ctx)
    filters = query.model_dump(exclude_defaults=True).keys() - {"limit"}
    if page.runs:
        console.print(render.runs_table(page.runs, console.width))
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


@traces.command("show")
@click.argument("run_or_trace_id", metavar="ID", type=TEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option(
    "--max-spans",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_SPANS,
    show_default=True,
    help="Draw at most this many spans (0: all); failed spans and non-allow decisions past "
    "the cut are still listed. --json prints every span.",
)
@click.pass_context
@handle_errors
def traces_show(ctx: click.Context, run_or_trace_id: str, as_json: bool, max_spans: int) -> None:
    """One run's trace as a tree: spans with timings, tokens, cost, and control decisions.

    ID is a run id or a trace id (a trace several runs share asks for one of their run
    ids), or a unique prefix of either (at least 6 characters).
    """
    trace = open_reader(ctx).get_trace(run_or_trace_id)
    if as_json:
        click.echo(render.dumps(render.trace_view(trace)))
        return
    display_chars = Settings.from_env().max_display_chars
    render.print_trace(console, trace.run, trace.spans, trace.events, display_chars, max_spans)
