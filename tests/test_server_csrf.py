"""What a browser sends by itself is not taken from another origin's page: the session cookie
on a request that changes something (CSRF from another port of this host or another subdomain:
SameSite=Strict still sends the cookie there), and dev mode's no-sign-in admin (DNS rebinding:
a page whose domain resolves to 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fakes.server import serving
from tether import Agent
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store
from tether.store.audit import iter_audit
from tether.trace import writer_for


def _paused_runs(tmp_path: Path, url: str, count: int) -> list[str]:
    from test_approvals import agent_dir

    Store(url).close()
    (tmp_path / "agent").mkdir()
    agent = Agent.from_yaml(agent_dir(tmp_path / "agent"), trace=url)
    runs = [agent.run_sync("please refund 500 on 7").run_id for _ in range(count)]
    writer_for(url).flush()
    return runs


def _approvals(url: str, run: str) -> list[str]:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return [e.kind for e, _, _ in iter_audit(conn) if e.run_id == run]
    finally:
        store.close()


def test_a_signed_in_browser_does_not_act_for_another_origins_page(tmp_path: Path) -> None:
    """A page on another port of the same host (same site: the SameSite=Strict cookie goes
    along) posted an empty ``fetch`` to the approve route, a simple request with no preflight:
    the developer's session approved the refund. Refused now, and nothing is recorded."""
    url = f"sqlite:///{tmp_path / 'csrf.db'}"
    run, other = _paused_runs(tmp_path, url, 2)
    access = AccessStore(url)
    _, developer = access.create_key("default", Role.DEVELOPER)
    viewer, _ = access.create_key("default", Role.VIEWER)
    with serving(create_app(ServerConfig(database_url=url))) as base:
        evil = base.rsplit(":", 1)[0] + ":1"  # another port of 127.0.0.1
        with httpx.Client(base_url=base, timeout=30) as browser:
            signed_in = browser.post("/login", data={"key": developer})
            assert signed_in.status_code == 303
            assert any(n.startswith("tether_session") for n in browser.cookies)
            forged = browser.post(f"/api/v1/approvals/{run}/approve", headers={"origin": evil})
            assert forged.status_code == 403, forged.text
            assert "another site" in forged.json()["error"]
            revoke = browser.delete(f"/api/v1/keys/{viewer.key_id}", headers={"origin": evil})
            assert revoke.status_code == 403
            waiting = browser.get("/api/v1/approvals").json()["approvals"]
            assert run in {a["run_id"] for a in waiting}
            # Its own pages' requests (same origin, or a client that names none) still act.
            own = browser.post(f"/api/v1/approvals/{other}/approve", headers={"origin": base})
            assert own.status_code == 200, own.text
        # A key in the Authorization header is no ambient credential: any origin may use it.
        with httpx.Client(base_url=base, timeout=30) as script:
            keyed = script.post(
                f"/api/v1/approvals/{run}/deny",
                headers={"origin": evil, "authorization": f"Bearer {developer}"},
            )
            assert keyed.status_code == 200, keyed.text
    assert access.get_key(viewer.key_id).revoked_ns is None
    assert _approvals(url, other).count("approval") == 1
    assert _approvals(url, run).count("approval") == 1  # the keyed denial only


@pytest.mark.parametrize("host", ["rebind.evil.test", "127.0.0.1.evil.test", "evil.test:80"])
def test_dev_mode_answers_only_requests_addressed_to_loopback(tmp_path: Path, host: str) -> None:
    """Dev mode needs no sign-in on 127.0.0.1. A web page whose domain the attacker resolves to
    127.0.0.1 (DNS rebinding) is same-origin with it in the browser: it read every trace and
    approved tool calls as an admin. A request whose Host is not a loopback name is refused."""
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    (run,) = _paused_runs(tmp_path, url, 1)
    with serving(create_app(ServerConfig(database_url=url, dev=True))) as base:
        port = base.rsplit(":", 1)[1]
        with httpx.Client(base_url=base, timeout=30) as c:
            named = host if ":" in host else f"{host}:{port}"
            for path in ("/api/v1/runs", "/runs", "/api/v1/approvals"):
                refused = c.get(path, headers={"host": named})
                assert refused.status_code == 403, (path, refused.text[:200])
                assert "only requests addressed to 127.0.0.1" in refused.text
            forged = c.post(
                f"/api/v1/approvals/{run}/approve",
                headers={"host": named, "origin": f"http://{named}"},
            )
            assert forged.status_code == 403
            # Same machine, but another origin's page (another port): refused too.
            other_port = c.post(
                f"/api/v1/approvals/{run}/approve", headers={"origin": "http://127.0.0.1:1"}
            )
            assert other_port.status_code == 403
            # A sandboxed iframe, a data: URL or a file:// page of any site sends Origin: null
            # (an opaque origin): never this server's page (its Referrer-Policy is same-origin).
            opaque = c.post(f"/api/v1/approvals/{run}/approve", headers={"origin": "null"})
            assert opaque.status_code == 403, opaque.text
            assert _approvals(url, run).count("approval") == 0
            for loopback in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "[::1]"):
                assert c.get("/api/v1/runs", headers={"host": loopback}).status_code == 200
            approved = c.post(f"/api/v1/approvals/{run}/approve")  # a script: no Origin
            assert approved.status_code == 200, approved.text


