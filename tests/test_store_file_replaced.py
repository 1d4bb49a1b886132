"""The SQLite store file deleted or replaced while a process writes to it: the process does
not write into a fresh empty file nor into the unlinked one, it says so naming the file, and
its records stay in the journal until a store at that path takes them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from fakes.otlp import json_request, json_span
from fakes.server import serving, tether_serve
from tether.core import new_span_id, new_trace_id
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store
from tether.trace import writer_for

CHILD = textwrap.dedent(
    """
    import sys
    import time

    from tether.core import new_span_id, now_ns
    from tether.store import RunRecord
    from tether.trace import writer_for

    url, first, second = sys.argv[1:4]
    writer = writer_for(url)
    run = RunRecord(first, "before", "v1", now_ns(), run_id=new_span_id())
    writer.run_started(run)
    assert writer.flush(timeout=60)
    print("written", flush=True)
    sys.stdin.readline()  # the file is deleted or replaced meanwhile
    run = RunRecord(second, "after", "v1", now_ns(), run_id=new_span_id())
    writer.run_started(run)
    run.status, run.ended_ns = "completed", now_ns()
    writer.run_ended(run)
    deadline = time.monotonic() + 60
    while "deleted or replaced" not in (writer.last_error or ""):
        assert time.monotonic() < deadline, "the writer never noticed"
        time.sleep(0.02)
    print("noticed", flush=True)
    """
)


def _files(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_records_written_after_the_file_changed_are_kept_for_the_store_at_that_path(
    tmp_path: Path, sqlite_url: str, change: str
) -> None:
    path = tmp_path / "tether.db"
    Store(sqlite_url).close()
    other = tmp_path / "other.db"
    Store(f"sqlite:///{other}").close()  # a valid, empty store to swap in
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    first, second = new_trace_id(), new_trace_id()
    child = subprocess.Popen(
        [sys.executable, str(script), sqlite_url, first, second],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "written", child.communicate(timeout=60)
        for file in _files(path):
            file.unlink(missing_ok=True)
        if change == "replaced":
            os.replace(other, path)
        out, err = child.communicate("go\n", timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert "noticed" in out
    assert "deleted or replaced" in err and str(path) in err
    assert "kept in the trace journal" in err

    if change == "deleted":
        assert not path.exists(), "no fresh empty store was made in its place"
    else:
        replaced = Store(sqlite_url)
        try:  # nothing was written into the file swapped in
            assert replaced.list_runs() == []
        finally:
            replaced.close()

    # The next process opening a store at that path writes what was kept.
    writer = writer_for(sqlite_url)
    assert writer.flush(timeout=60)
    run = writer.store.get_run(second)
    assert (run.agent_name, run.status) == ("after", "completed")


@pytest.mark.parametrize("change", ["file deleted", "folder deleted", "replaced"])
def test_a_server_does_not_acknowledge_what_it_writes_into_a_deleted_file(
    tmp_path: Path, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's pooled connections keep the file they opened: once it was deleted (or its
    folder, or another file moved to its path), OTLP requests were answered 200 and new keys
    shown once, all committed into the unlinked file, gone when the server stopped and seen
    by no other process. Such a commit is refused: a 503 (an exporter sends the spans again),
    the server's log naming the file, nothing acknowledged that is not in the store at that
    path. (Reading the caller's key fails first now: the credentials cannot be checked.)"""
    folder = tmp_path / "store"
    path = folder / "tether.db"
    url = f"sqlite:///{path}"
    other = tmp_path / "other.db"
    Store(f"sqlite:///{other}").close()
    _, key = AccessStore(url).create_key("default", Role.ADMIN)
    headers = {"Authorization": f"Bearer {key}"}

    def spans() -> dict[str, object]:
        trace, root = new_trace_id(), new_span_id()
        return json_request(json_span(root, None, "agent", {"input.value": "hi"}, trace=trace))

    app = create_app(ServerConfig(database_url=url))
    with serving(app) as base, httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        assert c.post("/v1/traces", json=spans()).status_code == 200
        if change == "folder deleted":
            shutil.rmtree(folder)
        else:
            for file in _files(path):
                file.unlink(missing_ok=True)
            if change == "replaced":
                os.replace(other, path)
        sent = c.post("/v1/traces", json=spans())
        made = c.post("/api/v1/keys", json={"role": "viewer"})
    assert sent.status_code == 503, sent.text
    assert made.status_code == 503, made.text
    assert "deleted or replaced" in caplog.text and str(path) in caplog.text
    if change == "replaced":
        replaced = Store(url)
        try:  # nothing was written into the file swapped in either
            assert replaced.list_runs() == []
        finally:
            replaced.close()


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_a_running_server_does_not_read_a_deleted_file(tmp_path: Path, change: str) -> None:
    """`tether serve` went on listing the runs of a store file deleted (or replaced by another
    store) under it, read from the unlinked file, while its writes were refused: every read
    fails too, naming the file, and no fresh empty file is made at the path."""
    path = tmp_path / "store" / "tether.db"
    url = f"sqlite:///{path}"
    other = tmp_path / "other.db"
    Store(f"sqlite:///{other}").close()
    env = {**os.environ, "TETHER_DATABASE_URL": url}
    with tether_serve("--dev", env=env) as served, httpx.Client(base_url=served.url) as c:
        trace, root = new_trace_id(), new_span_id()
        spans = json_request(json_span(root, None, "agent", {"input.value": "hi"}, trace=trace))
        assert c.post("/v1/traces", json=spans).status_code == 200
        assert [r["run_id"] for r in c.get("/api/v1/runs").json()["runs"]] == [root]
        for file in _files(path):
            file.unlink(missing_ok=True)
        if change == "replaced":
            os.replace(other, path)
        listed = c.get("/api/v1/runs")
        shown = c.get(f"/api/v1/runs/{root}")
        page = c.get("/runs")
    assert listed.status_code == 503, listed.text
    assert "deleted or replaced" in listed.text and str(path) in listed.text
    assert shown.status_code == 503, shown.text
    assert page.status_code == 503
    if change == "deleted":
        assert not path.exists(), "no fresh empty store was made in its place"
