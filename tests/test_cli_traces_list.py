"""``tether traces list`` with filters and pages, and ``traces show``, through click in-process
(and the real command for what a terminal shows): the same JSON shapes as the read side's
views, bad values as usage errors naming their option, and no trace writer started to read."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fakes.cli import run_cli
from tether.cli import cli
from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunQuery, RunRecord, SpanRecord, Store, TraceBatch

HOUR = 3_600 * 10**9
FIXTURES = Path(__file__).parent / "fixtures"
OLD_RUN_KEYS = {
    "trace_id", "run_id", "agent", "agent_version", "status", "outcome", "input", "output",
    "started", "latency_ms", "input_tokens", "output_tokens", "cached_input_tokens",
    "cost_usd", "turns", "tool_calls", "error", "attributes",
}  # fmt: skip
"""The keys of a run in ``traces list --json`` before the read side: all still there."""


def _dead_writers_journal(url: str) -> Path:
    """The store's journal folder, holding the golden journal of a writer that died."""
    from tether.trace.recorder import journal_for

    directory = journal_for(url)
    assert directory is not None
    directory.mkdir(parents=True)
    shutil.copy(
        FIXTURES / "trace_journal_v1_before_run_scope.journal",
        directory / "20511-5b0c7e21-00000001.journal",
    )
    return directory


def _tether(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--database-url", url, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _run(
    agent: str | None,
    started_ns: int,
    *,
    models: tuple[str, ...] = ("gpt-4.1-mini",),
    **kw: Any,
) -> tuple[RunRecord, list[SpanRecord]]:
    run = RunRecord(
        new_trace_id(),
        agent,
        None if agent is None else f"{agent}-version-hash",
        started_ns,
        run_id=new_span_id(),
        input=f"input of {agent}",
        **kw,
    )
    spans = [
        SpanRecord(
            run.trace_id, new_span_id(), run.run_id, f"chat {m}", "model", started_ns + 1,
            started_ns + 2, attributes={"gen_ai.request.model": m}, run_id=run.run_id,
        )
        for m in models
    ]  # fmt: skip
    return run, spans


@pytest.fixture
def runs(sqlite_url: str) -> Iterator[dict[str, RunRecord]]:
    """Runs 3 hours, 30 minutes and 10 minutes old, and two made long ago."""
    now = now_ns()
    made = {
        "old-support": _run("support", now - 3 * HOUR, status="completed", outcome="final_answer"),
        "billing": _run(
            "billing", now - HOUR // 2, status="failed", outcome="error", models=("big", "small")
        ),
        "gateway": _run(
            None,
            now - HOUR // 6,
            status="completed",
            outcome="blocked",
            project="acme",
            kind="model_request",
            entry_point="model_gateway",
            models=("small",),
        ),
        "jan-1": _run("support", 1_767_225_600_000_000_000, status="running"),
        "jan-2": _run("support", 1_767_312_000_000_000_000, status="paused", outcome="escalated"),
    }
    store = Store(sqlite_url)
    store.write(
        TraceBatch(
            runs_started=[r for r, _ in made.values()],
            spans=[s for _, spans in made.values() for s in spans],
        )
    )
    store.close()
    yield {name: run for name, (run, _) in made.items()}


def _listed(url: str, *args: str) -> list[str]:
    code, out, err = _tether(url, "traces", "list", "--json", *args)
    assert code == 0, (out, err)
    return [r["run_id"] for r in json.loads(out)["runs"]]


def test_each_flag_filters(sqlite_url: str, runs: dict[str, RunRecord]) -> None:
    ids = {name: run.run_id for name, run in runs.items()}
    everything = ["gateway", "billing", "old-support", "jan-2", "jan-1"]
    cases: list[tuple[tuple[str, ...], list[str]]] = [
        ((), everything),
        (("--status", "failed"), ["billing"]),
        (("--status", "running", "--status", "paused"), ["jan-2", "jan-1"]),
        (("--outcome", "blocked"), ["gateway"]),
        (("--agent", "support"), ["old-support", "jan-2", "jan-1"]),
        (("--version", "billing-ver"), ["billing"]),
        (("--model", "small"), ["gateway", "billing"]),
        (("--model", "big"), ["billing"]),
        (("--project", "acme"), ["gateway"]),
        (("--project", "default"), ["billing", "old-support", "jan-2", "jan-1"]),
        (("--since", "1h"), ["gateway", "billing"]),
        (("--since", "20m"), ["gateway"]),
        (("--until", "1h"), ["old-support", "jan-2", "jan-1"]),
        (("--since", "2026-01-01T12:00:00"), ["gateway", "billing", "old-support", "jan-2"]),
        (("--since", "2026-01-01", "--until", "2026-01-02T00:00:00+00:00"), ["jan-1"]),
        (("--since", "2026-01-01T01:00:00+01:00", "--until", "2026-01-01T00:00:01Z"), ["jan-1"]),
        (("--since", "1w", "--model", "small", "--outcome", "error"), ["billing"]),
        (("--agent", "support", "--project", "acme"), []),
        (("-n", "2"), ["gateway", "billing"]),
        # Times beyond what the store's columns hold are their ends, not an error.
        (("--since", "0001-01-01", "--until", "9999-12-31T23:59:59"), everything),
    ]
    for args, expected in cases:
        assert _listed(sqlite_url, *args) == [ids[n] for n in expected], args


