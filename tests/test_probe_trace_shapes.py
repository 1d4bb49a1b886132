"""``traces show`` on traces of unusual shapes, as a store may hold them (spans nested very
deep, spans whose parents form a cycle): every span is shown, and the command does not crash."""

from __future__ import annotations

import os
import subprocess
import sys

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunRecord, SpanRecord, Store, TraceBatch


def _store_run(url: str, parents: list[int | None]) -> str:
    """A run with one span per entry of ``parents`` (the index of its parent span, None for
    the run's root), named ``span <index>``."""
    trace_id, run_id, start = new_trace_id(), new_span_id(), now_ns()
    ids = [new_span_id() for _ in parents]
    batch = TraceBatch()
    batch.runs_started.append(RunRecord(trace_id, "shapes", "v1", start, run_id=run_id))
    for i, parent in enumerate(parents):
        parent_id = run_id if parent is None else ids[parent]
        batch.spans.append(
            SpanRecord(
                trace_id, ids[i], parent_id, f"span {i}", "tool", start + i, start + i + 1,
                run_id=run_id,
            )
        )  # fmt: skip
    Store(url).write(batch)
    return run_id


def _show(url: str, run_id: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", url, "traces", "show", run_id, *options],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},  # wide enough for a label at the deepest indent
    )


def test_a_trace_nested_thousands_deep_is_shown(sqlite_url: str) -> None:
    depth = 3000
    run_id = _store_run(sqlite_url, [None, *range(depth - 1)])
    shown = _show(sqlite_url, run_id, "--max-spans", "0")  # all: 2,000 by default
    assert shown.returncode == 0, shown.stderr
    # The deepest spans are shown (not cut off past the terminal's width), with their depth.
    assert f"(nested {depth} deep) span {depth - 1} " in shown.stdout
    assert all(f"span {i} " in shown.stdout for i in range(depth))


def test_spans_whose_parents_form_a_cycle_are_still_shown(sqlite_url: str) -> None:
    # span 1 and span 2 are each other's parent: no path leads to them from the run's root.
    run_id = _store_run(sqlite_url, [None, 2, 1])
    shown = _show(sqlite_url, run_id)
    assert shown.returncode == 0, shown.stderr
    assert all(f"span {i} " in shown.stdout for i in range(3)), shown.stdout


def test_a_trace_whose_every_span_sits_on_a_cycle_is_still_shown(sqlite_url: str) -> None:
    # No span has an unknown parent (0 -> 1 -> 2 -> 0, 3 <-> 4): there is no root to start
    # from, and every span must still be drawn, not an empty tree.
    run_id = _store_run(sqlite_url, [1, 2, 0, 4, 3])
    shown = _show(sqlite_url, run_id)
    assert shown.returncode == 0, shown.stderr
    assert all(f"span {i} " in shown.stdout for i in range(5)), shown.stdout
    capped = _show(sqlite_url, run_id, "--max-spans", "2")
    assert "3 more spans not drawn (5 in all)" in capped.stdout, capped.stdout


def test_the_list_past_the_cut_is_bounded_however_many_decisions_a_span_holds(
    sqlite_url: str,
) -> None:
    # One hidden span with 3,000 block decisions: the list past --max-spans named every one
    # (3,000 lines under a cap meant to keep the output to a screenful).
    from tether.cli.render import NOTABLE_BELOW_CUT
    from tether.store import EventRecord
    from tether.trace import semconv

    trace_id, run_id, start = new_trace_id(), new_span_id(), now_ns()
    ids = [new_span_id() for _ in range(3)]
    batch = TraceBatch()
    batch.runs_started.append(RunRecord(trace_id, "shapes", "v1", start, run_id=run_id))
    for i, span_id in enumerate(ids):
        batch.spans.append(
            SpanRecord(
                trace_id, span_id, run_id, f"span {i}", "tool", start + i, start + i + 1,
                run_id=run_id,
            )
        )  # fmt: skip
    for n in range(3000):
        decision = {
            semconv.TETHER_CONTROL_NAME: "authz.cedar",
            semconv.TETHER_DECISION: "block",
            semconv.TETHER_DECISION_REASON: f"refused {n}",
        }
        batch.events.append(
            EventRecord(
                trace_id, ids[2], semconv.EVENT_CONTROL_DECISION, start + 2, decision,
                run_id=run_id,
            )
        )  # fmt: skip
    Store(sqlite_url).write(batch)
    shown = _show(sqlite_url, run_id, "--max-spans", "1")
    assert shown.returncode == 0, shown.stderr
    past_cut = shown.stdout.split("more spans not drawn")[1]
    assert "span 2 " in past_cut and "refused 0" in past_cut  # the span and its first ones
    assert past_cut.count("refused ") < NOTABLE_BELOW_CUT
    assert "more decisions" in past_cut


def test_a_tool_span_without_arguments_and_a_decision_without_reason_draw_no_dangling_labels(
    sqlite_url: str,
) -> None:
    """An OTLP tool span need not carry arguments, nor a decision a reason: the tree drew a
    bare ``args`` and a ``: `` with nothing after it."""
    from tether.store import EventRecord
    from tether.trace import semconv

    trace_id, run_id, span_id, start = new_trace_id(), new_span_id(), new_span_id(), now_ns()
    batch = TraceBatch()
    batch.runs_started.append(RunRecord(trace_id, "shapes", "v1", start, run_id=run_id))
    batch.spans.append(
        SpanRecord(trace_id, span_id, run_id, "lookup", "tool", start, start + 1, run_id=run_id)
    )
    decision = {
        semconv.TETHER_CONTROL_NAME: "guard.pii",
        semconv.TETHER_CONTROL_HOOK: "before_tool",
        semconv.TETHER_DECISION: "allow",
    }
    batch.events.append(
        EventRecord(
            trace_id, span_id, semconv.EVENT_CONTROL_DECISION, start, decision, run_id=run_id
        )
    )
    Store(sqlite_url).write(batch)
    shown = _show(sqlite_url, run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("lookup " in line for line in lines), shown.stdout
    assert not any(line.rstrip().endswith((" args", ":")) for line in lines), shown.stdout
    assert any(line.rstrip().endswith("guard.pii allow at before_tool") for line in lines)
