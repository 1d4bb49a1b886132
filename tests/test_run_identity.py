"""Runs that share a caller's trace id are separate runs: own rows, spans, events, totals.

A caller may pass one upstream OpenTelemetry trace id to several operations; each run is the
subtree under its own root span, and its id is that span's id."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes.specs import make_spec
from fakes.store_0001 import run_0001, span_0001, upgrade_to_0001
from fakes.tcp_proxy import TcpProxy, free_port
from tether import Agent, RunResult, ScriptedModel, tool
from tether.cli import cli
from tether.core import StoreError
from tether.store import RunRecord, Store, create_store_engine
from tether.trace import BatchingWriter, close_writers, writer_for

SHARED = "4bf92f3577b34da6a3ce929d0e0e4736"
FIXTURES = Path(__file__).parent / "fixtures"


@tool
def flaky(key: str) -> str:
    """Fails for every key."""
    raise RuntimeError(f"no record {key}")


def _agent(url: str) -> Agent:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "flaky", "arguments": {"key": "{input}"}}]},
            {"text": "answer to {input}"},
        ],
        name="gpt-4.1-mini",
    )
    return Agent(make_spec(), model=model, tools=[flaky], trace=url)


async def _two_runs_in_one_trace(url: str) -> tuple[RunResult, RunResult]:
    agent = _agent(url)
    first = await agent.run("first", trace_id=SHARED)
    second = await agent.run("a much longer second input, so its totals differ", trace_id=SHARED)
    assert writer_for(url).flush(timeout=30)
    return first, second


async def test_two_runs_sharing_a_trace_id_are_two_runs(store_url: str) -> None:
    first, second = await _two_runs_in_one_trace(store_url)
    assert first.trace_id == second.trace_id == SHARED
    assert first.run_id != second.run_id
    assert all(re.fullmatch(r"[0-9a-f]{16}", r.run_id) for r in (first, second))
    assert first.usage.input_tokens != second.usage.input_tokens

    store = Store(store_url)
    try:
        assert sorted(r.run_id for r in store.list_runs() if r.trace_id == SHARED) == sorted(
            [first.run_id, second.run_id]
        )
        span_ids: list[set[str]] = []
        for result in (first, second):
            run = store.get_run(result.run_id)
            assert (run.run_id, run.trace_id, run.status) == (result.run_id, SHARED, "completed")
            assert (run.input, run.output) == (result.state.input, result.output)
            assert (run.input_tokens, run.output_tokens, run.turns, run.tool_calls) == (
                result.usage.input_tokens,
                result.usage.output_tokens,
                result.state.turns,
                result.state.tool_calls,
            )
            assert run.cost_usd == pytest.approx(result.state.cost_usd)

            spans = store.get_spans(result.run_id)
            assert {(s.run_id, s.trace_id) for s in spans} == {(result.run_id, SHARED)}
            # One tree: the root is the run's own span, every other span hangs under it.
            [root] = [s for s in spans if s.parent_id is None]
            assert (root.span_id, root.kind) == (result.run_id, "agent")
            ids = {s.span_id for s in spans}
            assert all(s.parent_id in ids for s in spans if s is not root)
            assert sorted(s.kind for s in spans) == ["agent", "model", "model", "tool"]
            span_ids.append(ids)

            events = store.get_events(result.run_id)
            assert [e.name for e in events] == ["tether.tool.error"]
            assert events[0].run_id == result.run_id and events[0].span_id in ids
            assert result.state.input in events[0].attributes["message"]
        assert not span_ids[0] & span_ids[1]
    finally:
        store.close()


async def test_traces_show_takes_a_run_id_and_explains_a_shared_trace_id(store_url: str) -> None:
    first, second = await _two_runs_in_one_trace(store_url)
    runner = CliRunner()

    for result in (first, second):
        shown = runner.invoke(
            cli, ["--database-url", store_url, "traces", "show", result.run_id, "--json"]
        )
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.stdout)
        assert (data["run"]["run_id"], data["run"]["trace_id"]) == (result.run_id, SHARED)
        assert data["run"]["input"] == result.state.input
        assert data["run"]["input_tokens"] == result.usage.input_tokens
        roots = [s["span_id"] for s in data["spans"] if s["parent_id"] is None]
        assert roots == [result.run_id]
        text = runner.invoke(cli, ["--database-url", store_url, "traces", "show", result.run_id])
        assert text.exit_code == 0 and result.run_id in text.output
        assert f"answer to {result.state.input}" in text.output

    ambiguous = runner.invoke(cli, ["--database-url", store_url, "traces", "show", SHARED])
    assert ambiguous.exit_code == 1 and "Traceback" not in ambiguous.output
    assert f"trace {SHARED} has several runs" in ambiguous.output
    assert first.run_id in ambiguous.output and second.run_id in ambiguous.output
    assert "hint:" in ambiguous.output and "traces show" in ambiguous.output

    as_json = runner.invoke(
        cli, ["--database-url", store_url, "traces", "show", SHARED[:10], "--json"]
    )
    assert as_json.exit_code == 1
    error = json.loads(as_json.stdout)
    assert "several runs" in error["error"] and first.run_id in error["error"]
    assert "traces show" in error["hint"]

    listed = runner.invoke(cli, ["--database-url", store_url, "traces", "list", "--json"])
    assert sorted(r["run_id"] for r in json.loads(listed.stdout)["runs"]) == sorted(
        [first.run_id, second.run_id]
    )


CHILD = textwrap.dedent(
    """
    import asyncio
    import sys

    from tether import Agent, AgentSpec, ModelConfig, ScriptedModel, tool

    @tool
    async def hang() -> str:
        \"\"\"Never returns.\"\"\"
        print("in tool", flush=True)
        await asyncio.sleep(3600)
        return "late"

    url, trace_id = sys.argv[1], sys.argv[2]
    spec = AgentSpec(
        name="doomed",
        model=ModelConfig(provider="scripted", name="gpt-4.1-mini", script="unused.yaml"),
    )
    model = ScriptedModel([{"tool_calls": [{"name": "hang"}]}, {"text": "never"}],
                          name="gpt-4.1-mini")
    agent = Agent(spec, model=model, tools=[hang], trace=url)
    asyncio.run(agent.run("second, killed", trace_id=trace_id))
    """
)


def _kill_mid_run(tmp_path: Path, url: str) -> None:
    """A process that runs an agent on ``SHARED`` and is killed (SIGKILL) inside a tool."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), url, SHARED],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.kill()
    _, err = child.communicate(timeout=30)
    assert line.strip() == "in tool", err
    assert child.returncode == -9


