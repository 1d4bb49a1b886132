"""The store down, hanging, read-only or misbehaving, seen from the CLI: runs go on and their
traces wait in the journal; read-only commands say one clear thing; nothing accepted is lost."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import IN_CI
from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunRecord, SpanRecord, Store, store_identity
from tether.trace import BatchingWriter, writer_for
from tether.trace.journal import journal_dir


def _tether(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        timeout=60,  # far beyond any timeout of ours: only "it hung" fails here
        env=env,
    )


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "s.yaml").write_text('steps: [{text: "hello {input}"}]\n')
    path = tmp_path / "a.yaml"
    path.write_text("name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: s.yaml}\n")
    return path


@pytest.fixture
def silent_port() -> Iterator[int]:
    from fakes.tcp_proxy import SilentServer

    server = SilentServer()
    yield server.port
    server.close()


def _problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- a PostgreSQL that accepts connections and never answers -----------------------------------


def test_run_answers_at_once_while_the_store_never_answers(spec: Path, silent_port: int) -> None:
    url = f"postgresql+psycopg://postgres:pw@127.0.0.1:{silent_port}/test"
    done = _tether("--database-url", url, "run", str(spec), "-i", "hi", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == "hello hi"
    assert "warning:" in done.stderr and "journal" in done.stderr
    assert "pw" not in done.stderr.replace("postgres:***", "")


def test_an_agent_starts_without_waiting_for_its_store(spec: Path, silent_port: int) -> None:
    """With no connect timeout at all, a run still starts and ends: nothing connects to the
    store in the caller's thread (the writer's thread does, and the journal keeps the trace)."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/test"
    code = (
        "import os, sys\n"
        "from tether import Agent\n"
        f"agent = Agent.from_yaml({str(spec)!r}, trace={url!r})\n"
        "print(agent.run_sync('hi').output, flush=True)\n"
        "os._exit(0)\n"  # not waiting for the trace: it is in the journal
    )
    env = {**os.environ, "TETHER_DB_CONNECT_TIMEOUT_S": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello hi"


def test_traces_list_fails_clearly_when_the_store_never_answers(silent_port: int) -> None:
    url = f"postgresql+psycopg://postgres:pw@127.0.0.1:{silent_port}/test"
    done = _tether("--database-url", url, "traces", "list")
    assert done.returncode == 1
    lines = _problem_lines(done.stderr)
    assert lines[0].startswith("error: cannot open the trace store")
    assert f"127.0.0.1:{silent_port}" in lines[0] and "timeout" in lines[0]
    assert len(lines) <= 2 and all(line.startswith("hint:") for line in lines[1:]), lines


# -- a store that cannot be reached, or only read ------------------------------------------


def test_traces_list_on_an_unreachable_store_says_one_thing() -> None:
    from fakes.tcp_proxy import free_port

    url = f"postgresql+psycopg://postgres:pw@127.0.0.1:{free_port()}/test"
    done = _tether("--database-url", url, "traces", "list")
    assert done.returncode == 1
    lines = _problem_lines(done.stderr)
    assert lines[0].startswith("error: cannot open the trace store"), lines
    assert len(lines) <= 2 and all(line.startswith("hint:") for line in lines[1:]), lines
    as_json = _tether("--database-url", url, "traces", "list", "--json")
    assert as_json.returncode == 1 and as_json.stderr == ""
    assert "cannot open the trace store" in json.loads(as_json.stdout)["error"]


def _cannot(why: str) -> None:
    """A laptop without mount namespaces skips; CI (root, util-linux) must run these tests."""
    if IN_CI:
        pytest.fail(f"CI=true requires a read-only bind mount: {why}")
    pytest.skip(why)


def _read_only_tether(
    folder: Path, *args: str, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`tether` run with ``folder`` mounted read-only (a private mount namespace): even root
    cannot write there, as for a user without write permission. ``home``: its TETHER_HOME
    (the trace journal's folder), the test's own by default."""
    if shutil.which("unshare") is None:
        _cannot("unshare is not installed")
    command = " ".join(
        [
            f"mount --bind -o ro {folder} {folder} &&",
            "exec",
            sys.executable,
            "-m",
            "tether",
            *(f"'{a}'" for a in args),
        ]
    )
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {folder} {folder}"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        _cannot(f"cannot make a read-only mount here: {probe.stderr.strip()}")
    env = {**os.environ, "TETHER_HOME": str(home)} if home is not None else None
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("wal_left", [False, True])
def test_traces_list_reads_a_read_only_sqlite_store(tmp_path: Path, wal_left: bool) -> None:
    """A store in a folder this process cannot write: listed as it is (its WAL files left
    by a writer or not), one clean output, and no writer or journal started for it."""
    folder = tmp_path / "store"
    url = f"sqlite:///{folder / 'tether.db'}"
    store = Store(url)
    trace_id = new_trace_id()
    writer = BatchingWriter(store)
    writer.run_started(RunRecord(trace_id, "ro", "v1", now_ns(), run_id=new_span_id()))
    assert writer.flush(timeout=30)
    writer.close()
    keep_open = None
    if wal_left:  # a reader holds the file: the -wal and -shm files stay
        keep_open = sqlite3.connect(folder / "tether.db")
        keep_open.execute("SELECT count(*) FROM tether_runs").fetchall()
        assert (folder / "tether.db-wal").exists()
    else:
        store.close()
        assert not (folder / "tether.db-wal").exists()
    try:
        done = _read_only_tether(folder, "--database-url", url, "traces", "list", "--json")
    finally:
        if keep_open is not None:
            keep_open.close()
        store.close()
    assert done.returncode == 0, done.stderr
    assert [r["trace_id"] for r in json.loads(done.stdout)["runs"]] == [trace_id]
    assert done.stderr == ""
    home = Path(os.environ["TETHER_HOME"])
    assert not journal_dir(home, store_identity(url)).exists()


def test_an_old_schema_in_a_read_only_store_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    url = f"sqlite:///{folder / 'tether.db'}"
    Store(url).close()
    raw = sqlite3.connect(folder / "tether.db")
    raw.execute("UPDATE tether_alembic_version SET version_num = '0001'")
    raw.commit()
    raw.close()
    done = _read_only_tether(folder, "--database-url", url, "traces", "list")
    assert done.returncode == 1
    lines = _problem_lines(done.stderr)
    assert lines[0].startswith("error:") and "read-only" in lines[0], lines
    assert str(folder / "tether.db") in lines[0]
    assert len(lines) == 2 and lines[1].startswith("hint:")


def test_run_json_says_its_trace_was_lost_when_nothing_can_be_written(
    tmp_path: Path, spec: Path
) -> None:
    """Neither the store nor the journal can be written: the records are lost, and the JSON
    said success while the command exited 1. It says the trace was not saved, as the status."""
    folder = tmp_path / "store"
    folder.mkdir()
    url = f"sqlite:///{folder / 'tether.db'}"
    done = _read_only_tether(
        folder, "--database-url", url, "run", str(spec), "-i", "hi", "--json", home=folder
    )
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["output"] == "hello hi"  # the run itself went well
    assert answer["trace_saved"] is False and answer["trace_records_lost"] > 0
    assert "lost" in done.stderr


def test_run_json_says_its_trace_was_saved(spec: Path, sqlite_url: str) -> None:
    done = _tether("--database-url", sqlite_url, "run", str(spec), "-i", "hi", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["trace_saved"], answer["trace_records_lost"]) == (True, 0)


# -- a locked store, through the CLI ---------------------------------------------------------


def test_a_run_goes_on_while_sqlite_is_locked_and_its_trace_arrives_later(
    spec: Path, sqlite_url: str
) -> None:
    """The README's promise, through the CLI: `tether run` answers while another process
    holds the store's write lock, and `tether traces list` shows the run once it is free."""
    Store(sqlite_url).close()
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        done = _tether("--database-url", sqlite_url, "run", str(spec), "-i", "hi", "--json")
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["output"] == "hello hi"
    assert "locked" in done.stderr and "kept in the trace journal" in done.stderr
    listed = _tether("--database-url", sqlite_url, "traces", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)["runs"]
    assert (run["trace_id"], run["status"], run["output"]) == (
        answer["trace_id"],
        "completed",
        "hello hi",
    )


# -- what the writer says ----------------------------------------------------------------------


def test_a_rejected_record_is_not_followed_by_writable_again(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tether.trace")
    writer = writer_for(sqlite_url)
    start = now_ns()
    orphan = SpanRecord(
        new_trace_id(), new_span_id(), None, "s", "tool", start, start, run_id=new_span_id()
    )
    writer.span(orphan)  # its run does not exist: refused by the foreign key
    assert writer.flush(timeout=30)
    run_id = new_span_id()
    writer.run_started(RunRecord(new_trace_id(), "fine", "v1", now_ns(), run_id=run_id))
    assert writer.flush(timeout=30)
    assert writer.dropped == 1
    assert "rejected by the store and skipped" in caplog.text
    assert "writable again" not in caplog.text
    assert writer.store.get_run(run_id).agent_name == "fine"


def test_records_wait_while_the_database_user_may_not_write(
    pg_url: str, pg_admin_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Permission denied is the store's problem, not a record's: nothing is skipped as
    rejected. Closed meanwhile, the writer leaves its records in the journal, and the next
    writer on the same store (another user: the journal is the store's) writes them."""
    from fakes.pg_roles import read_only_user
    from tether.trace import close_writers

    caplog.set_level(logging.WARNING, logger="tether.trace")
    Store(pg_url).close()
    with read_only_user(pg_url, pg_admin_url) as reader_url:
        try:
            writer = writer_for(reader_url)
            trace_id, run_id, start = new_trace_id(), new_span_id(), now_ns()
            writer.run_started(RunRecord(trace_id, "denied", "v1", start, run_id=run_id))
            writer.span(
                SpanRecord(trace_id, new_span_id(), None, "s", "tool", start, start, run_id=run_id)
            )
            assert not writer.flush(timeout=5)  # it cannot write: nothing is lost meanwhile
            assert "permission denied" in (writer.last_error or "")
            assert writer.dropped == 0 and "rejected" not in caplog.text
        finally:
            close_writers()  # before the role goes
        assert "kept in the trace journal" in caplog.text

        delivered = writer_for(pg_url)
        assert delivered.flush(timeout=60)
        assert delivered.replayed >= 2
        assert delivered.store.get_run(run_id).agent_name == "denied"
        assert len(delivered.store.get_spans(run_id)) == 1
    close_writers()