def test_behind_a_proxy_that_rewrites_host_the_public_url_is_this_sites_origin(
    tmp_path: Path,
) -> None:
    """A reverse proxy that sets ``Host`` to the upstream (nginx's default) made every form and
    cookie-signed change 403: the page's origin never matched ``Host``. With the public URL
    the server was given (``--public-url``), that origin is its own; others still are not."""
    from tether.server.config import public_origin

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    run, other = _paused_runs(tmp_path, url, 2)
    _, developer = AccessStore(url).create_key("default", Role.DEVELOPER)
    public = public_origin("HTTPS://Tether.Example.com:443/some/path")
    assert public == "https://tether.example.com"
    config = ServerConfig(database_url=url, public_origin=public)
    with serving(create_app(config)) as base, httpx.Client(base_url=base, timeout=30) as browser:
        signed_in = browser.post("/login", data={"key": developer}, headers={"origin": public})
        assert signed_in.status_code == 303
        assert any(n.startswith("tether_session") for n in browser.cookies)
        ok = browser.post(f"/api/v1/approvals/{run}/approve", headers={"origin": public})
        assert ok.status_code == 200, ok.text
        for evil in ("https://evil.example.com", "http://tether.example.com"):
            refused = browser.post(f"/api/v1/approvals/{other}/approve", headers={"origin": evil})
            assert refused.status_code == 403, refused.text
    untold = create_app(ServerConfig(database_url=url))  # not told the public URL: refused
    with serving(untold) as base, httpx.Client(base_url=base, timeout=30) as browser:
        said = browser.post("/login", data={"key": developer}, headers={"origin": public})
        assert said.status_code == 403 and "--public-url" in said.text
    assert _approvals(url, run).count("approval") == 1
    assert _approvals(url, other).count("approval") == 0
    for bad in ("ftp://x", "https://", "tether.example.com", "http://h:99999"):
        with pytest.raises(ValueError, match="public URL"):
            public_origin(bad)


def test_dev_modes_project_cookie_is_a_project_name_or_the_default(pg_url: str) -> None:
    """The dev-mode project cookie went into queries as sent: a NUL in it (a quoted cookie's
    octal escape) was PostgreSQL's error, answered as "the store failed" (503). A value no
    project can have (not printable, longer than 100 characters) is the default project."""
    with serving(create_app(ServerConfig(database_url=pg_url, dev=True))) as base:
        for bad in ('"a\\000b"', "x" * 101):
            cookie = {"cookie": f"tether_dev_project={bad}"}
            said = httpx.get(f"{base}/api/v1/whoami", headers=cookie, timeout=30)
            assert said.status_code == 200 and said.json()["project"] == "default", said.text
            runs = httpx.get(f"{base}/api/v1/runs", headers=cookie, timeout=30)
            assert runs.status_code == 200, runs.text


def test_an_answer_sent_again_after_a_lost_reply_is_the_recorded_one(tmp_path: Path) -> None:
    """A client whose reply was lost (a proxy timed out, the connection dropped) sends its
    answer again: it got 409 'approved already' for its own answer, and could not tell it from
    another person's. The same key's same answer is 200 with what was recorded (once); another
    answer (deny, another reason) is still 409."""
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    (run,) = _paused_runs(tmp_path, url, 1)
    _, developer = AccessStore(url).create_key("default", Role.DEVELOPER)
    _, other = AccessStore(url).create_key("default", Role.DEVELOPER)
    app = create_app(ServerConfig(database_url=url))
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        mine = {"authorization": f"Bearer {developer}"}
        theirs = {"authorization": f"Bearer {other}"}
        path = f"/api/v1/approvals/{run}/approve"
        first = c.post(path, json={"reason": "checked"}, headers=mine)
        again = c.post(path, json={"reason": "checked"}, headers=mine)
        assert (first.status_code, again.status_code) == (200, 200), again.text
        assert again.json() == first.json()
        for refused in (
            c.post(f"/api/v1/approvals/{run}/deny", json={"reason": "checked"}, headers=mine),
            c.post(path, json={"reason": "other"}, headers=mine),
            c.post(path, json={"reason": "checked"}, headers=theirs),
        ):
            assert refused.status_code == 409 and "already" in refused.text, refused.text
    assert _approvals(url, run).count("approval") == 1


def test_the_origin_check_compares_the_scheme_too(tmp_path: Path) -> None:
    """``http://host`` and ``https://host`` are two origins: a plain-HTTP page on the
    server's name (what anyone on the network path can serve) was taken as the HTTPS
    server's own, its sign-in and cookie-signed changes accepted. The scheme is the one the
    request came with (``X-Forwarded-Proto`` from ``--forwarded-allow-ips`` only), ``https``
    with ``--secure-cookies``."""
    import os

    from fakes.server import tether_serve

    url = f"sqlite:///{tmp_path / 'scheme.db'}"
    Store(url).close()
    _, developer = AccessStore(url).create_key("default", Role.DEVELOPER)
    env = {**os.environ, "TETHER_DATABASE_URL": url}

    def login(base: str, origin: str, **headers: str) -> int:
        with httpx.Client(base_url=base, timeout=30) as browser:
            answer = browser.post(
                "/login", data={"key": developer}, headers=headers | {"origin": origin}
            )
            return answer.status_code

    with tether_serve("--secure-cookies", env=env) as served:
        host = served.url.removeprefix("http://")
        assert login(served.url, f"http://{host}") == 403
        assert login(served.url, f"https://{host}") == 303
    with tether_serve("--forwarded-allow-ips", "127.0.0.1", env=env) as served:
        host = served.url.removeprefix("http://")
        https = {"x-forwarded-proto": "https"}
        assert login(served.url, f"http://{host}", **https) == 403
        assert login(served.url, f"https://{host}", **https) == 303
        assert login(served.url, f"https://{host}") == 403  # served over HTTP
        assert login(served.url, f"http://{host}") == 303
        assert login(served.url, f"HTTP://{host.upper()}/") == 303
    with tether_serve(env=env) as served:  # no proxy believed: its X-Forwarded-Proto is not
        host = served.url.removeprefix("http://")
        assert login(served.url, f"https://{host}", **{"x-forwarded-proto": "https"}) == 403
