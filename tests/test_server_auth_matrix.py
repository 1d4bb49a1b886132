"""Every role x project x route, API and UI pages alike (OTLP ingest, Prometheus and the keys
page too): who gets 200, 401, 403 or 404."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from fakes.server import serving
from fakes.stored_runs import add_run
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store, tables


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
