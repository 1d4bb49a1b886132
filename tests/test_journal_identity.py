"""The trace journal is keyed by which store a URL reaches, not by how the URL is spelled:
records journaled with one password or host spelling are delivered under another, and
records nobody delivers are pointed out by `tether traces list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tether.core import new_span_id, new_trace_id, now_ns
from tether.store import RunRecord, Store, canonical_url, store_identity
from tether.trace import writer_for
from tether.trace.journal import RUN_START, Journal, encode, journal_dir

SCHEMA_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dx"


def test_store_identity_leaves_out_credentials_and_spellings() -> None:
    same = [
        "postgresql+psycopg://tether:old-secret@127.0.0.1:5432/traces?options=-csearch_path%3Dx",
        "postgresql://tether:new-secret@localhost/traces?options=-c%20search_path%3Dx",
        "postgresql://other@[::1]:5432/traces?options=-csearch_path%3Dx&sslmode=require"
        "&application_name=a&connect_timeout=3",
    ]
    identities = {store_identity(url) for url in same}
    assert len(identities) == 1
    (identity,) = identities
    assert "secret" not in identity and "tether@" not in identity and "other" not in identity
    assert identity == "postgresql://localhost:5432/traces?options=-csearch_path%3Dx"
    different = [
        "postgresql://tether@localhost:5432/traces?options=-csearch_path%3Dy",  # schema
        "postgresql://tether@localhost:5432/traces",
        "postgresql://tether@localhost:5433/traces?options=-csearch_path%3Dx",  # port
        "postgresql://tether@db.internal:5432/traces?options=-csearch_path%3Dx",  # host
        "postgresql://tether@localhost:5432/other?options=-csearch_path%3Dx",  # database
    ]
    assert len({store_identity(url) for url in different} | identities) == len(different) + 1


def test_sqlite_identity_is_the_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_identity("sqlite:///sub/../t.db") == f"sqlite:///{tmp_path / 't.db'}"
    assert store_identity(f"sqlite:///{tmp_path}/t.db") == f"sqlite:///{tmp_path / 't.db'}"


def _run_while_down(tmp_path: Path, url: str) -> dict[str, str]:
    """`tether run` in a process of its own, its store unreachable: the trace is journaled."""
    (tmp_path / "s.yaml").write_text('steps: [{text: "hello {input}"}]\n')
    spec = tmp_path / "a.yaml"
    spec.write_text("name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: s.yaml}\n")
    args = ["--database-url", url, "run", str(spec), "-i", "hi", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, str] = json.loads(done.stdout)
    assert answer["output"] == "hello hi"
    return answer


def test_records_journaled_with_another_password_and_host_spelling_are_delivered(
    tmp_path: Path, pg_url: str
) -> None:
    """A run made with an old password against `127.0.0.1` while the store was down is
    delivered by a process using the new password and `localhost`."""
    from fakes.tcp_proxy import TcpProxy, free_port

    Store(pg_url).close()
    port = free_port()
    old = pg_url.replace("postgres@127.0.0.1:5432", f"postgres:old-secret@127.0.0.1:{port}")
    new = pg_url.replace("postgresql+psycopg://postgres@127.0.0.1:5432", "postgresql://")
    new = new.replace("postgresql://", f"postgresql://postgres:new-secret@localhost:{port}")
    new += "&application_name=delivery"
    assert old != pg_url and new != pg_url
    answer = _run_while_down(tmp_path, old)

    # The journal folder names the store, credential-free, for `traces list` to point at.
    directory = journal_dir(Path(os.environ["TETHER_HOME"]), store_identity(old))
    stored = (directory / "store.json").read_text()
    assert json.loads(stored)["store"] == store_identity(new)
    assert "secret" not in stored and "postgres@" not in stored

    proxy = TcpProxy(port, ("127.0.0.1", 5432))
    try:
        writer = writer_for(new)
        assert writer.flush(timeout=60)
        assert writer.replayed >= 4
        run = writer.store.get_run(answer["trace_id"])
        assert (run.status, run.output) == ("completed", "hello hi")
    finally:
        from tether.trace import close_writers

        close_writers()
        proxy.close()


def test_traces_list_points_at_records_stranded_for_another_store(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Records journaled for a store this command does not use are named, on one stderr
    line, without credentials; `--json` output stays clean."""
    from fakes.tcp_proxy import free_port

    port = free_port()
    down = f"postgresql+psycopg://alice:s3cret@127.0.0.1:{port}/test?options=-csearch_path%3Dq"
    _run_while_down(tmp_path, down)
    done = subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", sqlite_url, "traces", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == []
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("warning:")
    assert f"postgresql://localhost:{port}/test?options=-csearch_path%3Dq" in lines[0]
    assert "s3cret" not in done.stderr and "alice" not in done.stderr
    assert "--database-url" in lines[0]


def test_records_in_a_folder_named_by_an_older_tether_are_delivered(pg_url: str) -> None:
    """Older versions named the folder by a hash of the whole URL: what a dead process left
    there is moved into the store's folder and written."""
    url = pg_url.replace("postgres@", "postgres:pw@")
    Store(url).close()
    home = Path(os.environ["TETHER_HOME"])
    legacy = journal_dir(home, canonical_url(url))
    assert legacy != journal_dir(home, store_identity(url))
    dead = Journal(legacy)
    trace_id = new_trace_id()
    run = RunRecord(
        trace_id=trace_id,
        run_id=new_span_id(),
        agent_name="old",
        agent_version="v1",
        started_ns=now_ns(),
    )
    run.attributes["tether.writer.id"] = dead.writer_id
    dead.append(encode(RUN_START, run)[0])
    dead.close()
    writer = writer_for(url)
    assert writer.flush(timeout=60)
    assert writer.store.get_run(trace_id).status == "failed"  # its process is gone
    assert not legacy.exists()


def test_a_huge_store_name_file_is_not_read_whole_and_is_replaced(tmp_path: Path) -> None:
    """A 50 MB ``store.json`` (not one Tether wrote) is refused after 64 KB, not loaded into
    memory, and naming the store again replaces it."""
    from tether.trace.journal import read_identity, write_identity

    folder = tmp_path / "journal"
    folder.mkdir()
    huge = folder / "store.json"
    with huge.open("wb") as file:
        file.write(b'{"store": "' + b"x" * (50 * 1024 * 1024) + b'"}')
    assert read_identity(folder) is None
    write_identity(folder, "sqlite:///somewhere/tether.db")
    assert read_identity(folder) == "sqlite:///somewhere/tether.db"
    assert huge.stat().st_size < 1024
