"""The server over real HTTP on 127.0.0.1: keys, projects, error answers, headers, sign-in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fakes.server import serving
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role


@dataclass
class Site:
    url: str
    access: AccessStore
    keys: dict[str, str]

    def client(self, role: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def site(sqlite_url: str) -> Iterator[Site]:
    access = AccessStore(sqlite_url)
    access.create_project("other")
    keys = {r.value: access.create_key("default", r)[1] for r in Role}
    keys["other_admin"] = access.create_key("other", Role.ADMIN)[1]
    keys["other_viewer"] = access.create_key("other", Role.VIEWER)[1]
    with serving(create_app(ServerConfig(database_url=sqlite_url))) as url:
        yield Site(url, access, keys)


def test_no_key_is_401_with_a_reason(site: Site) -> None:
    with site.client() as c:
        answer = c.get("/api/v1/whoami")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "API key is required" in answer.json()["error"]
        assert c.get("/api/v1/whoami", headers={"Authorization": "Basic abc"}).status_code == 401
        bad = c.get("/api/v1/whoami", headers={"Authorization": "Bearer tth_nope"})
        assert bad.status_code == 401 and "not valid" in bad.json()["error"]


def test_two_authorization_headers_are_refused(site: Site) -> None:
    """The first was taken: a proxy in front reading the last one (or adding its own) and the
    server disagreed on who was asking."""
    good, bad = f"Bearer {site.keys['viewer']}", "Bearer tth_nope"
    with site.client() as c:
        for pair in ([good, bad], [bad, good], [good, good]):
            answer = c.get("/api/v1/whoami", headers=[("Authorization", v) for v in pair])
            assert answer.status_code == 401, (pair, answer.text)
            assert "one Authorization header, not 2" in answer.json()["error"]
        assert c.get("/api/v1/whoami", headers={"Authorization": good}).status_code == 200


def test_revoked_key_is_401_at_once(site: Site) -> None:
    info = site.access.authenticate(site.keys["viewer"])
    assert info is not None
    with site.client("viewer") as c:
        assert c.get("/api/v1/whoami").json()["role"] == "viewer"
        site.access.revoke_key(info.key_id)
        assert c.get("/api/v1/whoami").status_code == 401


def test_keys_by_role(site: Site) -> None:
    with site.client("viewer") as c:
        assert c.post("/api/v1/keys", json={"role": "viewer"}).status_code == 403
        assert c.get("/api/v1/keys").status_code == 403
    with site.client("agent") as c:
        assert c.post("/api/v1/keys", json={"role": "agent"}).status_code == 403
    with site.client("developer") as c:
        made = c.post("/api/v1/keys", json={"role": "viewer", "name": "dash"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["key"].startswith("tth_") and body["project"] == "default"
        assert c.post("/api/v1/keys", json={"role": "admin"}).status_code == 403
        assert c.post("/api/v1/keys", json={"role": "developer"}).status_code == 403
        listed = c.get("/api/v1/keys").json()
        assert body["key_id"] in {k["key_id"] for k in listed}
        assert all("key" not in k for k in listed) and "tth_" not in str(listed)
        admin_id = site.access.authenticate(site.keys["admin"]).key_id  # type: ignore[union-attr]
        assert c.delete(f"/api/v1/keys/{admin_id}").status_code == 403
        other_id = site.access.authenticate(site.keys["other_viewer"]).key_id  # type: ignore[union-attr]
        assert c.delete(f"/api/v1/keys/{other_id}").status_code == 404  # another project's
        assert c.delete(f"/api/v1/keys/{body['key_id']}").json()["state"] == "revoked"
    with site.client("admin") as c:
        made = c.post("/api/v1/keys", json={"role": "admin", "expires_in_s": 3600})
        assert made.status_code == 201 and made.json()["expires_ns"]


def test_a_developer_lists_only_the_keys_it_may_make_and_its_own(site: Site) -> None:
    """A developer key listed every key of its project: the ids and names of its admin keys
    and of the other developers' keys, which it may neither make nor revoke."""
    site.access.create_key("default", Role.ADMIN, name="break-glass admin")
    site.access.create_key("default", Role.DEVELOPER, name="another developer")
    site.access.create_key("default", Role.AGENT, name="ci agent")

    def key_id(key: str) -> str:
        info = site.access.authenticate(key)
        assert info is not None
        return info.key_id

    with site.client("developer") as c:
        listed = c.get("/api/v1/keys")
        assert listed.status_code == 200
        shown = {(k["role"], k["name"]) for k in listed.json()}
        assert {k["key_id"] for k in listed.json()} >= {
            key_id(site.keys["developer"]),
            key_id(site.keys["viewer"]),
            key_id(site.keys["agent"]),
        }
        assert ("agent", "ci agent") in shown
        assert {role for role, _ in shown} == {"developer", "viewer", "agent"}
        assert "break-glass admin" not in listed.text and "another developer" not in listed.text
        assert key_id(site.keys["admin"]) not in listed.text
    with site.client("admin") as c:  # an admin sees every key of the project
        every = c.get("/api/v1/keys").text
        assert "break-glass admin" in every and "another developer" in every


