"""API keys and projects: stored hashed, shown once, expiring, revocable; the CLI that
manages them; sessions that never hold the key."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from fakes.cli import run_cli
from tether.core import TetherError
from tether.server.access import MAX_SESSIONS_PER_KEY, AccessNotFound, AccessStore, split_key
from tether.server.roles import Role, may_grant
from tether.store import tables


def test_a_key_is_stored_as_a_hash_and_checked(store_url: str) -> None:
    access = AccessStore(store_url)
    info, key = access.create_key("default", Role.VIEWER, name="ci")
    assert key.startswith(f"tth_{info.key_id}_") and len(key) > 50
    with access.engine.connect() as conn:
        stored = conn.execute(select(tables.api_keys)).mappings().one()
    secret = split_key(key)[1]  # type: ignore[index]
    assert secret not in json.dumps(dict(stored), default=str)
    assert len(stored["secret_sha256"]) == 64
    assert access.authenticate(key) == info
    # One character off, another key's id, a non-key: nothing.
    assert access.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert access.authenticate(key.replace(info.key_id, "0" * 16)) is None
    for junk in ("", "Bearer x", "tth_", "tth_zz_yy", "x" * 10_000, "tth_" + "0" * 16 + "_"):
        assert access.authenticate(junk) is None


def test_revoked_and_expired_keys_open_nothing(store_url: str) -> None:
    access = AccessStore(store_url)
    info, key = access.create_key("default", Role.DEVELOPER)
    token = access.open_session(info)
    assert access.session(token) is not None
    revoked = access.revoke_key(info.key_id)
    assert revoked.state(time.time_ns()) == "revoked"
    assert access.authenticate(key) is None
    assert access.session(token) is None  # its sessions ended with it
    assert access.revoke_key(info.key_id).revoked_ns == revoked.revoked_ns  # again: no change
    short, key2 = access.create_key("default", Role.VIEWER, expires_ns=time.time_ns() - 1)
    assert short.state(time.time_ns()) == "expired"
    assert access.authenticate(key2) is None
    with pytest.raises(AccessNotFound):
        access.revoke_key("0" * 16)


def test_projects(store_url: str) -> None:
    access = AccessStore(store_url)
    assert [n for n, _ in access.list_projects()] == ["default"]
    access.create_project("acme-prod")
    with pytest.raises(TetherError, match="exists already"):
        access.create_project("acme-prod")
    for bad in ("", "Acme", "a b", "../x", "x" * 65, "-x", "<script>"):
        with pytest.raises(TetherError, match="not a valid project name"):
            access.create_project(bad)
    with pytest.raises(AccessNotFound, match="no project"):
        access.create_key("nope", Role.VIEWER)
    access.create_key("acme-prod", Role.AGENT)
    assert [k.project for k in access.list_keys("acme-prod")] == ["acme-prod"]
    assert access.list_keys("default") == []


def test_sessions_hold_a_token_not_the_key(sqlite_url: str) -> None:
    access = AccessStore(sqlite_url)
    info, key = access.create_key("default", Role.ADMIN)
    token = access.open_session(info)
    assert token not in key and split_key(key)[1] != token  # type: ignore[index]
    with access.engine.connect() as conn:
        row = conn.execute(select(tables.sessions)).mappings().one()
    assert token not in json.dumps(dict(row)) and row["key_id"] == info.key_id
    access.create_project("other")
    access.switch_session(token, "other")
    assert access.session(token).project == "other"  # type: ignore[union-attr]
    access.close_session(token)
    assert access.session(token) is None
    assert access.session("") is None and access.session("x" * 1000) is None


def test_a_keys_sessions_are_capped_oldest_first(store_url: str) -> None:
    access = AccessStore(store_url)
    info, _ = access.create_key("default", Role.VIEWER)
    other, _ = access.create_key("default", Role.VIEWER)
    kept = access.open_session(other)
    tokens = [access.open_session(info) for _ in range(MAX_SESSIONS_PER_KEY + 2)]
    assert [access.session(t) is not None for t in tokens] == [False] * 2 + [
        True
    ] * MAX_SESSIONS_PER_KEY
    assert access.session(kept) is not None


def test_who_may_grant_what() -> None:
    assert all(may_grant(Role.ADMIN, r) for r in Role)
    assert may_grant(Role.DEVELOPER, Role.VIEWER) and may_grant(Role.DEVELOPER, Role.AGENT)
    # Only keys that can do less than its own: no copy of itself, no admin key.
    assert not may_grant(Role.DEVELOPER, Role.ADMIN)
    assert not may_grant(Role.DEVELOPER, Role.DEVELOPER)
    assert not any(may_grant(r, Role.VIEWER) for r in (Role.VIEWER, Role.AGENT))


def test_cli_keys_and_projects(sqlite_url: str) -> None:
    db = ["--database-url", sqlite_url]
    made = run_cli(*db, "projects", "create", "acme")
    assert made.returncode == 0, made.stderr
    created = run_cli(
        *db,
        "keys",
        "create",
        "-p",
        "acme",
        "-r",
        "viewer",
        "--expires",
        "30d",
        "-n",
        "dash",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    assert data["role"] == "viewer" and data["key"].startswith("tth_")
    days = (data["expires_ns"] - data["created_ns"]) / 86_400e9
    assert 29.99 < days < 30.01
    plain = run_cli(*db, "keys", "create", "-r", "agent")
    assert plain.stdout.startswith("tth_") and "shown once" in plain.stderr
    listed = run_cli(*db, "keys", "list", "--json")
    keys = json.loads(listed.stdout)
    assert {k["project"] for k in keys} == {"acme", "default"}
    assert data["key"] not in listed.stdout and "tth_" not in listed.stdout
    only = json.loads(run_cli(*db, "keys", "list", "-p", "acme", "--json").stdout)
    assert [k["key_id"] for k in only] == [data["key_id"]]
    revoked = run_cli(*db, "keys", "revoke", data["key_id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    states = {
        k["key_id"]: k["state"] for k in json.loads(run_cli(*db, "keys", "list", "--json").stdout)
    }
    assert states[data["key_id"]] == "revoked"
    projects = json.loads(run_cli(*db, "projects", "list", "--json").stdout)
    assert [p["name"] for p in projects] == ["acme", "default"]


def test_a_key_name_cannot_forge_a_row_of_keys_list(sqlite_url: str) -> None:
    """A key's name is free text (a developer key names the keys it makes over the API): one
    holding a newline printed a second line in ``tether keys list`` that read as an admin
    key's row. Each key is one line, its name's newline and tab shown as escapes."""
    access = AccessStore(sqlite_url)
    forged = "ops\nca306ff28edc2d16  default          admin     active\tx\x1b[2J"
    info, _ = access.create_key("default", Role.VIEWER, name=forged)
    listed = run_cli("--database-url", sqlite_url, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(info.key_id), listed.stdout
    shown = "ops\\nca306ff28edc2d16  default          admin     active\\tx\\x1b[2J"
    assert lines[0].endswith(shown)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "create", "-r", "viewer", "--expires", "soon"), "not a duration"),
        (("keys", "create", "-r", "viewer", "--expires", "0d"), "not a duration"),
        (("keys", "create", "-r", "viewer", "-p", "nope"), "no project 'nope'"),
        (("keys", "create", "-r", "root"), "'root' is not one of"),
        (("keys", "revoke", "0123456789abcdef"), "no API key"),
        (("projects", "create", "Bad Name"), "not a valid project name"),
    ],
)
def test_cli_bad_input_is_one_clear_error(
    sqlite_url: str, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("--database-url", sqlite_url, *args)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr


def _last_used(access: AccessStore, key_id: str) -> int | None:
    return access.get_key(key_id).last_used_ns


def test_a_keys_last_use_is_written_at_most_once_a_minute(store_url: str) -> None:
    access = AccessStore(store_url)
    try:
        info, key = access.create_key("default", Role.AGENT)
        assert info.last_used_ns is None and info.shown()["last_used_ns"] is None
        before = time.time_ns()
        access.note_used(access.authenticate(key))  # type: ignore[arg-type]
        access.wait_for_uses()
        first = _last_used(access, info.key_id)
        assert first is not None and first >= before
        # Used again at once, with the key as read before the write and after it: no write.
        access.note_used(info)
        access.note_used(access.authenticate(key))  # type: ignore[arg-type]
        access.wait_for_uses()
        assert _last_used(access, info.key_id) == first
        # Another process (its own AccessStore) within the minute: the UPDATE skips it too.
        other = AccessStore(store_url, engine=access.engine)
        other.note_used(info)
        other.wait_for_uses()
        assert _last_used(access, info.key_id) == first
        # A minute later (the stored use moved back by a minute; a process that has not
        # written it within the minute): written again.
        k = tables.api_keys.c
        with access.engine.begin() as conn:
            conn.execute(
                tables.api_keys.update()
                .where(k.key_id == info.key_id)
                .values(last_used_ns=first - 61 * 1_000_000_000)
            )
        later = AccessStore(store_url, engine=access.engine)
        later.note_used(access.get_key(info.key_id))
        later.wait_for_uses()
        assert _last_used(access, info.key_id) >= first  # type: ignore[operator]
        shown = access.list_keys("default")
        assert [k.last_used_ns for k in shown if k.key_id == info.key_id] == [
            _last_used(access, info.key_id)
        ]
    finally:
        access.wait_for_uses()
        access.engine.dispose()


def test_a_failed_last_use_write_is_logged_and_fails_nothing(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's write lock held elsewhere past the busy timeout: the use is not recorded,
    a warning says so (the key's id, never the key), and the next use tries again."""
    import sqlite3

    access = AccessStore(sqlite_url)
    try:
        info, key = access.create_key("default", Role.AGENT)
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            found = access.authenticate(key)  # reading works under another's write lock
            assert found is not None
            access.note_used(found)
            access.wait_for_uses()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert _last_used(access, info.key_id) is None
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any(info.key_id in m and "could not record" in m for m in warned), warned
        assert not any(key in m for m in warned)
        access.note_used(found)
        access.wait_for_uses()
        assert _last_used(access, info.key_id) is not None
    finally:
        access.engine.dispose()


