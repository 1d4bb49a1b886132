"""The keys page over HTTP against a real server and SQLite file: an admin lists, makes and
revokes keys; the new key is shown once and never stored or logged; the forms refuse other
sites; the audit log gets the same entries as the API's; a developer manages its project's
viewer and agent keys there as through the API; no other role sees the page."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fakes.server import serving
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore, split_key
from tether.server.roles import Role
from tether.store import create_store_engine
from tether.store.audit import iter_audit
from tether.store.audit_verify import verify_audit

KEY = re.compile(r"tth_[0-9a-f]{16}_[A-Za-z0-9_-]+")


@dataclass
class Site:
    url: str
    db: Path
    keys: dict[str, str]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    db = tmp_path / "tether.db"
    access = AccessStore(f"sqlite:///{db}")
    access.create_project("acme")
    keys = {r.value: access.create_key("default", r, name=f"the {r.value}")[1] for r in Role}
    keys["acme_admin"] = access.create_key("acme", Role.ADMIN)[1]
    access.engine.dispose()
    with serving(create_app(ServerConfig(database_url=f"sqlite:///{db}"))) as base:
        yield Site(base, db, keys)


@contextmanager
def browser(site: Site, who: str) -> Iterator[httpx.Client]:
    """A client signed in with the key of ``who`` (a session cookie, as a browser has)."""
    with httpx.Client(base_url=site.url, timeout=30, follow_redirects=False) as client:
        signed = client.post("/login", data={"key": site.keys[who], "next": "/runs"})
        assert signed.status_code == 303, signed.text[:200]
        yield client


def audit_entries(db: Path) -> list[tuple[str, dict[str, object], dict[str, object]]]:
    import json

    engine = create_store_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            out = []
            for entry, _actor, details in iter_audit(conn):
                out.append((entry.kind, entry.actor, json.loads(details)))
            assert verify_audit(conn, None).ok
            return out
    finally:
        engine.dispose()


def test_an_admin_makes_a_key_sees_it_once_and_revokes_it(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with browser(site, "admin") as c:
        listing = c.get("/keys")
        assert listing.status_code == 200
        assert "the viewer" in listing.text and "the agent" in listing.text
        assert listing.headers["cache-control"] == "no-store"
        assert not KEY.search(listing.text)  # no key's text on the list

        made = c.post("/keys", data={"name": "ci <pipeline>", "role": "agent", "expires": "30d"})
        assert made.status_code == 201
        assert made.headers["cache-control"] == "no-store"
        shown = KEY.findall(made.text)
        assert len(shown) == 1
        new_key = shown[0]
        key_id = new_key.split("_")[1]
        assert "shown this once" in made.text
        assert "ci &lt;pipeline&gt;" in made.text  # the name, escaped
        # The key works, as an agent key: it may send traces, not read.
        bearer = {"Authorization": f"Bearer {new_key}"}
        assert httpx.get(f"{site.url}/api/v1/whoami", headers=bearer).json()["role"] == "agent"
        assert httpx.get(f"{site.url}/api/v1/runs", headers=bearer).status_code == 403
        # Shown once: the list afterwards has its id, never its text.
        again = c.get("/keys")
        assert key_id in again.text and new_key not in again.text and not KEY.search(again.text)
        row = re.search(rf'<tr data-key="{key_id}".*?</tr>', again.text, re.S)
        assert row and "agent" in row.group(0) and "active" in row.group(0)
        assert "never" not in row.group(0)  # it expires

        # Revoking asks first; a post without the confirmation only leads to the question.
        asked = c.get(f"/keys/{key_id}/revoke")
        assert asked.status_code == 200 and "cannot be undone" in asked.text
        unconfirmed = c.post(f"/keys/{key_id}/revoke", data={})
        assert unconfirmed.status_code == 303
        assert unconfirmed.headers["location"] == f"/keys/{key_id}/revoke"
        assert httpx.get(f"{site.url}/api/v1/whoami", headers=bearer).status_code == 200
        done = c.post(f"/keys/{key_id}/revoke", data={"confirm": key_id})
        assert done.status_code == 303 and done.headers["location"] == f"/keys?revoked={key_id}"
        assert httpx.get(f"{site.url}/api/v1/whoami", headers=bearer).status_code == 401
        after = c.get(done.headers["location"])
        row = re.search(rf'<tr data-key="{key_id}".*?</tr>', after.text, re.S)
        assert row and "revoked" in row.group(0) and "revoke…" not in row.group(0)

    # Never stored, never logged: only its hash is in the store file.
    parts = split_key(new_key)  # (the secret may hold "_" itself: split as the server does)
    assert parts is not None
    secret = parts[1]
    assert len(secret) >= 32
    for path in site.db.parent.glob("tether.db*"):
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text
    # The same audit entries as the API and the CLI make, saying it was the UI.
    entries = audit_entries(site.db)
    made_entry = [e for e in entries if e[0] == "key_created" and e[2]["key_id"] == key_id]
    revoked_entry = [e for e in entries if e[0] == "key_revoked" and e[2]["key_id"] == key_id]
    assert len(made_entry) == 1 and len(revoked_entry) == 1
    assert made_entry[0][2]["role"] == "agent" and made_entry[0][2]["project"] == "default"
    assert made_entry[0][2]["expires_ns"] > time.time_ns()
    assert made_entry[0][1]["via"] == "ui" and made_entry[0][1]["role"] == "admin"
    assert "tth_" not in str(entries)


def test_the_same_entries_as_the_api(site: Site) -> None:
    bearer = {"Authorization": f"Bearer {site.keys['admin']}"}
    api = httpx.post(f"{site.url}/api/v1/keys", json={"role": "viewer"}, headers=bearer)
    assert api.status_code == 201
    with browser(site, "admin") as c:
        ui = c.post("/keys", data={"role": "viewer", "expires": "never"})
        assert ui.status_code == 201
    entries = [e for e in audit_entries(site.db) if e[0] == "key_created"]
    by_via = {str(actor["via"]): (actor, details) for _, actor, details in entries[-2:]}
    assert set(by_via) == {"api", "ui"}
    assert by_via["api"][1].keys() == by_via["ui"][1].keys()
    assert by_via["api"][0].keys() == by_via["ui"][0].keys()


def test_bad_forms_and_other_sites(site: Site) -> None:
    with browser(site, "admin") as c:
        for fields in (
            {"role": "root", "expires": "never"},
            {"role": "viewer", "expires": "forever"},
            {"role": "viewer", "expires": "never", "name": "x" * 200},
        ):
            answer = c.post("/keys", data=fields)
            assert answer.status_code == 422 and not KEY.search(answer.text)
        # More fields than any form has: 400, for this form and the sign-in form alike.
        many = "&".join(f"f{i}=1" for i in range(30))
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert c.post("/keys", content=many, headers=form).status_code == 400
        assert c.post("/login", content=many, headers=form).status_code == 400
        # A form posted from another site's page: refused, nothing made or revoked.
        before = len(AccessStore(f"sqlite:///{site.db}").list_keys("default"))
        evil = {"Origin": "http://evil.example"}
        made = c.post("/keys", data={"role": "admin", "expires": "never"}, headers=evil)
        assert made.status_code == 403 and not KEY.search(made.text)
        viewer_id = site.keys["viewer"].split("_")[1]
        revoke = c.post(f"/keys/{viewer_id}/revoke", data={"confirm": viewer_id}, headers=evil)
        assert revoke.status_code == 403
        access = AccessStore(f"sqlite:///{site.db}")
        assert len(access.list_keys("default")) == before
        assert access.get_key(viewer_id).revoked_ns is None
        # A key of another project: not found from here.
        acme_id = site.keys["acme_admin"].split("_")[1]
        assert c.get(f"/keys/{acme_id}/revoke").status_code == 404
        assert c.post(f"/keys/{acme_id}/revoke", data={"confirm": acme_id}).status_code == 404
        assert access.get_key(acme_id).revoked_ns is None
        access.engine.dispose()


def test_revoking_the_key_a_browser_signed_in_with_signs_it_out(site: Site) -> None:
    with browser(site, "admin") as c:
        own = site.keys["admin"].split("_")[1]
        assert "this session" in c.get("/keys").text
        assert "signed in with" in c.get(f"/keys/{own}/revoke").text
        done = c.post(f"/keys/{own}/revoke", data={"confirm": own})
        assert done.status_code == 303 and done.headers["location"] == "/login"
        assert c.get("/keys").status_code == 303  # to the sign-in form


def _key_id(key: str) -> str:
    return key.split("_")[1]


def test_a_developer_manages_only_keys_that_can_do_less_than_its_own(site: Site) -> None:
    with browser(site, "developer") as c:
        listing = c.get("/keys")
        assert 'href="/keys"' in listing.text and listing.status_code == 200
        offered = set(re.findall(r'<option value="(\w+)"', listing.text.split('name="expires"')[0]))
        assert offered == {"viewer", "agent"}
        revocable = set(re.findall(r'href="/keys/([0-9a-f]{16})/revoke"', listing.text))
        own = _key_id(site.keys["developer"])
        assert revocable == {_key_id(site.keys["viewer"]), _key_id(site.keys["agent"]), own}
        # Keys it may not make are not listed either (their names and ids included).
        listed = set(re.findall(r'data-key="([0-9a-f]{16})"', listing.text))
        assert listed == revocable
        assert "the admin" not in listing.text and _key_id(site.keys["admin"]) not in listing.text
        for role in ("developer", "admin"):
            refused = c.post("/keys", data={"role": role, "expires": "never"})
            assert refused.status_code == 403 and not KEY.search(refused.text)
        admin_id = _key_id(site.keys["admin"])
        assert c.get(f"/keys/{admin_id}/revoke").status_code == 403
        assert c.post(f"/keys/{admin_id}/revoke", data={"confirm": admin_id}).status_code == 403
        made = c.post("/keys", data={"role": "agent", "expires": "7d", "name": "ci agent"})
        assert made.status_code == 201 and KEY.search(made.text)
        viewer_id = _key_id(site.keys["viewer"])
        done = c.post(f"/keys/{viewer_id}/revoke", data={"confirm": viewer_id})
        assert done.status_code == 303
    with httpx.Client(base_url=site.url, timeout=30) as anon:
        for who, code in (("viewer", 401), ("admin", 200)):
            headers = {"Authorization": f"Bearer {site.keys[who]}"}
            assert anon.get("/api/v1/whoami", headers=headers).status_code == code


def test_other_roles_neither_see_nor_open_the_page(site: Site) -> None:
    with browser(site, "viewer") as c:
        runs = c.get("/runs")
        assert runs.status_code == 200 and 'href="/keys"' not in runs.text
        assert c.get("/keys").status_code == 403
        viewer_id = site.keys["viewer"].split("_")[1]
        assert c.get(f"/keys/{viewer_id}/revoke").status_code == 403
        made = c.post("/keys", data={"role": "viewer", "expires": "never"})
        assert made.status_code == 403 and not KEY.search(made.text)
        assert c.post(f"/keys/{viewer_id}/revoke", data={"confirm": viewer_id}).status_code == 403
    with browser(site, "admin") as c:
        assert 'href="/keys"' in c.get("/runs").text


def test_a_key_name_any_database_takes(store_url: str) -> None:
    """A NUL or a lone surrogate in a key's name (a form, the API) never fails the write."""
    access = AccessStore(store_url)
    try:
        info, key = access.create_key("default", Role.VIEWER, name="ci\x00\ud800 bot")
        assert info.name == "ci\ufffd\ufffd bot"
        assert [k.name for k in access.list_keys("default")] == [info.name]
        assert access.authenticate(key) is not None
    finally:
        access.engine.dispose()
