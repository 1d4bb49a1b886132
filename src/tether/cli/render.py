"""Rendering runs and traces for the terminal (rich) and for scripts (JSON)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tether.cli.terminal import escape, json_safe, visible
from tether.core.outcome import Outcome
from tether.core.settings import DEFAULT_MAX_PAYLOAD_CHARS
from tether.core.text import clip_text
from tether.store import EventRecord, RunRecord, SpanRecord
from tether.trace import semconv
from tether.trace.readout import fmt_ns, json_cost, run_cost

if TYPE_CHECKING:  # rich loads when something is printed: `tether --help` never needs it
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    from tether.runtime import RunResult
    from tether.store import Trace

R = TypeVar("R", RunRecord, SpanRecord, EventRecord)

OUTCOME_STYLE: dict[str, str] = {
    Outcome.FINAL_ANSWER: "green",
    Outcome.LIMIT_EXCEEDED: "yellow",
    Outcome.BUDGET_EXCEEDED: "yellow",
    Outcome.RATE_LIMITED: "yellow",
    Outcome.LOOP_DETECTED: "yellow",
    Outcome.BLOCKED: "red",
    Outcome.ESCALATED: "magenta",
    Outcome.DEFERRED: "magenta",
    Outcome.ERROR: "red",
    Outcome.CONTROL_ERROR: "red",
    Outcome.EMPTY_ANSWER: "red",
}
"""Keyed by outcome; a stored string looks its outcome up (a ``StrEnum`` hashes as its string)."""


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def fmt_cost(usd: float | None) -> str:
    """A cost; ``None`` (a model the pricing table does not know) is shown as unknown, not as
    free."""
    return "unpriced" if usd is None else f"${usd:.6f}"


def brief(text: str, limit: int) -> str:
    """The first line of ``text``, at most ``limit`` characters, cut between words."""
    line = text.strip().split("\n", 1)[0]
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else line[:limit]).rstrip() + "…"


def _error_markup(text: str, limit: int, *, style: str = "red", hint: Any = None) -> str:
    """An error for the tree: its first line (shortened between words) in ``style``, then its
    hint whole on a line of its own (from ``hint``, or a ``hint:`` line of the text)."""
    hints = [h.strip() for h in text.splitlines()[1:] if h.strip().startswith("hint:")]
    if hint:
        hints = [f"hint: {hint}"]
    out = f"[{style}]{escape(brief(text, limit))}[/]"
    return out + "".join(f"\n[dim]{escape(h)}[/]" for h in hints)


def outcome_text(outcome: str | None) -> str:
    label = outcome or "running"
    return f"[{OUTCOME_STYLE.get(label, 'cyan')}]{escape(label)}[/]"


def result_json(result: RunResult, max_chars: int = DEFAULT_MAX_PAYLOAD_CHARS) -> dict[str, Any]:
    """A run's result for ``--json``; the output clipped to ``max_chars``."""
    return {
        "trace_id": result.trace_id,
        "run_id": result.run_id,
        "outcome": result.outcome.value,
        "status": result.status,
        "output": clip_text(result.output, max_chars),
        "stop_reason": result.stop_reason,
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "cached_input_tokens": result.usage.cached_input_tokens,
            "total_tokens": result.usage.total_tokens,
        },
        "cost_usd": json_cost(result.cost_usd),
        "latency_ms": round(result.latency_s * 1000, 3),
        "turns": result.state.turns,
        "tool_calls": result.state.tool_calls,
        "error": result.error,
        "hint": result.hint,
    }


def print_result(
    console: Console, result: RunResult, display_chars: int, *, answer_shown: bool = False
) -> None:
    """A run's answer (clipped to ``display_chars``; left out when ``answer_shown``, streamed
    already) and how it went, for the terminal."""
    if not answer_shown:
        console.print(
            visible(clip_text(result.output, display_chars)), markup=False, highlight=False
        )
    console.print()
    u = result.usage
    console.print(
        f"outcome {outcome_text(result.outcome)}  trace [bold]{escape(result.trace_id)}[/]\n"
        f"tokens {u.input_tokens} in / {u.output_tokens} out  cost {fmt_cost(result.cost_usd)}  "
        f"latency {fmt_ms(result.latency_s * 1000)}  turns {result.state.turns}  "
        f"tool calls {result.state.tool_calls}",
        highlight=False,
    )
    if result.stop_reason:
        # One line: a provider's error text can run to many (the rest is in the trace).
        first, *rest = result.stop_reason.strip().splitlines() or [""]
        why = visible(clip_text(first, display_chars))
        if rest:
            why += f" (+{len(rest)} more line{'s' if len(rest) != 1 else ''}: traces show, --json)"
        console.print(f"why: {why}", style="dim", markup=False, soft_wrap=True)
    if result.hint:
        console.print(f"hint: {visible(result.hint)}", style="dim", markup=False, soft_wrap=True)


