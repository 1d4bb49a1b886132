"""A run that starts and ends in one batch is inserted as its end leaves it: the same row as
a start in one batch and the end in the next (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunRecord, Store, TraceBatch, tables


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _start(**kw: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "trace_id": new_trace_id(),
        "run_id": new_span_id(),
        "agent_name": "support",
        "agent_version": "v1",
        "started_ns": now_ns(),
        "input": "Where is my\x00 order? \ud800",
        "attributes": {"tether.paradigm": "react", "tether.writer_id": "1-ab"},
        "project": "shop",
        "kind": "agent_run",
        "entry_point": "runtime",
        "caller": {"project": "shop", "end_user": "u1"},
    }
    fields.update(kw)
    return RunRecord(**fields)


def _end(start: RunRecord, **kw: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "trace_id": start.trace_id,
        "run_id": start.run_id,
        "agent_name": start.agent_name,
        "agent_version": start.agent_version,
        "started_ns": start.started_ns,
        # the input as the run's controls left it: the end's wins (a redaction is kept)
        "input": "masked input",
        "status": "completed",
        "outcome": "final_answer",
        "output": "Shipped\x00 today \udfff",
        "ended_ns": start.started_ns + 5_000,
        "input_tokens": 12,
        "output_tokens": 7,
        "cached_input_tokens": 3,
        "cost_usd": 0.00042,
        "turns": 2,
        "tool_calls": 1,
        "error": None,
        "attributes": {**start.attributes, "stop_reason": "done"},
        "project": start.project,
        "kind": start.kind,
        "entry_point": start.entry_point,
        "caller": start.caller,
    }
    fields.update(kw)
    return RunRecord(**fields)


def _row(store: Store, run_id: str) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(tables.runs).where(tables.runs.c.run_id == run_id)).one()
    return dict(row._mapping)


def test_a_run_started_and_ended_in_one_batch_is_the_row_of_two_batches(store: Store) -> None:
    apart, together = _start(), _start()
    store.write(TraceBatch(runs_started=[apart]))
    store.write(TraceBatch(runs_ended=[_end(apart)]))
    store.write(TraceBatch(runs_started=[together], runs_ended=[_end(together)]))
    expected = _row(store, apart.run_id)
    got = _row(store, together.run_id)
    for key in ("run_id", "trace_id", "started_ns", "ended_ns", "run_seq"):
        expected.pop(key), got.pop(key)
    assert got == expected
    assert got["status"] == "completed" and got["input"] == "masked input"
    assert "\x00" not in got["output"]


def test_runs_ended_twice_or_started_earlier_in_a_mixed_batch(store: Store) -> None:
    """The last end of a run wins (as two updates would); an end whose start was written
    before is still an update; a run without its end stays running."""
    earlier, twice, running = _start(), _start(), _start()
    store.write(TraceBatch(runs_started=[earlier]))
    store.write(
        TraceBatch(
            runs_started=[twice, running],
            runs_ended=[
                _end(twice, status="paused", outcome="escalated"),
                _end(earlier, output="earlier's end"),
                _end(twice, output="resumed and done"),
            ],
        )
    )
    assert _row(store, earlier.run_id)["output"] == "earlier's end"
    last = _row(store, twice.run_id)
    assert (last["status"], last["outcome"], last["output"]) == (
        "completed",
        "final_answer",
        "resumed and done",
    )
    assert _row(store, running.run_id)["status"] == "running"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "completed",
        "x" * 40,  # clipped
        "nul\x00inside",
        "x" * 15 + "\x00" + "y" * 10,  # the NUL is clipped away
        "café ☕",
        "lone \ud800 surrogate",
        "é" * 15 + "\ud800",  # the surrogate is clipped away
        "ok \x00 and \udfff",
    ],
)
def test_column_text_is_clean_text_of_the_clipped_value(value: str | None) -> None:
    """The write path's one-call form of ``clean_text(fit(value, length))``."""
    from tether.store.values import clean_text, column_text, fit

    assert column_text(value, 16) == clean_text(fit(value, 16))


def test_an_end_stating_no_input_keeps_the_starts(store: Store) -> None:
    """An end that states no input (OTLP's, a run whose root carried none at its end) leaves
    the start's, whether written apart (the UPDATE) or together (one INSERT)."""
    apart, together = _start(input="the question"), _start(input="the question")
    store.write(TraceBatch(runs_started=[apart]))
    store.write(TraceBatch(runs_ended=[_end(apart, input="")]))
    store.write(TraceBatch(runs_started=[together], runs_ended=[_end(together, input="")]))
    assert _row(store, apart.run_id)["input"] == "the question"
    assert _row(store, together.run_id)["input"] == "the question"