async def test_a_killed_run_sharing_a_trace_id_is_replayed_as_its_own_run(
    tmp_path: Path, store_url: str
) -> None:
    """The first run is in the store; the second, on the same trace id, is killed while its
    records wait in the crash journal (the store is locked, or unreachable). The replay
    delivers it as a run of its own and leaves the first run as it was."""
    first = await _agent(store_url).run("first", trace_id=SHARED)
    close_writers()
    store = Store(store_url)
    before = (store.get_run(first.run_id), store.get_spans(first.run_id))

    if store_url.startswith("sqlite"):
        # WAL: the child can read (and open the store), not write.
        lock = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            _kill_mid_run(tmp_path, store_url)
        finally:
            lock.execute("COMMIT")
            lock.close()
        replay_url = store_url
    else:
        port = free_port()  # nothing listens there until the proxy starts
        replay_url = store_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
        _kill_mid_run(tmp_path, replay_url)
        proxy = TcpProxy(port, ("127.0.0.1", 5432))
    try:
        assert len([r for r in store.list_runs() if r.trace_id == SHARED]) == 1
        writer = writer_for(replay_url)
        assert writer.flush(timeout=30)
        assert writer.replayed >= 2  # the run's start and its model span at least
        close_writers()
    finally:
        if not store_url.startswith("sqlite"):
            proxy.close()

    runs = [r for r in store.list_runs() if r.trace_id == SHARED]
    assert len(runs) == 2
    [killed] = [r for r in runs if r.run_id != first.run_id]
    assert (killed.agent_name, killed.input) == ("doomed", "second, killed")
    assert killed.status == "failed" and killed.error and "exited" in killed.error
    spans = store.get_spans(killed.run_id)
    assert [s.kind for s in spans] == ["model"]  # the root and tool spans never closed
    assert spans[0].parent_id == killed.run_id and spans[0].trace_id == SHARED
    assert (store.get_run(first.run_id), store.get_spans(first.run_id)) == before
    with pytest.raises(StoreError, match="several runs"):
        store.get_run(SHARED)
    store.close()