def run_view(run: RunRecord) -> dict[str, Any]:
    """A run for ``--json`` (``RunSummary``: the HTTP API prints the same)."""
    from tether.trace.views import RunSummary

    return RunSummary.of(run).model_dump()


def trace_view(trace: Trace) -> dict[str, Any]:
    """A run's trace for ``--json`` (``RunDetail``: the HTTP API prints the same)."""
    from tether.trace.views import RunDetail

    return RunDetail.of(trace).model_dump()


def displayable(value: Any) -> Any:
    """``value`` (text, or attributes nested in dicts and lists) with every string passed
    through :func:`visible`, for the terminal."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(k): displayable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [displayable(v) for v in value]
    return value


def _displayable_record(record: R) -> R:
    """A record read from the store, every text field made safe to print (the text and
    trees below also escape it: this catches what a new field would forget)."""
    return dataclasses.replace(
        record, **{f.name: displayable(getattr(record, f.name)) for f in dataclasses.fields(record)}
    )


TABLE_TEXT_CHARS = 400
"""Characters of each run's input (and output) ``runs_table`` needs: it shows a line of 200."""


def fitting_columns(widths: dict[str, int], dispensable: Sequence[str], room: int) -> list[str]:
    """The columns of a table (``widths``: each one's least width) that fit in ``room``
    characters, dropping those of ``dispensable`` in its order until the rest fit. Rich
    crops a table wider than the terminal at its right edge: on an 80-column terminal the
    runs' cost and latency were cut off, or shown as ``$0.0``."""
    shown = list(widths)
    for column in dispensable:
        if table_width(widths, shown) <= room:
            break
        shown.remove(column)
    return shown


def table_width(widths: dict[str, int], shown: Sequence[str]) -> int:
    """The width of a table of the ``shown`` columns at their ``widths``: a space either
    side of each column, a rule between two."""
    return sum(widths[c] + 2 for c in shown) + len(shown) - 1


def runs_table(runs: list[RunRecord], room: int = 200) -> Table:
    """Runs as a table ``room`` characters wide at most; with a project column only when
    they are of several projects."""
    from rich.table import Table

    runs = [_displayable_record(r) for r in runs]
    projects = len({r.project for r in runs}) > 1
    # expand: the input column takes the width the others leave; without it, a long input
    # squeezed every other column (agent, tokens, cost, latency) to nothing.
    table = Table(show_edge=False, header_style="bold", expand=True)
    # The run id is what `traces show` always takes, exactly: runs of one upstream trace share
    # its trace id (in --json and in `traces show`).
    widths = {"run": 16, "project": 8, "agent": 8, "started (UTC)": 19, "outcome": 15}
    widths.update({"tokens": 6, "cost": 9, "latency": 9, "input": 8})
    if not projects:
        del widths["project"]
    shown = fitting_columns(widths, ("input", "started (UTC)", "tokens", "agent"), room)
    for col in shown:
        if col == "input":
            table.add_column(col, overflow="ellipsis", no_wrap=True, ratio=1)
        elif col == "agent" and "input" not in shown:
            # No input column to give way: the agent's name takes what room is left.
            spare = max(0, room - table_width(widths, shown))
            table.add_column(
                col, overflow="ellipsis", no_wrap=True, min_width=8, max_width=8 + spare
            )
        else:
            table.add_column(col, no_wrap=True, min_width=widths[col])
    for r in runs:
        cells = {
            "run": escape(r.run_id),
            "project": escape(r.project),
            "agent": escape(_who(r)),
            "started (UTC)": fmt_ns(r.started_ns),
            "outcome": outcome_text(r.outcome if r.status != "running" else None),
            "tokens": str(r.input_tokens + r.output_tokens),
            "cost": fmt_cost(run_cost(r)),
            "latency": fmt_ms(r.latency_ms),
            # one line: the table clips it to the terminal's width
            "input": escape(brief(r.input, 200)),
        }
        table.add_row(*(cells[c] for c in shown))
    return table