def test_projects_by_role(site: Site) -> None:
    with site.client("viewer") as c:
        assert [p["name"] for p in c.get("/api/v1/projects").json()] == ["default"]
        assert c.post("/api/v1/projects", json={"name": "x"}).status_code == 403
        # Another project does not exist for it.
        assert c.get("/api/v1/keys", params={"project": "other"}).status_code in (403, 404)
    with site.client("developer") as c:
        answer = c.get("/api/v1/keys", params={"project": "other"})
        assert answer.status_code == 404 and "no project" in answer.json()["error"]
    with site.client("admin") as c:
        assert {p["name"] for p in c.get("/api/v1/projects").json()} == {"default", "other"}
        assert c.post("/api/v1/projects", json={"name": "new"}).status_code == 201
        again = c.post("/api/v1/projects", json={"name": "new"})
        assert again.status_code == 400 and "exists" in again.json()["error"]
        bad = c.post("/api/v1/projects", json={"name": "Bad Name"})
        assert bad.status_code == 400 and "not a valid project name" in bad.json()["error"]
        assert c.get("/api/v1/keys", params={"project": "other"}).status_code == 200
        assert c.get("/api/v1/keys", params={"project": "nope"}).status_code == 404


def test_bad_requests_say_why(site: Site) -> None:
    with site.client("admin") as c:
        invalid = c.post("/api/v1/keys", json={"role": "root"})
        assert invalid.status_code == 422
        assert "role" in invalid.json()["error"] and invalid.json()["problems"]
        unknown = c.post("/api/v1/keys", json={"role": "viewer", "extra": 1})
        assert unknown.status_code == 422 and "extra" in unknown.json()["error"]
        form = c.post("/api/v1/keys", data={"role": "viewer"})
        assert form.status_code == 415
        text = c.post("/api/v1/keys", content=b"{}", headers={"content-type": "text/plain"})
        assert text.status_code == 415
        big = c.post(
            "/api/v1/keys", content=b"x" * (2 << 20), headers={"content-type": "application/json"}
        )
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b" " * 65536

        chunked = c.post(
            "/api/v1/keys", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        # A chunked body declares no length: without a content type it passed this check (a
        # 422 that the body is not an object, for a body that is one).
        untyped = c.post("/api/v1/keys", content=iter([b'{"role": "viewer"}']))
        assert untyped.status_code == 415, untyped.text
        broken = c.post(
            "/api/v1/keys", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 422
        assert c.get("/api/v1/nothing-here").status_code == 404


def test_every_answer_has_security_headers(site: Site) -> None:
    with site.client() as c:
        for path in ("/login", "/api/v1/whoami", "/static/tether.css", "/nowhere"):
            headers = c.get(path).headers
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert headers["x-frame-options"] == "DENY"
        assert c.get("/api/v1/openapi.json").status_code in (200, 401)
        assert c.get("/docs").status_code == 404  # Swagger UI would load a CDN


def test_openapi_documents_the_api(site: Site) -> None:
    with site.client() as c:
        spec = c.get("/api/v1/openapi.json").json()
    assert "/api/v1/keys" in spec["paths"] and "/api/v1/whoami" in spec["paths"]
    assert not any(p.startswith("/login") for p in spec["paths"])


def test_sign_in_sets_a_session_cookie_not_the_key(site: Site) -> None:
    with site.client(follow_redirects=False) as c:
        assert c.get("/").headers["location"] == "/runs"
        wrong = c.post("/login", data={"key": "tth_wrong", "next": "/runs"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        agent = c.post("/login", data={"key": site.keys["agent"]})
        assert agent.status_code == 403
        ok = c.post("/login", data={"key": site.keys["viewer"], "next": "https://evil.test/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/runs"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert site.keys["viewer"] not in cookie
        assert c.get("/api/v1/whoami").json()["role"] == "viewer"
        # A form posted from another site is refused, cookie or not.
        assert c.post("/logout", headers={"origin": "https://evil.test"}).status_code == 403
        out = c.post("/logout")
        assert out.status_code == 303
        assert c.get("/api/v1/whoami").status_code == 401


@pytest.mark.parametrize(
    "target",
    ["https://evil.test/", "//evil.test/x", "/\\evil.test", "javascript:alert(1)", "", "runs"],
)
def test_sign_in_never_sends_the_browser_elsewhere(site: Site, target: str) -> None:
    with site.client(follow_redirects=False) as c:
        ok = c.post("/login", data={"key": site.keys["viewer"], "next": target})
        assert ok.status_code == 303 and ok.headers["location"] == "/runs"


def test_garbage_credentials_are_401_not_500(site: Site) -> None:
    for cookie in ("", "x", "A" * 4000, "%C3%A9", "tth_" + "0" * 16 + "_x"):
        with site.client(follow_redirects=False) as c:
            c.cookies.set(f"tether_session_{site.url.rsplit(':', 1)[1]}", cookie)
            assert c.get("/api/v1/whoami").status_code == 401
            page = c.get("/dashboard")
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
    with site.client() as c:
        for header in ("Bearer", "Bearer  x", "bearer " + "x" * 5000, "Token abc"):
            answer = c.get("/api/v1/whoami", headers={"Authorization": header})
            assert answer.status_code == 401


def test_a_huge_sign_in_form_is_413(site: Site) -> None:
    with site.client(follow_redirects=False) as c:
        answer = c.post("/login", data={"key": "x" * (2 << 20)})
        assert answer.status_code == 413


def _reply_before_the_body(url: str, request: str) -> bytes:
    """What the server answers to ``request`` (its line and headers) declaring a body of
    900,000 bytes and sending none of it (a client that trickles or stalls)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(
            (f"{request}\r\nHost: {parts.netloc}\r\nContent-Length: 900000\r\n\r\n").encode()
        )
        return sock.recv(65536)


def test_no_body_is_read_before_the_caller_is_known(site: Site) -> None:
    """Every route but OTLP read up to 1 MiB of body (FastAPI reads it before the route's
    key check) from anyone: a connection without a key held that much memory by never
    finishing it. Now the caller is checked first and the route refuses at once."""
    json_type = "Content-Type: application/json"
    form_type = "Content-Type: application/x-www-form-urlencoded"
    for request, status in (
        (f"POST /api/v1/keys HTTP/1.1\r\n{json_type}", b"401"),
        (f"POST /api/v1/approvals/r1/approve HTTP/1.1\r\n{json_type}", b"401"),
        (f"DELETE /api/v1/keys/0000000000000000 HTTP/1.1\r\n{json_type}", b"401"),
        (f"POST /api/v1/keys HTTP/1.1\r\n{json_type}\r\nAuthorization: Bearer tth_x", b"401"),
        (f"POST /keys HTTP/1.1\r\n{form_type}", b"303"),  # a page: off to sign in
        (f"POST /switch-project HTTP/1.1\r\n{form_type}\r\nCookie: tether_session=x", b"303"),
    ):
        reply = _reply_before_the_body(site.url, request)
        assert reply.startswith(b"HTTP/1.1 " + status), (request, reply[:200])
    # The sign-in form holds the key: read before any check, so kept small.
    reply = _reply_before_the_body(site.url, f"POST /login HTTP/1.1\r\n{form_type}")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # A known caller's body is read as before.
    with site.client("admin") as c:
        made = c.post("/api/v1/keys", json={"role": "viewer", "name": "after the check"})
        assert made.status_code == 201, made.text


def test_a_key_keeps_only_its_newest_sessions(site: Site) -> None:
    """Every sign-in added a session row, without end: one key signing in in a loop held
    any number of live tokens. Now the oldest beyond the cap end when one more begins."""
    from sqlalchemy import func, select

    from tether.server.access import MAX_SESSIONS_PER_KEY
    from tether.store import tables

    cookie = f"tether_session_{site.url.rsplit(':', 1)[1]}"
    tokens = []
    with site.client(follow_redirects=False) as c:
        for _ in range(MAX_SESSIONS_PER_KEY + 3):
            signed = c.post("/login", data={"key": site.keys["viewer"]})
            assert signed.status_code == 303
            tokens.append(signed.cookies[cookie])
            c.cookies.clear()
        other = c.post("/login", data={"key": site.keys["developer"]})  # another key's: kept
        assert other.status_code == 303
    states = []
    for token in tokens:
        with site.client() as c:
            c.cookies.set(cookie, token)
            states.append(c.get("/api/v1/whoami").status_code)
    assert states == [401] * 3 + [200] * MAX_SESSIONS_PER_KEY
    with site.client() as c:
        c.cookies.set(cookie, other.cookies[cookie])
        assert c.get("/api/v1/whoami").json()["role"] == "developer"
    s = tables.sessions.c
    with site.access.engine.connect() as conn:
        rows = dict(conn.execute(select(s.key_id, func.count()).group_by(s.key_id)).all())
    assert sorted(rows.values()) == [1, MAX_SESSIONS_PER_KEY]


def test_the_keys_api_shows_when_a_key_was_last_used(site: Site) -> None:
    agent_id = site.keys["agent"].split("_")[1]
    with site.client("admin") as c:
        listed = {k["key_id"]: k for k in c.get("/api/v1/keys").json()}
        assert listed[agent_id]["last_used_ns"] is None
    with site.client("agent") as c:
        assert c.get("/api/v1/whoami").status_code == 200
    deadline = time.monotonic() + 30
    with site.client("admin") as c:
        while True:  # written off the request's path: poll
            listed = {k["key_id"]: k for k in c.get("/api/v1/keys").json()}
            if listed[agent_id]["last_used_ns"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert listed[agent_id]["last_used_ns"] is not None
        page = c.get("/keys")
        assert page.status_code == 200
        row = page.text.split(f'data-key="{agent_id}"', 1)[1].split("</tr>", 1)[0]
        cell = row.split('class="last-used">', 1)[1].split("</td>", 1)[0]
        assert cell.strip() not in ("", "never")
        viewer_id = site.keys["viewer"].split("_")[1]  # never used
        row = page.text.split(f'data-key="{viewer_id}"', 1)[1].split("</tr>", 1)[0]
        assert 'class="last-used">never<' in row


def test_two_servers_on_one_host_keep_their_own_sessions(tmp_path: Path) -> None:
    """Browsers keep cookies by host name, not port: two servers on 127.0.0.1 (ports 8000 and
    8001, one store each) shared the session cookie, so signing in to one signed out of the
    other, and each received the other's session token. The cookie is named per port."""
    urls = [f"sqlite:///{tmp_path / f's{i}.db'}" for i in (1, 2)]
    keys = [AccessStore(url).create_key("default", Role.VIEWER)[1] for url in urls]
    one, two = (
        create_app(ServerConfig(database_url=urls[0])),
        create_app(ServerConfig(database_url=urls[1])),
    )
    # One client, one cookie jar for 127.0.0.1 (it ignores ports, as browsers do).
    with serving(one) as first, serving(two) as second, httpx.Client(timeout=30) as browser:
        for base, key in zip((first, second), keys, strict=True):
            signed = browser.post(f"{base}/login", data={"key": key}, headers={"origin": base})
            assert signed.status_code == 303, signed.text
        for base, key in zip((first, second), keys, strict=True):
            who = browser.get(f"{base}/api/v1/whoami")
            assert who.status_code == 200, who.text
            assert who.json()["key_id"] == key.split("_")[1]


def test_secure_cookies_are_host_only_and_cleared_with_their_flags(sqlite_url: str) -> None:
    """With --secure-cookies the session cookie is ``__Host-`` (a sibling subdomain or a plain
    HTTP page on the same name cannot plant one), and signing out clears it with the flags it
    was set with (the deletion went out without Secure and HttpOnly)."""
    access = AccessStore(sqlite_url)
    key = access.create_key("default", Role.VIEWER)[1]
    config = ServerConfig(database_url=sqlite_url, secure_cookies=True)
    with serving(create_app(config)) as url, httpx.Client(base_url=url) as c:
        signed = c.post("/login", data={"key": key}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
        name, token = signed.headers["set-cookie"].split(";", 1)[0].split("=", 1)
        assert name.startswith("__Host-tether_session")
        flags = signed.headers["set-cookie"].lower()
        assert "secure" in flags and "path=/" in flags and "domain" not in flags
        # (httpx keeps a Secure cookie for https only: sent by hand, as a browser over TLS does)
        whoami = c.get("/api/v1/whoami", headers={"cookie": f"{name}={token}"})
        assert whoami.json()["role"] == "viewer"
        out = c.post("/logout", headers={"cookie": f"{name}={token}"}, follow_redirects=False)
        assert out.status_code == 303
        cleared = out.headers["set-cookie"].lower()
        assert cleared.startswith(name.lower() + "=") and "max-age=0" in cleared
        assert "secure" in cleared and "httponly" in cleared and "samesite=strict" in cleared
        assert c.get("/api/v1/whoami", headers={"cookie": f"{name}={token}"}).status_code == 401


def _readme_api_routes() -> list[tuple[str, str]]:
    """The routes of README.md's API table, as (method, path under /api/v1)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    after = readme.split("**The API**", 1)[1]
    table = after[after.index("\n|") :].split("\n\n", 1)[0]
    routes = []
    for row in table.splitlines():
        cell = row.split("|")[1] if row.startswith("| `") else ""
        for methods, path in re.findall(r"`([A-Z/]+) (/[^`?]*)", cell):
            routes += [(method, path) for method in methods.split("/")]
    return routes


def test_every_route_of_the_readme_api_table_exists_and_needs_a_key(site: Site) -> None:
    """The README's API table against the server's own OpenAPI description: each route is
    served, under the method shown, and answers 401 without a key; the description itself is
    the one route without a key (as the README says)."""
    routes = _readme_api_routes()
    assert len(routes) >= 15, routes
    with site.client() as c:
        answer = c.get("/api/v1/openapi.json")
        assert answer.status_code == 200
        served = {
            (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
            for path, operations in answer.json()["paths"].items()
            for method in operations
        }
        for method, path in routes:
            template = re.sub(r"\{[^}]+\}", "{}", f"/api/v1{path}")
            assert (method, template) in served, (method, path)
            concrete = template.replace("{}", "x")
            assert c.request(method, concrete).status_code == 401, (method, path)
