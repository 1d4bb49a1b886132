"""The store when things go wrong: a locked SQLite file, an unreachable or unusable database,
a process killed mid-run, and an agent that crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from tether import Agent, AgentSpec, ModelConfig, RunState, ScriptedModel, tool
from tether.core import StoreError, new_span_id, new_trace_id, now_ns
from tether.providers import ModelRequest, ModelResponse
from tether.store import EventRecord, RunRecord, SpanRecord, Store, TraceBatch
from tether.store.db import MIGRATIONS_DIR
from tether.trace import BatchingWriter, semconv, writer_for

SPEC = AgentSpec(
    name="a", model=ModelConfig(provider="scripted", name="scripted", script="unused.yaml")
)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def _sqlite_path(sqlite_url: str) -> str:
    return sqlite_url.removeprefix("sqlite:///")


class _Lock:
    """An exclusive write lock on a SQLite file, held by a separate raw connection."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.conn.execute("BEGIN EXCLUSIVE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("COMMIT")
            self.conn.close()
            self.held = False


@pytest.fixture
def lock_db(sqlite_url: str) -> Iterator[Callable[[], _Lock]]:
    locks: list[_Lock] = []

    def take() -> _Lock:
        lock = _Lock(_sqlite_path(sqlite_url))
        locks.append(lock)
        return lock

    yield take
    for lock in locks:
        lock.release()


# -- a locked SQLite database ------------------------------------------------------------------


def test_locked_sqlite_keeps_records_until_the_lock_is_released(
    sqlite_url: str, lock_db: Callable[[], _Lock], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="tether.trace")
    store = Store(sqlite_url)
    writer = BatchingWriter(store, max_backoff_s=0.1)
    try:
        lock = lock_db()
        trace_id, run_id = new_trace_id(), new_span_id()
        t0 = now_ns()
        run = RunRecord(trace_id, "locked", "v1", t0, input="hello password=hunter2", run_id=run_id)
        spans = [
            SpanRecord(
                trace_id,
                new_span_id(),
                None,
                f"step {i}",
                "tool",
                t0 + i,
                t0 + i + 1,
                run_id=run_id,
            )
            for i in range(500)
        ]
        event = EventRecord(trace_id, spans[0].span_id, "e", t0, {"k": "v"}, run_id=run_id)
        ended = RunRecord(
            trace_id,
            "locked",
            "v1",
            t0,
            status="completed",
            input="hello password=hunter2",
            run_id=run_id,
        )
        writer.run_started(run)
        for span in spans:
            writer.span(span)
        writer.event(event)
        writer.run_ended(ended)

        # The writer has met the lock (a failed attempt) and still holds every record.
        _wait_for(lambda: writer.last_error is not None, "the writer to hit the lock")
        assert "locked" in (writer.last_error or "")
        assert writer.pending == len(spans) + 3
        assert writer.dropped == 0
        assert not writer.flush(timeout=0.2)  # nothing can be written while the lock is held
        assert "retrying" in caplog.text and "hunter2" not in caplog.text  # no user content

        lock.release()
        assert writer.flush(timeout=60)
        assert writer.pending == 0
        assert writer.dropped == 0
        assert writer.last_error is None
        assert store.get_run(trace_id) == ended
        assert store.get_spans(run_id) == spans
        assert store.get_events(run_id) == [event]
    finally:
        writer.close()
        store.close()


async def test_agent_run_completes_while_sqlite_is_locked(
    sqlite_url: str, lock_db: Callable[[], _Lock]
) -> None:
    agent = Agent(SPEC, model=ScriptedModel([{"text": "hi"}]), trace=sqlite_url)
    writer = writer_for(sqlite_url)
    assert agent.sink is writer
    lock = lock_db()

    # The run path never waits for the database: the writer absorbs the lock.
    result = await asyncio.wait_for(agent.run("hello"), timeout=60)
    assert result.ok
    assert result.output == "hi"
    assert result.status == "completed"

    await asyncio.to_thread(
        _wait_for, lambda: writer.last_error is not None, "the writer to hit the lock"
    )
    assert writer.pending > 0
    lock.release()
    assert await asyncio.to_thread(writer.flush, 60)
    assert writer.dropped == 0

    store = Store(sqlite_url)
    try:
        run = store.get_run(result.trace_id)
        assert run.status == "completed"
        assert run.outcome == "final_answer"
        assert run.output == "hi"
        assert run.input == "hello"
        assert run.turns == 1
        kinds = sorted(s.kind for s in store.get_spans(result.run_id))
        assert kinds == ["agent", "model"]
    finally:
        store.close()