def _who(run: RunRecord) -> str:
    """The agent of a run; for a run without one (a gateway request), what it was."""
    return run.agent_name if run.agent_name is not None else f"({run.kind})"


def _span_label(s: SpanRecord) -> str:
    a = s.attributes
    parts = [f"[bold]{escape(s.name)}[/]", f"[dim]{fmt_ms(s.duration_ms)}[/]"]
    if semconv.GEN_AI_USAGE_INPUT_TOKENS in a and s.kind == "model":
        tokens_in = a[semconv.GEN_AI_USAGE_INPUT_TOKENS]
        parts.append(f"{tokens_in} in / {a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, 0)} out")
    if s.kind == "model" and semconv.TETHER_COST_USD in a:
        parts.append(fmt_cost(float(a[semconv.TETHER_COST_USD])))
    elif s.kind == "model" and a.get(semconv.TETHER_COST_UNPRICED):
        parts.append(fmt_cost(None))
    if s.kind == "plan" and semconv.TETHER_PLAN_TOOLS in a:
        tools = ", ".join(str(t) for t in a[semconv.TETHER_PLAN_TOOLS])
        parts.append(f"{a.get(semconv.TETHER_PLAN_STEPS, '?')} steps: {escape(tools)}")
    if s.kind == "tool" and a.get(semconv.GEN_AI_TOOL_CALL_ARGUMENTS) not in (None, ""):
        # (an OTLP tool span may carry none: no bare "args" then)
        arguments = _readable_json(str(a[semconv.GEN_AI_TOOL_CALL_ARGUMENTS]))
        parts.append(f"args {escape(brief(arguments, 300))}")
    if s.status == "error":
        message = (s.status_message or "").removeprefix("Error: ")
        parts.append(_error_markup(f"error: {message}", 160))
    return "  ".join(parts)


def _event_label(e: EventRecord) -> str:
    a = e.attributes
    if e.name == semconv.EVENT_CONTROL_DECISION:
        verdict = a.get(semconv.TETHER_DECISION, "?")
        style = "green" if verdict == "allow" else "yellow" if verdict == "modify" else "red"
        control = escape(str(a.get(semconv.TETHER_CONTROL_NAME)))
        reason = escape(str(a.get(semconv.TETHER_DECISION_REASON) or ""))
        return (
            f"[{style}]◆ {control} {escape(str(verdict))}[/] "
            f"at {escape(str(a.get(semconv.TETHER_CONTROL_HOOK)))}"
            + (f": {reason}" if reason else "")
        )
    message = a.get("message")
    if message:
        return f"[yellow]◆ {escape(e.name)}[/]: " + _error_markup(
            str(message), 160, style="default", hint=a.get("hint")
        )
    detail = ", ".join(f"{k}={v}" for k, v in a.items())
    return f"[yellow]◆ {escape(e.name)}[/]: {escape(brief(detail, 160))}"


def _readable_json(text: str) -> str:
    """JSON text with ``\\u4e16``-style escapes (traces stored before arguments were kept as
    characters) shown as the characters."""
    if "\\u" not in text:
        return text
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except (ValueError, RecursionError):  # (JSON nested past Python's stack: shown as text)
        return text


def _run_error_markup(error: str, display_chars: int) -> str:
    """A failed run's error, whole (clipped to ``display_chars``), with its hint lines dim."""
    lines = error.splitlines()
    hints = [line.strip() for line in lines if line.strip().startswith("hint:")]
    message = "\n".join(line for line in lines if not line.strip().startswith("hint:"))
    out = f"[bold red]error:[/] [red]{escape(clip_text(message, display_chars))}[/]"
    return out + "".join(f"\n[dim]{escape(h)}[/]" for h in hints)


MAX_TREE_DEPTH = 16
"""Deepest span ``traces show`` indents; deeper ones are shown at this depth, with their own
(a terminal has no room for more, and rich drops what does not fit without a word)."""


