"""The dashboards' figures counted by the database (``metrics_sql``) are the ones the Python
reference (``metrics_reference``: every run row read and counted) gives, on a real SQLite file
and the real PostgreSQL, over varied runs, ranges and project sets."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fakes.dashboard_runs import write_runs
from fakes.stored_runs import add_run
from tether.server import metrics_reference, metrics_sql
from tether.store import Store

HOUR_NS = 3600 * 1_000_000_000


def same(got: Any, want: Any, where: str = "") -> None:
    """Equal, floats to 1e-9 relative (sums may add in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


@pytest.fixture
def seeded(store_url: str) -> tuple[str, int]:
    store = Store(store_url)
    now = time.time_ns()
    start = now - 48 * HOUR_NS
    write_runs(store, 1500, start_ns=start, span_ns=48 * HOUR_NS)
    store.close()
    return store_url, now


@pytest.mark.parametrize(
    ("hours_back", "hours", "projects"),
    [
        (48, 48, None),  # everything, every project
        (24, 24, ["default"]),  # one project, the last day
        (48, 6, ["acme", "beta"]),  # two projects, six hours two days ago
        (5, 1, ["default"]),  # an hour: minute buckets
        (49, 0.01, None),  # a range with no runs
        (200, 180, ["nope"]),  # a project without runs
    ],
)
def test_database_figures_equal_the_python_reference(
    seeded: tuple[str, int], hours_back: float, hours: float, projects: list[str] | None
) -> None:
    url, now = seeded
    since = now - int(hours_back * HOUR_NS)
    until = since + int(hours * HOUR_NS)
    store = Store(url)
    try:
        got = metrics_sql.compute(store.engine, projects, since, until).model_dump()
        want = metrics_reference.compute(store.engine, projects, since, until).model_dump()
    finally:
        store.close()
    same(got, want)
    if hours_back == 48 and hours == 48:
        # The data exercise what the figures are about, so the equality means something.
        assert want["totals"]["requests"] == 1500
        assert want["totals"]["unpriced"] > 0 and want["totals"]["error_rate"] > 0
        assert {"running", "paused", "error", "final_answer"} <= set(want["outcomes"])
        assert set(want["error_categories"]) == {
            "blocked",
            "fallback",
            "limit",
            "model_error",
            "run_error",
            "tool_error",
        }
        keys = {b["key"] for b in want["by_model"]}
        assert "(none)" in keys and "gpt-4o" in keys
        # Two versions share their first 12 characters: one group, as the reference says.
        versions = {b["key"] for b in want["by_version"]}
        assert "support v2bbbbbbbbbb" in versions and "(none) (none)" in versions
        assert len(want["times"]) > 1 and want["totals"]["p99_ms"] is not None


def test_a_lone_run_and_ties(store_url: str) -> None:
    """One ended run: every percentile is its latency; runs not ended have none."""
    store = Store(store_url)
    now = time.time_ns()
    write_runs(store, 1, start_ns=now - HOUR_NS, span_ns=1, seed=3)
    try:
        got = metrics_sql.compute(store.engine, None, now - 2 * HOUR_NS, now).model_dump()
        want = metrics_reference.compute(store.engine, None, now - 2 * HOUR_NS, now).model_dump()
    finally:
        store.close()
    same(got, want)


def test_figures_agree_while_runs_are_written(store_url: str) -> None:
    """One snapshot: runs written by another connection between two statements of a
    computation are in none of its figures or in all of them (its runs, its model, its
    error category)."""
    from sqlalchemy import event

    store, other = Store(store_url), Store(store_url)
    now = time.time_ns()
    since = now - 2 * HOUR_NS
    # ids far from those add_run gives
    write_runs(store, 300, start_ns=now - HOUR_NS, span_ns=HOUR_NS // 2, first_id=10**9)
    before = metrics_sql.compute(store.engine, None, since, now)
    written = 0

    def write_between(*_args: object) -> None:
        """Before each statement of the computation: one more run."""
        nonlocal written
        late = {"project": "late", "model": "late-model", "tool_error": True}
        add_run(other, started_ns=now - HOUR_NS // 4, **late)  # type: ignore[arg-type]
        written += 1

    event.listen(store.engine, "before_cursor_execute", write_between)
    try:
        counted = []
        for _ in range(3):
            m = metrics_sql.compute(store.engine, None, since, now)
            late = {b.key: b.requests for b in m.by_project}.get("late", 0)
            assert m.totals.requests == before.totals.requests + late
            assert {b.key: b.requests for b in m.by_model}.get("late-model", 0) == late
            tool_errors = m.error_categories.get("tool_error", 0)
            assert tool_errors == before.error_categories.get("tool_error", 0) + late
            counted.append((late, written))
    finally:
        event.remove(store.engine, "before_cursor_execute", write_between)
        store.close()
        other.close()
    # Runs were written while it counted: some after the snapshot was taken.
    assert any(late < done for late, done in counted), counted
