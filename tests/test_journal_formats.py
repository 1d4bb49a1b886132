"""Golden crash journals (on-disk format version 1) as each Tether wrote them: replayed into
today's store, by a writer or by a command that only reads, their records keep every field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tether.store import RunQuery, Store
from tether.trace import BatchingWriter
from tether.trace.journal import RUN_END, RUN_START, orphaned_segments
from tether.trace.recovery import deliver_orphans

FIXTURES = Path(__file__).parent / "fixtures"
BEFORE_RUN_SCOPE = "trace_journal_v1_before_run_scope.journal"
"""Runs with ids, but no project, kind, entry point or caller (revision 0002's Tether)."""
RUN_SCOPE = "trace_journal_v1_run_scope.journal"
"""Runs with a project, kind, entry point and caller, and one without an agent."""


def _with_writer(store: Store, directory: Path) -> int:
    writer = BatchingWriter(store, journal=directory)
    assert writer.flush(timeout=30)
    writer.close()
    assert writer.dropped == 0
    return writer.replayed


def _by_reading(store: Store, directory: Path) -> int:
    return deliver_orphans(directory, store)


REPLAYS: dict[str, Callable[[Store, Path], int]] = {
    "writer": _with_writer,
    "reader": _by_reading,
}


def _dead_writers_journal(tmp_path: Path, fixture: str, writer_id: str) -> Path:
    directory = tmp_path / "journal"
    directory.mkdir()
    shutil.copy(FIXTURES / fixture, directory / f"{writer_id}-00000001.journal")
    return directory


def _ids(store: Store, **filters: object) -> list[str]:
    return [r.run_id for r in store.find_runs(RunQuery(**filters)).runs]  # type: ignore[arg-type]


@pytest.mark.parametrize("replay", REPLAYS)
def test_a_journal_from_before_runs_had_a_project_replays(
    tmp_path: Path, store_url: str, replay: str
) -> None:
    directory = _dead_writers_journal(tmp_path, BEFORE_RUN_SCOPE, "20511-5b0c7e21")
    store = Store(store_url)
    try:
        assert REPLAYS[replay](store, directory) == 8
        done, crashed = store.get_run("9a1c2b3d4e5f6a7b"), store.get_run("ab2d3c4e5f6a7b8c")
        for run in (done, crashed):
            assert (run.project, run.kind, run.entry_point, run.caller) == (
                "default",
                "agent_run",
                "runtime",
                None,
            )
            assert (run.agent_name, run.agent_version) == ("support", "3f2a9c1e")
        assert (done.status, done.output, done.input_tokens) == ("completed", "on its way", 12)
        trace = store.get_trace(done.run_id)
        assert [s.kind for s in trace.spans] == ["agent", "model"]
        assert [e.name for e in trace.events] == ["tether.control.decision"]
        assert [c.reason for c in store.get_checkpoints(done.run_id)] == ["final"]
        # Its writer is gone: the run it left running is closed, from its spans.
        assert crashed.status == "failed" and "pid 20511" in (crashed.error or "")
        assert crashed.input_tokens == 7
        assert _ids(store, model="gpt-4.1-mini") == [done.run_id]
        assert _ids(store, model="gpt-4.1-nano") == [crashed.run_id]
        assert list(directory.glob("*.journal")) == []  # delivered, deleted
    finally:
        store.close()


@pytest.mark.parametrize("replay", REPLAYS)
def test_a_journal_of_runs_with_a_caller_replays(
    tmp_path: Path, store_url: str, replay: str
) -> None:
    directory = _dead_writers_journal(tmp_path, RUN_SCOPE, "30822-7d2e9043")
    store = Store(store_url)
    try:
        assert REPLAYS[replay](store, directory) == 6
        run = store.get_run("c3e4d5f6a7b8c9d0")
        assert (run.agent_name, run.agent_version) == (None, None)
        assert (run.project, run.kind, run.entry_point) == (
            "acme",
            "model_request",
            "model_gateway",
        )
        assert run.caller == {
            "project": "acme",
            "key_id": "key_1",
            "end_user": "user-42",
            "roles": ["developer"],
            "scopes": ["orders:read"],
        }
        assert (run.status, run.outcome, run.output) == ("completed", "final_answer", "hi there")
        trace = store.get_trace(run.run_id)
        assert [s.name for s in trace.spans] == [
            "model_request",
            "chat gpt-4.1-mini",
            "chat claude-fallback",
        ]
        assert [e.name for e in trace.events] == ["tether.model.fallback"]
        for model in ("gpt-4.1-mini", "claude-fallback"):
            assert _ids(store, model=model) == [run.run_id]
        assert _ids(store, project="acme", kind="model_request") == [run.run_id]
        assert _ids(store, entry_point="runtime") == []
    finally:
        store.close()


def test_the_journal_format_reads_the_fields_each_version_wrote(tmp_path: Path) -> None:
    """Decoded without a store: an older header lacks the new fields, which get defaults."""
    for fixture, writer_id, project in (
        (BEFORE_RUN_SCOPE, "20511-5b0c7e21", "default"),
        (RUN_SCOPE, "30822-7d2e9043", "acme"),
    ):
        directory = tmp_path / fixture
        directory.mkdir()
        shutil.copy(FIXTURES / fixture, directory / f"{writer_id}-00000001.journal")
        segments = orphaned_segments(directory)
        segment, items = next(segments)
        runs = [record for op, record in items if op in (RUN_START, RUN_END)]
        assert runs and {r.project for r in runs} == {project}  # type: ignore[union-attr]
        segment.release()
        segments.close()