def trace_tree(
    run: RunRecord,
    spans: list[SpanRecord],
    events: list[EventRecord],
    display_chars: int = 8_000,
    max_spans: int = 0,
) -> Tree:
    """One run's trace as a tree; why it failed, if it did, right under the heading.

    ``max_spans`` (0: no limit) caps the spans drawn, in tree order: a trace of 30,000 spans
    is not 30,000 lines. What the cap hides is counted in a last line, and its failed spans
    and non-allow decisions are still listed under it (up to ``NOTABLE_BELOW_CUT``)."""
    from rich.tree import Tree

    run = _displayable_record(run)
    head = (
        f"[bold]trace {escape(run.trace_id)}[/] run {escape(run.run_id)}  "
        f"{escape(_who(run))}{'@' + escape(run.agent_version[:8]) if run.agent_version else ''}  "
        f"{outcome_text(run.outcome if run.status != 'running' else None)}  "
        f"{fmt_ms(run.latency_ms)}  {run.input_tokens} in / {run.output_tokens} out  "
        f"{fmt_cost(run_cost(run, spans))}"
    )
    if run.error:
        head += "\n" + _run_error_markup(run.error, display_chars)
    tree = Tree(head)
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for s in spans:
        children[s.parent_id].append(s)
    by_span: dict[str | None, list[EventRecord]] = defaultdict(list)
    for e in events:
        by_span[e.span_id].append(e)
    known = {s.span_id for s in spans}

    def items_under(span: SpanRecord) -> list[SpanRecord | EventRecord | str]:
        items: list[tuple[int, SpanRecord | EventRecord | str]] = [
            (c.start_ns, c) for c in children.get(span.span_id, [])
        ]
        kept, more = _capped_events(by_span.get(span.span_id, []))
        items += [(e.time_ns, e) for e in kept]
        ordered = [item for _, item in sorted(items, key=lambda x: x[0])]
        return ordered + ([more] if more else [])

    # Labels are made (and their text made safe) only for what is drawn.
    def span_label(s: SpanRecord) -> str:
        return _span_label(_displayable_record(s))

    def event_label(e: EventRecord) -> str:
        return _event_label(_displayable_record(e))

    hidden = 0
    notable: list[str] = []
    listed = 0  # lines past the cut: a span or a decision each, at most NOTABLE_BELOW_CUT

    def note_hidden(span: SpanRecord) -> None:
        nonlocal hidden, listed
        hidden += 1
        if listed >= NOTABLE_BELOW_CUT:
            return
        flagged = [e for e in by_span.get(span.span_id, []) if _is_notable_event(e)]
        if span.status != "error" and not flagged:
            return
        room = max(NOTABLE_BELOW_CUT - listed - 1, 0)
        line = span_label(span) + "".join(f"\n    {event_label(e)}" for e in flagged[:room])
        if len(flagged) > room:
            line += f"\n    [yellow]… {len(flagged) - room:,} more decisions and errors[/]"
        notable.append(line)
        listed += 1 + min(len(flagged), room)

    # A span whose parent never closed (the process died mid-run) is shown at the top; so is
    # one whose parents form a cycle (reached from no root), so that every span shows.
    # When no span is a root (every parent is known: they all sit on cycles), the first span
    # starts; after each pass the first span not yet reached does (one index, not a list
    # filtered again each pass: a trace of many small cycles stays linear).
    roots = [s for s in spans if s.parent_id not in known] or spans[:1]
    shown: set[str] = set()
    unreached = 0
    while roots:
        # Depth first without recursion: a trace may be nested thousands of spans deep.
        stack: list[tuple[Tree | None, int, SpanRecord | EventRecord | str]] = [
            (tree, 1, r) for r in reversed(roots)
        ]
        while stack:
            node, depth, item = stack.pop()
            if isinstance(item, str):  # events past a span's cap, counted
                if node is not None:
                    node.add(item)
                continue
            if isinstance(item, EventRecord):
                if node is not None:
                    node.add(event_label(item))
                continue
            if item.span_id in shown:
                continue
            drawn = len(shown) - hidden
            shown.add(item.span_id)
            if node is None or (max_spans and drawn >= max_spans):
                note_hidden(item)
                stack.extend((None, depth + 1, i) for i in reversed(items_under(item)))
                continue
            label = span_label(item)
            if depth > MAX_TREE_DEPTH:  # no room left to indent: said, not silently cut off
                label = f"[dim](nested {depth} deep)[/] {label}"
            branch = node.add(label)
            below = (branch, depth + 1) if depth < MAX_TREE_DEPTH else (node, depth + 1)
            stack.extend((*below, i) for i in reversed(items_under(item)))
        while unreached < len(spans) and spans[unreached].span_id in shown:
            unreached += 1
        roots = spans[unreached : unreached + 1]
    # Events whose span never closed (a crash) still show.
    orphans, more = _capped_events([e for e in events if e.span_id not in known])
    for e in orphans:
        tree.add(event_label(e))
    if more:
        tree.add(more)
    if hidden:
        more = (
            f"[yellow]… {hidden:,} more spans not drawn ({len(spans):,} in all)[/]: "
            "--max-spans 0 draws every one, --json prints them all, the web UI folds them"
        )
        if notable:
            more += f"; below the cut, failed spans and non-allow decisions ({len(notable)}"
            more += " shown):" if listed >= NOTABLE_BELOW_CUT else "):"
        tree.add(more)
        for line in notable:
            tree.add(line)
    if run.status == "running":
        tree.add("[yellow]run has not finished (still running, or the process died)[/]")
    return tree