# -- unreachable and unusable databases --------------------------------------------------------


def test_unreachable_postgres_names_the_url_without_its_password() -> None:
    url = "postgresql+psycopg://postgres:secret123@127.0.0.1:1/test"
    with pytest.raises(StoreError) as info:
        Store(url)
    message = str(info.value)
    assert "secret123" not in message
    assert "postgresql+psycopg://postgres:***@127.0.0.1:1/test" in message
    assert "cannot open the trace store" in message
    assert info.value.hint
    assert "TETHER_DATABASE_URL" in info.value.hint


@pytest.mark.parametrize("parameter", ["password", "sslpassword", "PASSWORD"])
def test_a_password_given_as_a_query_parameter_is_hidden_too(parameter: str) -> None:
    # libpq takes any connection parameter in the query: postgresql://user@host/db?password=
    # (a password with characters a URL's userinfo cannot hold is often written so).
    url = f"postgresql://postgres@127.0.0.1:1/test?{parameter}=secret123&connect_timeout=2"
    with pytest.raises(StoreError) as info:
        Store(url)
    message = str(info.value)
    assert "cannot open the trace store" in message
    assert "secret123" not in message
    assert f"{parameter}=***" in message


@pytest.mark.parametrize(
    "url",
    [
        "not a database url",
        "",
        "postgresql://postgres:secret123@127.0.0.1:notaport/test",
        "nosuchdialect://postgres:secret123@127.0.0.1/test",
    ],
)
def test_unusable_url_is_a_store_error(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Store(url)
    assert "secret123" not in str(info.value)
    assert info.value.hint


def test_sqlite_path_under_a_regular_file_is_a_store_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("I am a file, not a folder")
    for db in (not_a_folder / "tether.db", not_a_folder / "deeper" / "tether.db"):
        with pytest.raises(StoreError) as info:
            Store(f"sqlite:///{db}")
        assert str(not_a_folder) in str(info.value)
        assert info.value.hint


def test_sqlite_path_that_is_a_folder_or_not_a_database_is_a_store_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not a SQLite database file " * 20)
    for path in (folder, junk):
        with pytest.raises(StoreError, match="cannot open the trace store") as info:
            Store(f"sqlite:///{path}")
        assert str(path) in str(info.value)
        assert info.value.hint


# -- a process killed in the middle of a run ---------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio
    import sys
    import time

    from tether import Agent, AgentSpec, Limits, ModelConfig, ScriptedModel, tool

    url, trace_id = sys.argv[1], sys.argv[2]


    @tool
    def fast_tool() -> str:
        return "fast result"


    @tool(timeout_s=3600)
    def hang_tool() -> str:
        time.sleep(3600)
        return "never"


    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "fast_tool"}]},
            {"tool_calls": [{"name": "hang_tool"}]},
            {"text": "done"},
        ]
    )
    spec = AgentSpec(
        name="crashy",
        model=ModelConfig(provider="scripted", name="scripted", script="unused.yaml"),
        limits=Limits(timeout_s=3600),
    )
    agent = Agent(spec, model=model, tools=[fast_tool, hang_tool], trace=url)
    asyncio.run(agent.run("go", trace_id=trace_id))
    print("the run finished, which it never should", flush=True)
    """
)


def test_killed_process_leaves_a_readable_partial_trace(tmp_path: Path, sqlite_url: str) -> None:
    # Migrate first, so the parent can read while the child writes.
    store = Store(sqlite_url)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    trace_id = new_trace_id()
    child = subprocess.Popen(
        [sys.executable, str(script), sqlite_url, trace_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:

        def completed_steps_written() -> bool:
            if child.poll() is not None:
                out, err = child.communicate()
                pytest.fail(f"the child exited early ({child.returncode}):\n{out}\n{err}")
            try:
                run = store.get_run(trace_id)
            except StoreError:
                return False
            spans = store.get_spans(run.run_id)
            first_model = [
                s for s in spans if s.kind == "model" and s.attributes.get(semconv.TETHER_TURN) == 1
            ]
            fast = [s for s in spans if s.name == "execute_tool fast_tool"]
            return bool(first_model and fast)

        _wait_for(completed_steps_written, "the child's completed spans", timeout=20)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        store.close()
    assert child.returncode == -signal.SIGKILL

    # The file is intact and opens cleanly after the crash.
    raw = sqlite3.connect(_sqlite_path(sqlite_url))
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        raw.close()
    reopened = Store(sqlite_url)
    try:
        run = reopened.get_run(trace_id)
        assert run.status == "running"
        assert run.ended_ns is None
        assert run.agent_name == "crashy"
        spans = reopened.get_spans(run.run_id)
        by_name = {s.name: s for s in spans}
        fast = by_name["execute_tool fast_tool"]
        assert fast.status == "ok"
        assert fast.end_ns >= fast.start_ns
        assert fast.attributes[semconv.GEN_AI_TOOL_CALL_RESULT] == "fast result"
        assert any(s.kind == "model" and s.attributes.get(semconv.TETHER_TURN) == 1 for s in spans)
        # The step that never finished left no span; neither did the still-open agent span.
        assert "execute_tool hang_tool" not in by_name
        assert not any(s.kind == "agent" for s in spans)
    finally:
        reopened.close()


# -- an agent that crashes ---------------------------------------------------------------------


class ExplodesOnSecondTurn(ScriptedModel):
    """A buggy model integration: a plain exception (not a ProviderError) on the second call."""

    def __init__(self, steps: list[dict[str, object]]) -> None:
        super().__init__(steps)
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("model blew up")
        return await super().complete(request)


async def test_crashed_run_is_recorded_as_failed_with_a_checkpoint(store_url: str) -> None:
    @tool
    def fast_tool() -> str:
        return "fast result"

    agent = Agent(
        SPEC,
        model=ExplodesOnSecondTurn([{"tool_calls": [{"name": "fast_tool"}]}, {"text": "done"}]),
        tools=[fast_tool],
        trace=store_url,
    )
    trace_id = new_trace_id()
    with pytest.raises(RuntimeError, match="model blew up"):
        await agent.run("go", trace_id=trace_id)

    writer = writer_for(store_url)
    assert await asyncio.to_thread(writer.flush, 30)
    assert writer.dropped == 0
    store = writer.store

    run = store.get_run(trace_id)
    assert run.status == "failed"
    assert run.outcome == "error"
    assert run.error == "RuntimeError: model blew up"
    assert run.ended_ns is not None
    assert run.turns == 2
    assert run.tool_calls == 1
    assert run.attributes["stop_reason"] == "internal error"

    spans = store.get_spans(run.run_id)
    by_kind = {s.kind: s for s in spans}
    assert sorted(s.kind for s in spans) == ["agent", "model", "model", "tool"]
    models = [s for s in spans if s.kind == "model"]
    assert [m.attributes[semconv.TETHER_TURN] for m in models] == [1, 2]
    assert [m.status for m in models] == ["ok", "error"]
    assert by_kind["tool"].name == "execute_tool fast_tool"
    assert by_kind["tool"].status == "ok"
    assert by_kind["agent"].status == "error"
    assert by_kind["agent"].status_message == "RuntimeError: model blew up"

    errors = [e for e in store.get_events(run.run_id) if e.name == semconv.EVENT_RUN_ERROR]
    assert len(errors) == 1
    assert errors[0].span_id == by_kind["agent"].span_id
    assert errors[0].attributes == {"message": "RuntimeError: model blew up"}

    checkpoints = store.get_checkpoints(run.run_id)
    assert [c.reason for c in checkpoints] == ["crash"]
    state = RunState.from_json(checkpoints[0].state_json)
    assert checkpoints[0].schema_version == state.schema_version
    assert (state.trace_id, state.run_id) == (trace_id, run.run_id)
    assert state.status == "failed"
    assert state.error == "RuntimeError: model blew up"
    assert state.turns == 2
    assert state.tool_calls == 1
    assert [m.role for m in state.messages] == ["user", "assistant", "tool"]
    assert state.messages[-1].content == "fast result"


# -- a database shared with another application ---------------------------------------------


def test_store_shares_a_database_with_another_alembic_application(store_url: str) -> None:
    """Another app's ``alembic_version`` is neither read nor touched."""
    from sqlalchemy import text

    from tether.store import create_store_engine

    engine = create_store_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('abc123')"))
    store = Store(store_url)
    try:
        trace_id = new_trace_id()
        store.write(
            TraceBatch(
                runs_started=[
                    RunRecord(
                        trace_id=trace_id,
                        run_id=new_span_id(),
                        agent_name="a",
                        agent_version="v",
                        started_ns=1,
                    )
                ]
            )
        )
        assert store.get_run(trace_id).agent_name == "a"
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [tuple(r) for r in rows] == [("abc123",)]
    finally:
        store.close()
        engine.dispose()