def test_cli_revokes_a_key_given_whole_without_echoing_its_secret(sqlite_url: str) -> None:
    """A leaked key is what one has at hand: ``tether keys revoke tth_<id>_<secret>`` said
    "no API key 'tth_..._<secret>'", the secret echoed into the terminal and its logs."""
    made = run_cli("--database-url", sqlite_url, "keys", "create", "-r", "viewer", "--json")
    key = json.loads(made.stdout)["key"]
    key_id, secret = split_key(key) or ("", "")
    done = run_cli("--database-url", sqlite_url, "keys", "revoke", key)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"key {key_id} revoked"
    assert AccessStore(sqlite_url).authenticate(key) is None
    mangled = run_cli("--database-url", sqlite_url, "keys", "revoke", f"tth_{secret}")
    assert mangled.returncode == 2 and "give its id" in mangled.stderr
    assert secret not in mangled.stdout + mangled.stderr


def test_runs_of_a_project_never_created_are_not_hidden(store_url: str) -> None:
    """An agent run with ``TETHER_PROJECT=ghost`` (a project never made) wrote runs that no
    key could reach and no list named: ``projects list`` and the admin's project list name
    the project now (``created_ns`` None), an admin key may look at it, and a key for it is
    refused with what to do."""
    import httpx

    from fakes.dashboard_runs import write_runs
    from fakes.server import serving
    from tether.server import ServerConfig, create_app
    from tether.store import Store

    store = Store(store_url)
    try:
        write_runs(store, 30, start_ns=time.time_ns() - 10**12, span_ns=10**11)
    finally:
        store.close()  # projects default, acme and beta; only default was ever created
    access = AccessStore(store_url)
    access.create_project("acme")
    listed = access.list_projects()
    assert listed[0] == ("acme", listed[0][1]) and listed[0][1] is not None
    assert [n for n, _ in listed] == ["acme", "beta", "default"]
    assert dict(listed)["beta"] is None  # runs only
    with pytest.raises(AccessNotFound, match="runs were written under 'beta'") as refused:
        access.create_key("beta", Role.VIEWER)
    assert "tether projects create beta" in str(refused.value.hint)
    db = ["--database-url", store_url]
    shown = run_cli(*db, "projects", "list")
    assert shown.returncode == 0, shown.stderr
    assert "beta  runs only, never created (tether projects create beta)" in shown.stdout
    as_json = json.loads(run_cli(*db, "projects", "list", "--json").stdout)
    assert {p["name"]: p["created_ns"] is None for p in as_json} == {
        "acme": False,
        "beta": True,
        "default": False,
    }
    _, admin = access.create_key("default", Role.ADMIN)
    _, viewer = access.create_key("default", Role.VIEWER)
    with serving(create_app(ServerConfig(database_url=store_url))) as base:
        headers = {"Authorization": f"Bearer {admin}"}
        names = [p["name"] for p in httpx.get(f"{base}/api/v1/projects", headers=headers).json()]
        assert names == ["acme", "beta", "default"]
        runs = httpx.get(f"{base}/api/v1/runs", params={"project": "beta"}, headers=headers)
        assert runs.status_code == 200, runs.text
        assert runs.json()["runs"] and {r["project"] for r in runs.json()["runs"]} == {"beta"}
        headers = {"Authorization": f"Bearer {viewer}"}  # not an admin: its own project only
        assert [
            p["name"] for p in httpx.get(f"{base}/api/v1/projects", headers=headers).json()
        ] == ["default"]
        refused_view = httpx.get(f"{base}/api/v1/runs", params={"project": "beta"}, headers=headers)
        assert refused_view.status_code == 404
        nowhere = httpx.get(
            f"{base}/api/v1/runs",
            params={"project": "nowhere"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert nowhere.status_code == 404