MAX_EVENTS_PER_SPAN = 100
"""Events ``traces show`` draws under one span (its non-allow decisions and errors first);
the rest are counted in one line (``--json`` has them all)."""


def _capped_events(events: list[EventRecord]) -> tuple[list[EventRecord], str | None]:
    """At most ``MAX_EVENTS_PER_SPAN`` of ``events`` in time order, the notable ones kept
    first, and the line that counts the rest (None when none is left out)."""
    if len(events) <= MAX_EVENTS_PER_SPAN:
        return events, None
    notable = [e for e in events if _is_notable_event(e)]
    kept = notable[:MAX_EVENTS_PER_SPAN]
    if len(kept) < MAX_EVENTS_PER_SPAN:
        chosen = {id(e) for e in kept}
        rest = [e for e in events if id(e) not in chosen]
        kept += rest[: MAX_EVENTS_PER_SPAN - len(kept)]
    kept.sort(key=lambda e: e.time_ns)
    left = len(events) - len(kept)
    flagged = len(notable) - min(len(notable), MAX_EVENTS_PER_SPAN)
    also = f", {flagged:,} of them decisions other than allow or errors" if flagged else ""
    return kept, f"[yellow]… {left:,} more events here{also}[/]: --json prints them all"


NOTABLE_BELOW_CUT = 50
"""Lines listed below a ``--max-spans`` cut: failed spans and their non-allow decisions (and
errors), one line each; a span's decisions past it are counted, not listed."""


def _is_notable_event(e: EventRecord) -> bool:
    """A decision other than allow, or an event that reports a problem."""
    if e.name == semconv.EVENT_CONTROL_DECISION:
        return e.attributes.get(semconv.TETHER_DECISION) != "allow"
    return bool(e.attributes.get("message"))


def print_trace(
    console: Console,
    run: RunRecord,
    spans: list[SpanRecord],
    events: list[EventRecord],
    display_chars: int,
    max_spans: int = 0,
) -> None:
    """``traces show``: the tree (at most ``max_spans`` spans drawn, 0: all), then the run's
    input and output (clipped to ``display_chars``; ``--json`` has them as stored)."""
    console.print(trace_tree(run, spans, events, display_chars, max_spans))
    shown = visible(clip_text(run.input, display_chars)) if run.input else "(empty)"
    console.print(f"input:  {shown}", markup=False, highlight=False)
    if run.output is not None:
        output = visible(clip_text(run.output, display_chars))
        console.print(f"output: {output}", markup=False, highlight=False)


def dumps_array(values: Iterable[Any]) -> Iterator[str]:
    """``dumps(list(values))`` in pieces, one value at a time (the same text)."""
    empty = True
    for value in values:
        yield ("[\n" if empty else ",\n") + textwrap.indent(dumps(value), "  ")
        empty = False
    yield "[]" if empty else "\n]"


def dumps_page(runs: Iterable[Any], total: int | None, next_cursor: str | None) -> Iterator[str]:
    """``dumps`` of a page of runs (``RunPage``) in pieces, one run at a time (the same
    text): thousands of whole inputs and outputs are never all in memory at once."""
    yield '{\n  "runs": '
    for chunk in dumps_array(runs):
        yield chunk.replace("\n", "\n  ")  # JSON text has no raw newline inside a string
    yield ",\n" + dumps({"total": total, "next_cursor": next_cursor}).removeprefix("{\n")


def dumps(value: Any) -> str:
    """JSON for ``--json``: the exact text, with the characters JSON leaves raw but a terminal
    would obey escaped (see ``json_safe``)."""
    return json_safe(json.dumps(value, indent=2, ensure_ascii=False, default=str))