def test_a_store_from_a_newer_tether_is_refused_clearly(sqlite_url: str) -> None:
    Store(sqlite_url).close()
    raw = sqlite3.connect(_sqlite_path(sqlite_url))
    raw.execute("UPDATE tether_alembic_version SET version_num = '9999_future'")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="'9999_future'") as info:
        Store(sqlite_url)
    assert info.value.hint and "newer Tether" in info.value.hint


def test_a_store_that_recorded_its_revision_in_alembic_version_is_carried_over(
    sqlite_url: str,
) -> None:
    """Stores made before Tether had its own version table keep working."""
    store = Store(sqlite_url)
    trace_id = new_trace_id()
    run = RunRecord(
        trace_id=trace_id, run_id=new_span_id(), agent_name="old", agent_version="v", started_ns=1
    )
    store.write(TraceBatch(runs_started=[run]))
    store.close()
    raw = sqlite3.connect(_sqlite_path(sqlite_url))
    raw.execute("ALTER TABLE tether_alembic_version RENAME TO alembic_version")
    raw.commit()
    raw.close()
    reopened = Store(sqlite_url)
    try:
        assert reopened.get_run(trace_id).agent_name == "old"
    finally:
        reopened.close()
    raw = sqlite3.connect(_sqlite_path(sqlite_url))
    try:
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert raw.execute("SELECT version_num FROM tether_alembic_version").fetchall() == [(head,)]
    finally:
        raw.close()


