"""Every role x project x route, API and UI pages alike (OTLP ingest, Prometheus and the keys
page too): who gets 200, 401, 403 or 404."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from fakes.cli import run_cli
from fakes.server import serving
from fakes.stored_runs import add_run
from tether import Agent
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store, tables
from tether.store.audit import iter_audit
from tether.store.audit_verify import verify_audit
from tether.trace import writer_for


@dataclass
class World:
    url: str
    keys: dict[str, str]
    run: str
    span: str
    db: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'tether.db'}"
    store = Store(url)
    seeded = add_run(store, blocked=True)
    add_run(store, project="acme", input_text="acme only")
    access = AccessStore(url)
    access.create_project("acme")
    keys = {role.value: access.create_key("default", role)[1] for role in Role}
    keys["acme_viewer"] = access.create_key("acme", Role.VIEWER)[1]
    keys["acme_admin"] = access.create_key("acme", Role.ADMIN)[1]
    revoked_info, keys["revoked"] = access.create_key("default", Role.ADMIN)
    access.revoke_key(revoked_info.key_id)
    keys["expired"] = access.create_key("default", Role.ADMIN, expires_ns=time.time_ns() - 1)[1]
    with serving(create_app(ServerConfig(database_url=url))) as base:
        yield World(base, keys, seeded.run_id, seeded.span_ids[2], url)


CALLERS = (
    "none",
    "revoked",
    "expired",
    "agent",
    "viewer",
    "developer",
    "admin",
    "acme_viewer",
    "acme_admin",
)
READ_ROUTES = (
    "/api/v1/runs",
    "/api/v1/runs/{run}",
    "/api/v1/runs/{run}/spans",
    "/api/v1/runs/{run}/spans/{span}",
    "/api/v1/agents",
    "/api/v1/metrics",
    "/api/v1/projects",
    "/runs",
    "/runs/{run}",
    "/runs/{run}/spans/{span}",
    "/runs/{run}/children?parent={run}",
    "/dashboard",
)
RUN_ROUTES = {r for r in READ_ROUTES if "{run}" in r}


def expected_read(caller: str, route: str) -> int:
    page = not route.startswith("/api/")
    if caller in ("none", "revoked", "expired"):
        return 303 if page else 401
    if caller == "agent":
        return 403
    if caller.startswith("acme") and route in RUN_ROUTES:
        return 404  # the default project's run, seen from acme
    return 200


@pytest.mark.parametrize(("caller", "route"), list(itertools.product(CALLERS, READ_ROUTES)))
def test_reads(world: World, caller: str, route: str) -> None:
    headers = {} if caller == "none" else {"Authorization": f"Bearer {world.keys[caller]}"}
    path = route.format(run=world.run, span=world.span)
    answer = httpx.get(world.url + path, headers=headers, follow_redirects=False, timeout=30)
    assert answer.status_code == expected_read(caller, route), answer.text[:200]
    if caller.startswith("acme"):
        # Nothing of the default project's run: not its input, not its spans.
        assert "Where is my order" not in answer.text and world.span not in answer.text


WRITE_EXPECTED = {
    # caller: (list keys, create a viewer key, create a developer key, create an admin key,
    # create a project). A developer makes only keys that can do less than its own
    # (roles.GRANTABLE), the same through the API and the keys page (KEYS_PAGE_EXPECTED).
    "none": (401, 401, 401, 401, 401),
    "revoked": (401, 401, 401, 401, 401),
    "expired": (401, 401, 401, 401, 401),
    "agent": (403, 403, 403, 403, 403),
    "viewer": (403, 403, 403, 403, 403),
    "developer": (200, 201, 403, 403, 403),
    "admin": (200, 201, 201, 201, 201),
    "acme_viewer": (403, 403, 403, 403, 403),
    "acme_admin": (200, 201, 201, 201, 201),
}


@pytest.mark.parametrize("caller", CALLERS)
def test_key_and_project_management(world: World, caller: str) -> None:
    headers = {} if caller == "none" else {"Authorization": f"Bearer {world.keys[caller]}"}
    with httpx.Client(base_url=world.url, headers=headers, timeout=30) as c:
        got = (
            c.get("/api/v1/keys").status_code,
            c.post("/api/v1/keys", json={"role": "viewer"}).status_code,
            c.post("/api/v1/keys", json={"role": "developer"}).status_code,
            c.post("/api/v1/keys", json={"role": "admin"}).status_code,
            c.post("/api/v1/projects", json={"name": f"p-{caller.replace('_', '-')}"}).status_code,
        )
        assert got == WRITE_EXPECTED[caller]
        if got[0] == 200:  # a key lists only its own project's keys
            projects = {k["project"] for k in c.get("/api/v1/keys").json()}
            assert projects == {"acme" if caller.startswith("acme") else "default"}


@pytest.mark.parametrize("caller", ["viewer", "developer", "admin"])
def test_a_signed_in_browser_has_the_same_rights(world: World, caller: str) -> None:
    with httpx.Client(base_url=world.url, timeout=30, follow_redirects=False) as c:
        signed = c.post("/login", data={"key": world.keys[caller], "next": "/dashboard"})
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
        assert c.get("/runs").status_code == 200
        assert c.get(f"/runs/{world.run}").status_code == 200
        assert c.get("/api/v1/keys").status_code == (403 if caller == "viewer" else 200)
        # The keys page opens for the same keys as the keys API.
        assert c.get("/keys").status_code == (403 if caller == "viewer" else 200)
        switched = c.post("/switch-project", data={"project": "acme"})
        if caller == "admin":
            assert switched.status_code == 303
            page = c.get("/runs")
            assert "acme only" in page.text and "Where is my order" not in page.text
            assert c.get(f"/runs/{world.run}").status_code == 404
        else:
            assert switched.status_code == 403
            assert "acme only" not in c.get("/runs").text
        # No project that does not exist, for anyone.
        assert c.post("/switch-project", data={"project": "nope"}).status_code in (403, 404)


# -- approvals ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paused(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A run of the default project paused on an escalated refund, for each caller."""
    from test_approvals import agent_dir

    agent = Agent.from_yaml(agent_dir(tmp_path_factory.mktemp("agent")), trace=world.db)
    runs: dict[str, str] = {}
    for caller in CALLERS:
        result = agent.run_sync("please refund 500 on 7")
        assert result.outcome == "escalated"
        runs[caller] = result.run_id
    writer_for(world.db).flush()
    return runs