def _replay_fixture(store: Store, directory: Path) -> BatchingWriter:
    """Replay the golden journal of a Tether from before run ids, as a dead writer's."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(
        FIXTURES / "trace_journal_v1_before_run_ids.journal",
        directory / "14302-ae32c0e4-00000001.journal",  # the writer id its runs record
    )
    writer = BatchingWriter(store, journal=directory)
    assert writer.flush(timeout=30)
    writer.close()
    return writer


OLD_DONE, OLD_CRASHED = SHARED, "0af7651916cd43dd8448eb211c80319c"


def test_a_journal_from_before_run_ids_replays(tmp_path: Path, store_url: str) -> None:
    store = Store(store_url)
    try:
        writer = _replay_fixture(store, tmp_path / "journal")
        assert writer.replayed == 8 and writer.dropped == 0

        done = store.get_run(OLD_DONE)
        assert done.run_id == OLD_DONE[:16]  # no run of its trace in the store: derived
        assert (done.status, done.output, done.input_tokens) == ("completed", "on its way", 12)
        spans = store.get_spans(done.run_id)
        assert [(s.span_id, s.parent_id) for s in spans] == [
            ("a3ce929d0e0e4736", None),
            ("00f067aa0ba902b7", "a3ce929d0e0e4736"),
        ]
        assert [e.name for e in store.get_events(done.run_id)] == ["tether.control.decision"]
        assert [c.reason for c in store.get_checkpoints(done.run_id)] == ["paused"]

        crashed = store.get_run(OLD_CRASHED)
        assert crashed.run_id == OLD_CRASHED[:16]
        assert crashed.status == "failed" and "pid 14302" in (crashed.error or "")
        assert [s.span_id for s in store.get_spans(crashed.run_id)] == ["b7ad6b7169203331"]

        # Replayed again (a crash between commit and delete): nothing is written twice.
        _replay_fixture(store, tmp_path / "journal")
        assert len(store.list_runs()) == 2
        assert len(store.get_spans(done.run_id)) == 2
        assert len(store.get_events(done.run_id)) == 1
        assert len(store.get_checkpoints(done.run_id)) == 1
    finally:
        store.close()


def test_an_old_journal_finishes_its_run_in_an_upgraded_store(
    tmp_path: Path, store_url: str
) -> None:
    """The old Tether committed the run's start and its root span, then died before the rest
    (and before deleting its journal): after the upgrade the run is keyed by its root span,
    and the journal's records, which carry no run id, go to that run."""
    engine = create_store_engine(store_url)
    with engine.begin() as conn:
        upgrade_to_0001(conn)
        run_0001(
            conn,
            OLD_DONE,
            1_767_225_600_000_000_000,
            status="running",
            outcome=None,
            output=None,
            ended_ns=None,
            input="where is order 7?",
            agent_name="legacy",
        )
        span_0001(conn, OLD_DONE, "a3ce929d0e0e4736", None, "agent", 1_767_225_600_000_000_500)
    engine.dispose()
    store = Store(store_url)
    try:
        assert store.get_run(OLD_DONE).run_id == "a3ce929d0e0e4736"
        _replay_fixture(store, tmp_path / "journal")
        runs = [r for r in store.list_runs() if r.trace_id == OLD_DONE]
        assert [r.run_id for r in runs] == ["a3ce929d0e0e4736"]
        assert (runs[0].status, runs[0].output) == ("completed", "on its way")
        spans = store.get_spans("a3ce929d0e0e4736")
        assert sorted(s.span_id for s in spans) == ["00f067aa0ba902b7", "a3ce929d0e0e4736"]
        assert len(store.get_events("a3ce929d0e0e4736")) == 1
    finally:
        store.close()


def test_records_must_name_their_run() -> None:
    with pytest.raises(TypeError, match="run_id"):
        RunRecord(trace_id=SHARED, agent_name="a", agent_version="v", started_ns=1)  # type: ignore[call-arg]