def test_tether_tables_without_a_recorded_revision_are_refused_clearly(sqlite_url: str) -> None:
    Store(sqlite_url).close()
    raw = sqlite3.connect(_sqlite_path(sqlite_url))
    raw.execute("DROP TABLE tether_alembic_version")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="no record of their schema revision") as info:
        Store(sqlite_url)
    assert info.value.hint


def test_a_command_whose_trace_is_lost_on_a_full_disk_exits_non_zero(tmp_path: Path) -> None:
    """The disk is full (a file size limit: the store's WAL and the crash journal cannot
    grow): the run answers, but its trace can be neither written nor kept. ``tether run``
    said so and exited 0, pointing at a trace that does not exist."""
    import resource

    from fakes.specs import write_spec

    spec = write_spec(
        tmp_path,
        "name: full\nmodel: {provider: scripted, name: gpt-4.1-mini, script: demo.script.yaml}\n",
        script="steps:\n  - text: the answer\n",
    )
    home = tmp_path / "home"
    env = {**os.environ, "TETHER_HOME": str(home)}
    env.pop("TETHER_DATABASE_URL", None)
    home.mkdir()
    Store(f"sqlite:///{home / 'tether.db'}").close()  # made and migrated (a read makes none)

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run(
        [sys.executable, "-m", "tether", "run", str(spec), "--input", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=full_disk,
    )
    assert "the answer" in done.stdout
    assert "could not be written and are lost" in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_records_the_store_refused_count_as_lost_when_writers_close(sqlite_url: str) -> None:
    """A record the store refuses outright (here: a span of a run it does not have) is
    skipped and said; the command's exit status must say so too (``close_writers`` is what
    the CLI reads): it counted only records neither written nor journaled."""
    from tether.trace import close_writers

    close_writers()  # this process's earlier writers: none of their losses are this test's
    writer = writer_for(sqlite_url)
    trace = new_trace_id()
    orphan = SpanRecord(
        trace_id=trace,
        run_id="00000000000000aa",  # no such run: the foreign key refuses the span
        span_id=new_span_id(),
        parent_id=None,
        name="chat",
        kind="model",
        start_ns=now_ns(),
    )
    writer.span(orphan)
    assert writer.flush(timeout=30)
    assert writer.dropped == 1 and writer.last_rejection
    assert close_writers() == 1
    assert close_writers() == 0  # closed and forgotten: nothing counted twice