APPROVALS_EXPECTED = {
    # caller: (list, approve its run, the second answer): a viewer reads, a developer or admin
    # of the project answers; from acme the default project's run does not exist.
    "none": (401, 401, 401),
    "revoked": (401, 401, 401),
    "expired": (401, 401, 401),
    "agent": (403, 403, 403),
    "viewer": (200, 403, 403),
    "developer": (200, 200, 409),
    "admin": (200, 200, 409),
    "acme_viewer": (200, 403, 403),
    "acme_admin": (200, 404, 404),
}


@pytest.mark.parametrize("caller", CALLERS)
def test_approvals(world: World, paused: dict[str, str], caller: str) -> None:
    run = paused[caller]
    with httpx.Client(base_url=world.url, headers=_bearer(world, caller), timeout=30) as c:
        listing = c.get("/api/v1/approvals", params={"limit": 500})
        approved = c.post(
            f"/api/v1/approvals/{run}/approve",
            json={"reason": "checked"},
            headers={"User-Agent": "ops-console/2.1 (on-call)"},
        )
        again = c.post(f"/api/v1/approvals/{run}/deny", json={"reason": "second thoughts"})
        got = (listing.status_code, approved.status_code, again.status_code)
        assert got == APPROVALS_EXPECTED[caller], (listing.text[:200], approved.text[:300])
        if listing.status_code == 200:
            listed = {a["run_id"] for a in listing.json()["approvals"]}
            if caller.startswith("acme"):
                assert listed.isdisjoint(paused.values())
            else:  # every run still waiting, this caller's among them
                assert run in listed
        if approved.status_code != 200:
            return
        answer = approved.json()
        key_id = world.keys[caller].split("_")[1]
        assert answer["approved"] is True and answer["reason"] == "checked"
        assert answer["approver"] == f"key {key_id}" and answer["tool"] == "issue_refund"
        assert again.json()["error"].startswith(
            f"call {answer['call_id']} (issue_refund) of run {run} was approved already by "
            f"key {key_id} (audit entry "
        )
        assert again.json()["error"].endswith("an answer is final")
        # Listed as answered, not waiting.
        waiting = {a["run_id"] for a in c.get("/api/v1/approvals").json()["approvals"]}
        assert run not in waiting
        every = c.get("/api/v1/approvals", params={"waiting": "false", "limit": 500}).json()
        [row] = [a for a in every["approvals"] if a["run_id"] == run]
        assert row["state"] == "approved" and row["answer"]["entry_id"] == answer["entry_id"]
    # One approval entry for the run, in the hash-chained audit log, naming the key.
    store = Store(world.db)
    try:
        with store.engine.connect() as conn:
            entries = [e for e, _, _ in iter_audit(conn) if e.run_id == run]
            verified = verify_audit(conn, None)
    finally:
        store.close()
    assert [e.kind for e in entries] == ["decision", "approval"]  # the escalation, the answer
    entry = entries[1]
    assert entry.entry_id == answer["entry_id"] and verified.ok
    assert entry.actor == {
        "via": "api",
        "project": "default",
        "key_id": key_id,
        "role": caller,
        "approver": f"key {key_id}",
        "client": "127.0.0.1",  # who sent it, from where and with what, for an incident review
        "user_agent": "ops-console/2.1 (on-call)",
    }
    assert entry.details["approved"] is True and entry.details["reason"] == "checked"


