"""Where Tether keeps local state, and the database timeouts, from the environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fakes.cli import run_cli
from tether.core import Settings, TetherError


def test_home_is_per_user_unless_tether_home_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TETHER_HOME")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.home == tmp_path / "user" / ".local" / "share" / "tether"
    assert settings.database_url == f"sqlite:///{settings.home / 'tether.db'}"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert Settings.from_env().home == tmp_path / "data" / "tether"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec says: ignore it
    assert Settings.from_env().home == tmp_path / "user" / ".local" / "share" / "tether"
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "explicit"))
    assert Settings.from_env().home == tmp_path / "explicit"


def test_a_relative_tether_home_is_refused_from_every_folder(tmp_path: Path) -> None:
    """`TETHER_HOME=data` named another store from each folder: a run made in one folder was
    not listed from another. It is refused, naming the variable and the absolute path."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    (first / "s.yaml").write_text('steps: [{text: "hello {input}"}]\n')
    (first / "a.yaml").write_text(
        "name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: s.yaml}\n"
    )
    env = {**os.environ, "TETHER_HOME": "data"}
    ran = run_cli("run", "a.yaml", "-i", "hi", "--json", cwd=first, env=env)
    assert ran.returncode == 1
    refused = json.loads(ran.stdout)
    assert "TETHER_HOME must be an absolute path" in refused["error"]
    assert f"TETHER_HOME={first / 'data'}" in refused["hint"]
    listed = run_cli("traces", "list", cwd=second, env=env)
    assert listed.returncode == 1 and "TETHER_HOME" in listed.stderr
    assert not (first / "data").exists() and not (second / "data").exists()


def test_tether_home_may_start_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TETHER_HOME", "~/state")
    assert Settings.from_env().home == tmp_path / "state"


def test_database_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert (settings.db_connect_timeout_s, settings.db_statement_timeout_s) == (5.0, 30.0)
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "2.5")
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "0")
    settings = Settings.from_env()
    assert (settings.db_connect_timeout_s, settings.db_statement_timeout_s) == (2.5, 0.0)
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", bad)
        with pytest.raises(TetherError, match="TETHER_DB_CONNECT_TIMEOUT_S") as info:
            Settings.from_env()
        assert info.value.hint


def test_a_run_in_one_folder_is_listed_from_another_and_no_folder_gets_a_store(
    tmp_path: Path,
) -> None:
    """Without TETHER_HOME, `tether run` in one folder and `tether traces list` in another
    share the user's store, and neither folder gets a `.tether`."""
    user = tmp_path / "user"
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (user, first, second):
        folder.mkdir()
    (first / "s.yaml").write_text('steps: [{text: "hello {input}"}]\n')
    (first / "a.yaml").write_text(
        "name: a\nmodel: {provider: scripted, name: gpt-4.1-mini, script: s.yaml}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TETHER_HOME", "XDG_DATA_HOME")}
    env["HOME"] = str(user)

    def tether(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=cwd, env=env)

    ran = tether(first, "run", "a.yaml", "-i", "hi", "--json")
    assert ran.returncode == 0, ran.stderr
    trace_id = json.loads(ran.stdout)["trace_id"]
    listed = tether(second, "traces", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["trace_id"] for r in json.loads(listed.stdout)["runs"]] == [trace_id]
    assert not (first / ".tether").exists() and not (second / ".tether").exists()
    assert (user / ".local" / "share" / "tether" / "tether.db").is_file()


def test_postgres_sessions_get_the_statement_timeout_and_keep_their_schema(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from tether.store import create_store_engine

    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "1.5")
    engine = create_store_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1500ms"
            schema = pg_url.rsplit("search_path%3D", 1)[1]
            assert conn.execute(text("SHOW search_path")).scalar() == schema
    finally:
        engine.dispose()


def test_the_variables_every_run_reads_follow_os_environ_as_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``env_get`` (the cheap read behind ``TETHER_PROJECT`` and the payload limit) sees what
    ``os.environ`` holds at each call: set, changed, non-ASCII, deleted."""
    from tether.core.settings import env_get, max_payload_chars_from_env, project_from_env

    monkeypatch.delenv("TETHER_PROJECT", raising=False)
    assert env_get("TETHER_PROJECT") is None
    assert project_from_env() == "default"
    monkeypatch.setenv("TETHER_PROJECT", "acme")
    assert project_from_env() == "acme"
    os.environ["TETHER_PROJECT"] = "other"
    assert env_get("TETHER_PROJECT") == "other"
    monkeypatch.setenv("TETHER_TEST_TEXT", "café \u00e9t\u00e9")
    assert env_get("TETHER_TEST_TEXT") == os.environ.get("TETHER_TEST_TEXT") == "café été"
    monkeypatch.delenv("TETHER_PROJECT")
    assert env_get("TETHER_PROJECT") is None
    monkeypatch.setenv("TETHER_MAX_PAYLOAD_CHARS", "1_000")
    assert max_payload_chars_from_env() == 1000
    monkeypatch.setenv("TETHER_PROJECT", "Not A Project")
    with pytest.raises(TetherError, match="TETHER_PROJECT"):
        project_from_env()