def test_json_pages_cover_every_run_once(sqlite_url: str, runs: dict[str, RunRecord]) -> None:
    code, out, _ = _tether(sqlite_url, "traces", "list", "--json", "-n", "2")
    page = json.loads(out)
    assert list(page) == ["runs", "total", "next_cursor"]
    assert page["total"] == 5 and page["next_cursor"]
    assert set(page["runs"][0]) >= OLD_RUN_KEYS
    seen = [r["run_id"] for r in page["runs"]]
    while page["next_cursor"]:
        code, out, _ = _tether(
            sqlite_url, "traces", "list", "--json", "-n", "2", "--cursor", page["next_cursor"]
        )
        assert code == 0
        page = json.loads(out)
        assert page["total"] == 5
        seen += [r["run_id"] for r in page["runs"]]
    assert seen == _listed(sqlite_url) and len(set(seen)) == 5


def test_the_table_says_how_to_read_on(sqlite_url: str, runs: dict[str, RunRecord]) -> None:
    code, out, err = _tether(sqlite_url, "traces", "list", "-n", "3")
    assert code == 0
    assert len(out.strip().splitlines()) == 2 + 3  # header, rule, three runs
    assert "3 of 5 runs" in err
    cursor = err.split("--cursor", 1)[1].split()[0]
    code, out, err = _tether(sqlite_url, "traces", "list", "-n", "3", "--cursor", cursor)
    assert code == 0 and len(out.strip().splitlines()) == 2 + 2 and err == ""
    assert runs["jan-1"].run_id in out
    # One project among the runs shown: no project column; two: one.
    assert "project" not in _tether(sqlite_url, "traces", "list", "--agent", "support")[1]
    code, out, _ = _tether(sqlite_url, "traces", "list")
    header = out.splitlines()[0]
    assert "project" in header and "acme" in out
    assert "(model_request)" in out  # a run without an agent says what it was