def test_approvals_bad_requests(world: World, paused: dict[str, str]) -> None:
    with httpx.Client(base_url=world.url, headers=_bearer(world, "admin"), timeout=30) as c:
        done = c.post(f"/api/v1/approvals/{world.run}/approve")  # a run that did not pause
        assert done.status_code == 409 and "not paused" in done.json()["error"]
        assert c.post("/api/v1/approvals/nope/approve").status_code == 404
        run = paused["none"]  # nobody answered it in the matrix
        wrong = c.post(f"/api/v1/approvals/{run}/approve", json={"call_id": "call_9"})
        assert wrong.status_code == 409 and "not on 'call_9'" in wrong.json()["error"]
        extra = c.post(f"/api/v1/approvals/{run}/approve", json={"by": "mallory"})
        assert extra.status_code == 422  # who answers comes from the key, not the body
        long = c.post(f"/api/v1/approvals/{run}/deny", json={"reason": "x" * 2001})
        assert long.status_code == 422
        bad = c.get("/api/v1/approvals", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and "not a page cursor" in bad.json()["error"]
        # Keyset pages: one run a page, every paused run once, newest first.
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 1, "waiting": "false"}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/api/v1/approvals", params=params).json()
            seen += [a["run_id"] for a in page["approvals"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(paused.values()) and len(seen) == len(set(seen))
        assert seen == list(reversed(list(paused.values())))


def test_answers_racing_for_one_call_record_one(world: World, paused: dict[str, str]) -> None:
    """Eight answers at once, approvals and denials from two keys: one is recorded; the
    other key's are told it was answered already (409), the same key's same answer given
    again is that recorded answer (200: a retry); one approval entry in the audit log."""
    run = paused["revoked"]  # nobody could answer it in the matrix
    start = threading.Barrier(8)

    def answer(i: int) -> httpx.Response:
        caller = ("admin", "developer")[i % 2]
        start.wait()
        return httpx.post(
            f"{world.url}/api/v1/approvals/{run}/{('approve', 'deny')[i % 2]}",
            headers=_bearer(world, caller),
            timeout=60,
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(answer, range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 4 + [409] * 4, [a.text[:200] for a in answers]
    recorded = {a.json()["entry_id"] for a in answers if a.status_code == 200}
    assert len(recorded) == 1
    winner = next(i for i, a in enumerate(answers) if a.status_code == 200) % 2
    assert all(a.status_code == (200 if i % 2 == winner else 409) for i, a in enumerate(answers))
    assert all("an answer is final" in a.json()["error"] for a in answers if a.status_code == 409)
    store = Store(world.db)
    try:
        with store.engine.connect() as conn:
            kinds = [e.kind for e, _, _ in iter_audit(conn) if e.run_id == run]
    finally:
        store.close()
    assert kinds.count("approval") == 1


def test_a_key_whose_name_holds_control_characters_answers_as_one_clean_line(
    tmp_path: Path,
) -> None:
    """The approver is the key's name and id. A name holding an escape sequence (names are
    free text up to 128 characters) made every answer of that key a 400 'the approver holds
    control characters', a fault of no request; one holding a newline was recorded raw and
    broke the row ``tether approvals list`` prints. Both answer, the name on one line."""
    from test_approvals import agent_dir

    url = f"sqlite:///{tmp_path / 'names.db'}"
    Store(url).close()
    (tmp_path / "agent").mkdir()
    agent = Agent.from_yaml(agent_dir(tmp_path / "agent"), trace=url)
    runs = [agent.run_sync("please refund 500 on 7").run_id for _ in range(3)]
    writer_for(url).flush()
    access = AccessStore(url)
    names = {  # the key's name: how the answer names its approver (before the key id)
        "ops\x1b[2Jteam": "ops\ufffd[2Jteam",
        "ops\nteam": "ops\ufffdteam",
        " \t ": "",
    }
    with serving(create_app(ServerConfig(database_url=url))) as base:
        for run, (name, shown) in zip(runs, names.items(), strict=True):
            info, key = access.create_key("default", Role.DEVELOPER, name=name)
            answered = httpx.post(
                f"{base}/api/v1/approvals/{run}/approve",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert answered.status_code == 200, answered.text
            expected = f"{shown} (key {info.key_id})" if shown else f"key {info.key_id}"
            assert answered.json()["approver"] == expected
    listed = run_cli("--database-url", url, "approvals", "list")
    rows = [line for line in listed.stdout.splitlines() if not line.startswith("    ")]
    assert sorted(row.split()[0] for row in rows) == sorted(runs), listed.stdout


def test_an_admin_answering_for_another_project_is_audited_with_its_own(tmp_path: Path) -> None:
    """An admin key may act on any project (``?project=NAME``); its answer's audit entry named
    the project acted on, the key's id and role, but not the project the key belongs to."""
    from test_approvals import agent_dir

    url = f"sqlite:///{tmp_path / 'cross.db'}"
    Store(url).close()
    (tmp_path / "agent").mkdir()
    run = Agent.from_yaml(agent_dir(tmp_path / "agent"), trace=url).run_sync(
        "please refund 500 on 7"
    )
    writer_for(url).flush()
    access = AccessStore(url)
    access.create_project("acme")
    acme, acme_key = access.create_key("acme", Role.ADMIN)
    mine, my_key = access.create_key("default", Role.ADMIN)
    with serving(create_app(ServerConfig(database_url=url))) as base:
        answered = httpx.post(
            f"{base}/api/v1/approvals/{run.run_id}/approve",
            params={"project": "default"},
            headers={"Authorization": f"Bearer {acme_key}"},
            timeout=30,
        )
        assert answered.status_code == 200, answered.text
        made = httpx.post(
            f"{base}/api/v1/keys",
            json={"role": "viewer"},
            headers={"Authorization": f"Bearer {my_key}"},
            timeout=30,
        )
        assert made.status_code in (200, 201), made.text
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            entries = [e for e, _, _ in iter_audit(conn)]
    finally:
        store.close()
    (approval,) = [e for e in entries if e.kind == "approval"]
    assert approval.actor == {
        "via": "api",
        "project": "default",
        "key_id": acme.key_id,
        "key_project": "acme",
        "role": "admin",
        "approver": f"key {acme.key_id}",
        "client": "127.0.0.1",
        "user_agent": f"python-httpx/{httpx.__version__}",
    }
    (created,) = [e for e in entries if e.kind == "key_created" and e.actor.get("via") == "api"]
    assert created.actor == {  # a key acting on its own project: as before
        "via": "api",
        "project": "default",
        "key_id": mine.key_id,
        "role": "admin",
        "client": "127.0.0.1",
        "user_agent": f"python-httpx/{httpx.__version__}",
    }


@pytest.mark.parametrize(
    ("trusted", "recorded"), [(None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9")]
)
def test_the_audited_client_address_is_forwarded_only_by_trusted_proxies(
    tmp_path: Path, trusted: str | None, recorded: str
) -> None:
    """uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default: any local user (or
    anyone through an SSH tunnel) wrote another address into the audit entry of a key made
    or an approval given. ``tether serve`` believes no proxy unless told which."""
    import os

    from fakes.server import tether_serve

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    _, admin_key = AccessStore(url).create_key("default", Role.ADMIN)
    args = () if trusted is None else ("--forwarded-allow-ips", trusted)
    with tether_serve(*args, env={**os.environ, "TETHER_DATABASE_URL": url}) as served:
        made = httpx.post(
            f"{served.url}/api/v1/keys",
            json={"role": "viewer"},
            headers={"Authorization": f"Bearer {admin_key}", "X-Forwarded-For": "203.0.113.9"},
            timeout=30,
        )
        assert made.status_code in (200, 201), made.text
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            entries = [e for e, _, _ in iter_audit(conn)]
    finally:
        store.close()
    (created,) = [e for e in entries if e.kind == "key_created" and e.actor.get("via") == "api"]
    assert created.actor["client"] == recorded


# -- OTLP in, Prometheus, the keys page ---------------------------------------------------------

INGEST_EXPECTED = {
    # Agents send traces, and so may developers and admins (their own tooling); a viewer reads
    # only. The spans land in the key's own project.
    "none": 401,
    "revoked": 401,
    "expired": 401,
    "agent": 200,
    "viewer": 403,
    "developer": 200,
    "admin": 200,
    "acme_viewer": 403,
    "acme_admin": 200,
}


@pytest.mark.parametrize("caller", CALLERS)
def test_otlp_ingest(world: World, caller: str) -> None:
    from test_otlp_ingest import _request, _span

    n = CALLERS.index(caller) + 1
    trace, span = f"{0xABC0 + n:032x}", f"{0xABC0 + n:016x}"
    body = _request(_span(span, None, "chat", {"gen_ai.operation.name": "chat"}, trace=trace))
    answer = httpx.post(f"{world.url}/v1/traces", json=body, headers=_bearer(world, caller))
    assert answer.status_code == INGEST_EXPECTED[caller], answer.text[:200]
    access = AccessStore(world.db)
    try:
        with access.engine.connect() as conn:
            runs = tables.runs.c
            stored = conn.execute(select(runs.project).where(runs.trace_id == trace)).all()
    finally:
        access.engine.dispose()
    if answer.status_code == 200:
        assert [r.project for r in stored] == ["acme" if caller.startswith("acme") else "default"]
    else:
        assert stored == []  # nothing of a refused batch is kept


METRICS_EXPECTED = {
    "none": 401,
    "revoked": 401,
    "expired": 401,
    "agent": 403,
    "viewer": 200,
    "developer": 200,
    "admin": 200,
    "acme_viewer": 200,
    "acme_admin": 200,
}


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("caller", CALLERS)
def test_prometheus_metrics(
    world: World, caller: str, public: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.server import prometheus

    prometheus._cache.clear()
    if public:
        monkeypatch.setenv(prometheus.PUBLIC_ENV, "1")
    else:
        monkeypatch.delenv(prometheus.PUBLIC_ENV, raising=False)
    answer = httpx.get(f"{world.url}/metrics", headers=_bearer(world, caller), timeout=30)
    if public:  # a scraper without a key: every project's series, whoever asks
        assert answer.status_code == 200
        assert 'project="acme"' in answer.text and 'project="default"' in answer.text
        return
    assert answer.status_code == METRICS_EXPECTED[caller], answer.text[:200]
    if answer.status_code != 200:
        assert "tether_runs_total" not in answer.text
        return
    projects = set(re.findall(r'project="([^"]*)"', answer.text))
    if caller.endswith("admin"):
        assert {"acme", "default"} <= projects  # an admin key sees every project
    else:
        assert projects == {"acme" if caller.startswith("acme") else "default"}


KEYS_PAGE_EXPECTED = {
    # caller: (GET /keys, POST /keys a viewer key, POST /keys a developer key,
    # GET /keys/{a default viewer key}/revoke, GET /keys/{a default admin key}/revoke):
    # the same rights as the keys API (WRITE_EXPECTED).
    "none": (303, 303, 303, 303, 303),
    "revoked": (303, 303, 303, 303, 303),
    "expired": (303, 303, 303, 303, 303),
    "agent": (403, 403, 403, 403, 403),
    "viewer": (403, 403, 403, 403, 403),
    "developer": (200, 201, 403, 200, 403),
    "admin": (200, 201, 201, 200, 200),
    "acme_viewer": (403, 403, 403, 403, 403),
    "acme_admin": (200, 201, 201, 404, 404),  # a key of another project: not found from acme
}


@pytest.mark.parametrize("caller", CALLERS)
def test_keys_page(world: World, caller: str) -> None:
    target = world.keys["viewer"].split("_")[1]
    admin_key = world.keys["admin"].split("_")[1]
    with httpx.Client(
        base_url=world.url, headers=_bearer(world, caller), timeout=30, follow_redirects=False
    ) as c:
        listing = c.get("/keys")
        made = c.post("/keys", data={"role": "viewer", "expires": "1d", "name": "matrix"})
        developer = c.post("/keys", data={"role": "developer", "expires": "1d"})
        got = (
            listing.status_code,
            made.status_code,
            developer.status_code,
            c.get(f"/keys/{target}/revoke").status_code,
            c.get(f"/keys/{admin_key}/revoke").status_code,
        )
        assert got == KEYS_PAGE_EXPECTED[caller]
        if listing.status_code == 200:
            # The project's keys only, and no key's text.
            own = "acme" if caller.startswith("acme") else "default"
            assert f"project {own}" in listing.text
            other_id = world.keys["acme_viewer" if own == "default" else "viewer"].split("_")[1]
            assert other_id not in listing.text and "tth_" not in listing.text
        if made.status_code != 201:
            assert "tth_" not in made.text
        if developer.status_code != 201:
            assert "tth_" not in developer.text


def _bearer(world: World, caller: str) -> dict[str, str]:
    return {} if caller == "none" else {"Authorization": f"Bearer {world.keys[caller]}"}


@pytest.mark.parametrize("role", list(Role))
def test_any_key_may_revoke_itself_and_only_itself(world: World, role: Role) -> None:
    """Whatever its role, a key's holder can stop it (a leaked key); a key without
    ``manage_keys`` still may not revoke another (403)."""
    access = AccessStore(world.db)
    mine, key = access.create_key("default", role, name=f"self-{role.value}")
    other, _ = access.create_key("default", Role.AGENT, name="other")
    access.engine.dispose()
    with httpx.Client(base_url=world.url, timeout=30) as c:
        bearer = {"Authorization": f"Bearer {key}"}
        others = c.delete(f"/api/v1/keys/{other.key_id}", headers=bearer).status_code
        assert others == (200 if role in (Role.ADMIN, Role.DEVELOPER) else 403)
        gone = c.delete(f"/api/v1/keys/{mine.key_id}", headers=bearer)
        assert gone.status_code == 200 and gone.json()["state"] == "revoked"
        assert c.get("/api/v1/whoami", headers=bearer).status_code == 401


def test_a_checkpoint_that_cannot_be_read_is_the_servers_fault_not_the_clients(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A paused run whose checkpoint was edited outside Tether: answering it is a 500 that
    says so (it was a 400, blaming the request), and nothing is recorded."""
    import sqlite3

    from test_approvals import agent_dir

    agent = Agent.from_yaml(agent_dir(tmp_path_factory.mktemp("corrupt")), trace=world.db)
    result = agent.run_sync("please refund 500 on 7")
    assert result.outcome == "escalated"
    writer_for(world.db).flush()
    with sqlite3.connect(world.db.removeprefix("sqlite:///")) as db:
        changed = db.execute(
            'UPDATE tether_checkpoints SET state = \'{"schema_version": "x"}\' WHERE run_id = ?',
            (result.run_id,),
        ).rowcount
    assert changed >= 1
    answer = httpx.post(
        f"{world.url}/api/v1/approvals/{result.run_id}/approve",
        json={"reason": "ok"},
        headers=_bearer(world, "admin"),
        timeout=30,
    )
    assert answer.status_code == 500, answer.text
    assert "checkpoint" in answer.json()["error"] and "cannot be read" in answer.json()["error"]