def test_no_run_matches(sqlite_url: str, runs: dict[str, RunRecord]) -> None:
    code, out, _ = _tether(sqlite_url, "traces", "list", "--agent", "nosuch")
    assert code == 0 and "no traces of agent 'nosuch'" in out
    code, out, _ = _tether(sqlite_url, "traces", "list", "--model", "nosuch")
    assert code == 0 and "no runs match these filters" in out
    code, out, _ = _tether(sqlite_url, "traces", "list", "--json", "--model", "nosuch")
    assert json.loads(out) == {"runs": [], "total": 0, "next_cursor": None}


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (("--since", "yesterday"), "--since", "not a time"),
        (("--until", "2026-13-01"), "--until", "not a time"),
        (("--since", "999999999d"), "--since", "not a time"),
        (("--since", "12345678901d"), "--since", "not a time"),
        (("--since", "1h", "--until", "2h"), "--until", "later than --since"),
        (("--status", "complete"), "--status", "complete"),
        (("--outcome", "won"), "--outcome", "won"),
        (("--cursor", "not-a-cursor"), "--cursor", "not a page cursor"),
        (("--cursor", "\x1b[2J"), "--cursor", "\\x1b[2J"),
        (("--agent", " "), "--agent", "must not be empty"),
        (("-n", "0"), "--limit", "0"),
        (tuple(a for i in range(101) for a in ("--agent", f"a{i}")), "--agent", "at most 100"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(
    sqlite_url: str, args: tuple[str, ...], option: str, says: str
) -> None:
    done = run_cli("--database-url", sqlite_url, "traces", "list", *args)
    assert done.returncode == 2, done.stderr
    assert option in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "\x1b" not in done.stderr
    as_json = run_cli("--database-url", sqlite_url, "traces", "list", "--json", *args)
    assert as_json.returncode == 2
    assert option in json.loads(as_json.stdout)["error"]


def test_show_prints_the_run_detail_view(sqlite_url: str, runs: dict[str, RunRecord]) -> None:
    gateway = runs["gateway"]
    code, out, _ = _tether(sqlite_url, "traces", "show", gateway.run_id, "--json")
    detail = json.loads(out)
    assert list(detail) == ["run", "spans", "events", "truncated", "clipped"]  # the API's view
    assert detail["truncated"] is False and detail["clipped"] == 0  # the CLI shows it whole
    assert set(detail["run"]) >= OLD_RUN_KEYS
    assert (detail["run"]["agent"], detail["run"]["project"], detail["run"]["kind"]) == (
        None,
        "acme",
        "model_request",
    )
    assert [s["name"] for s in detail["spans"]] == ["chat small"]
    code, out, _ = _tether(sqlite_url, "traces", "show", gateway.run_id)
    assert code == 0 and "(model_request)" in out and "chat small" in out
    code, out, err = _tether(sqlite_url, "traces", "show", "0123456789abcdef")
    assert code == 1 and "no run or trace" in err


def test_reading_replays_a_dead_writers_journal_without_a_writer(
    sqlite_url: str, tmp_path: Path
) -> None:
    Store(sqlite_url).close()
    directory = _dead_writers_journal(sqlite_url)
    started: list[str] = []

    def note(*_args: object) -> None:  # called in each new thread, as it starts
        started.append(threading.current_thread().name)

    threading.settrace(note)  # type: ignore[arg-type]
    try:
        code, out, err = _tether(sqlite_url, "traces", "list", "--json")
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    assert code == 0, err
    listed = {r["run_id"]: r for r in json.loads(out)["runs"]}
    assert listed["9a1c2b3d4e5f6a7b"]["status"] == "completed"
    assert listed["ab2d3c4e5f6a7b8c"]["status"] == "failed"  # its process died
    assert started == [], started
    assert list(directory.glob("*.journal")) == []


def test_a_project_name_with_escapes_is_shown_not_obeyed(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    one, _ = _run("a", now_ns(), project="evil\x1b[2J")
    two, _ = _run("b", now_ns())
    store.write(TraceBatch(runs_started=[one, two]))
    store.close()
    done = run_cli("--database-url", sqlite_url, "traces", "list")
    assert done.returncode == 0
    assert "\x1b[2J" not in done.stdout and "evil" in done.stdout


def test_a_reader_that_may_not_write_lists_and_keeps_the_journal(
    pg_url: str, pg_admin_url: str
) -> None:
    """A database user who may only read: the records a dead process left cannot be written
    by it, so they are kept (one warning), and what is stored is listed all the same; the
    store's owner then delivers them."""
    from fakes.pg_roles import read_only_user
    from tether.trace.recorder import journal_for

    store = Store(pg_url)
    stored, _ = _run("stored", now_ns())
    store.write(TraceBatch(runs_started=[stored]))
    store.close()
    with read_only_user(pg_url, pg_admin_url) as reader_url:
        directory = _dead_writers_journal(reader_url)
        assert directory == journal_for(pg_url)  # the journal is the store's, not the user's
        done = run_cli("--database-url", reader_url, "traces", "list", "--json")
        assert done.returncode == 0, done.stderr
        assert [r["run_id"] for r in json.loads(done.stdout)["runs"]] == [stored.run_id]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "cannot be written now" in lines[0] and "permission denied" in lines[0]
        assert len(list(directory.glob("*.journal"))) == 1  # kept

        done = run_cli("--database-url", pg_url, "traces", "list", "--json")
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["runs"]) == 3
        assert "wrote 8 trace records" in done.stderr
        assert list(directory.glob("*.journal")) == []


def test_two_readers_at_once_deliver_a_dead_journal_once(store_url: str) -> None:
    import subprocess
    import sys

    Store(store_url).close()
    directory = _dead_writers_journal(store_url)
    argv = [sys.executable, "-m", "tether", "--database-url", store_url, "traces", "list"]
    readers = [
        subprocess.Popen([*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        json.loads(out)  # each printed a page (what was delivered by then)
    store = Store(store_url)
    try:
        runs = store.find_runs(RunQuery())
        assert runs.total == 2
        done = store.get_trace("9a1c2b3d4e5f6a7b")
        assert (len(done.spans), len(done.events)) == (2, 1)
        assert len(store.get_checkpoints(done.run.run_id)) == 1
        assert store.get_run("ab2d3c4e5f6a7b8c").status == "failed"
    finally:
        store.close()
    assert list(directory.glob("*.journal")) == []


def test_reading_a_sqlite_store_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    """A mistyped path (or a fresh home) was created by the read: its folder, an empty
    database and a lock file, and the listing said "no traces yet" of a store nobody uses."""
    url = f"sqlite:///{tmp_path / 'typo' / 'tehter.db'}"
    listed = run_cli("--database-url", url, "traces", "list")
    assert listed.returncode == 0, listed.stderr
    assert "no traces in" in listed.stdout and "yet" in listed.stdout
    shown = run_cli("--database-url", url, "traces", "show", "abcdef12")
    assert shown.returncode == 1 and "no run or trace 'abcdef12'" in shown.stderr
    assert not (tmp_path / "typo").exists()


def test_show_of_a_tool_call_nested_past_pythons_stack_shows_it_as_text(sqlite_url: str) -> None:
    """Arguments of ``[[[...]]]`` 10,000 deep holding a ``\\u`` escape (anyone with an agent
    key can send them over OTLP) made ``traces show`` end in "unexpected error:
    RecursionError"; they are shown as the text they are."""
    from fakes.stored_runs import add_run

    deep = "[" * 10_000 + '"\\u4e16"' + "]" * 10_000
    store = Store(sqlite_url)
    seeded = add_run(store, tool_arguments=deep)
    store.close()
    code, out, err = _tether(sqlite_url, "traces", "show", seeded.run_id)
    assert code == 0, err
    assert "[[[[" in out
