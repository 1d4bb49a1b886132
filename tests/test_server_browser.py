"""The UI in a real browser: Debian's chromium driven by Playwright against a real
``tether serve`` on 127.0.0.1. Screenshots go to test-artifacts/browser/ (gitignored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.server import ServeProcess, tether_serve
from fakes.stored_runs import Seeded, add_run
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"CI=true requires the browser tests to run: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"],
        )
        yield browser
        browser.close()


class Site:
    def __init__(
        self, served: ServeProcess, key: str, runs: dict[str, Seeded], developer_key: str
    ) -> None:
        self.url = served.url
        self.key = key
        self.runs = runs
        self.developer_key = developer_key


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'tether.db'}"
    store = Store(db)
    runs = {
        "ok": add_run(store, input_text="Where is my order 1042?"),
        "blocked": add_run(
            store,
            outcome="blocked",
            blocked=True,
            input_text=f"Refund order 1003 {XSS}",
            tool_arguments='{"url": "javascript:window.__pwned = 3", "note": "'
            + XSS.replace('"', '\\"')
            + '"}',
            tool_result=XSS,
            cost_usd=0.0123,
        ),
        "acme": add_run(store, project="acme", input_text="acme quarterly report"),
    }
    store.close()
    access = AccessStore(db)
    access.create_project("acme")
    key = access.create_key("default", Role.ADMIN, name="browser test")[1]
    developer_key = access.create_key("default", Role.DEVELOPER, name="a developer")[1]
    access.engine.dispose()
    env = {**os.environ, "TETHER_DATABASE_URL": db}
    with tether_serve(env=env) as served:
        yield Site(served, key, runs, developer_key)


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.problems = problems
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_in(page: object, site: Site, target: str = "/runs", key: str | None = None) -> None:
    page.goto(site.url + target)  # type: ignore[attr-defined]
    assert "/login" in page.url  # type: ignore[attr-defined]
    page.fill("input[name=key]", key or site.key)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{site.url}{target}*")  # type: ignore[attr-defined]


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_sign_in_filter_open_trace_and_find_the_blocked_decision(page: object, site: Site) -> None:
    p: Any = page
    sign_in(p, site)
    rows = p.locator("#runs-table tbody tr")
    assert rows.count() == 2
    shot(p, "runs")
    p.select_option("select[name=outcome]", "blocked")
    p.click("form.filters button[type=submit]")
    p.wait_for_url("**outcome=blocked**")
    assert rows.count() == 1
    row = rows.first
    assert "blocked" in (row.get_attribute("class") or "")  # visible in the row
    assert "blocked step" in row.inner_text()
    row.locator("a").first.click()
    p.wait_for_url(f"**/runs/{site.runs['blocked'].run_id}**")
    assert p.locator("#run-blocked").is_visible()
    assert "tool_policy" in p.locator("#blocked-list").inner_text()
    blocked_row = p.locator(".span-row.blocked")
    assert blocked_row.count() == 1
    blocked_row.click()
    decision = p.locator("#detail .decision[data-verdict=block]")
    decision.wait_for()
    assert "refunds need approval" in decision.inner_text()
    # The URL now names the span: opening it shows the same.
    assert f"span={site.runs['blocked'].span_ids[2]}" in p.url
    shot(p, "trace-blocked")
    p.goto(p.url)
    assert p.locator("#detail .decision[data-verdict=block]").is_visible()
    assert not p.problems, p.problems


def test_payloads_are_shown_as_text_and_never_run(page: object, site: Site) -> None:
    p: Any = page
    sign_in(p, site)
    run = site.runs["blocked"]
    p.goto(f"{site.url}/runs/{run.run_id}?span={run.span_ids[2]}")
    p.locator("#detail .tool-result").wait_for()
    assert XSS in p.locator("#detail .tool-result").inner_text()
    assert "javascript:window.__pwned = 3" in p.locator("#detail .tool-args").inner_text()
    assert p.evaluate("window.__pwned") is None
    assert p.locator("img[src=x]").count() == 0
    assert p.locator("a[href^='javascript:']").count() == 0
    p.goto(f"{site.url}/runs")
    assert XSS in p.locator("#runs-table").inner_text()
    assert p.evaluate("window.__pwned") is None
    assert not [m for m in p.problems if "Content Security Policy" in m], p.problems


def test_dashboard_draws_its_charts(page: object, site: Site) -> None:
    p: Any = page
    sign_in(p, site, "/dashboard")
    p.locator(".chart[data-rendered=true] canvas").first.wait_for()
    assert p.locator(".chart[data-rendered=true]").count() == 6
    assert p.locator("#kpi-runs").inner_text() == "2"
    p.select_option("select[name=range]", "7d")
    p.wait_for_url("**range=7d**")
    p.locator(".chart[data-rendered=true] canvas").first.wait_for()
    shot(p, "dashboard")
    assert not p.problems, p.problems


def test_switching_project_shows_none_of_the_others_runs(page: object, site: Site) -> None:
    p: Any = page
    sign_in(p, site)
    assert "Where is my order" in p.locator("#runs-table").inner_text()
    p.select_option("header select[name=project]", "acme")
    p.wait_for_url("**project=acme**")
    table = p.locator("#runs-table").inner_text()
    assert "acme quarterly report" in table
    assert "Where is my order" not in table and "Refund" not in table
    shot(p, "project-acme")
    # The default project's trace, from acme: not found.
    answer = p.goto(f"{site.url}/runs/{site.runs['ok'].run_id}")
    assert answer.status == 404
    assert not [m for m in p.problems if "404" not in m], p.problems


def test_an_admin_makes_a_key_and_revokes_it(page: object, site: Site) -> None:
    import re

    import httpx

    p: Any = page
    sign_in(p, site)
    p.click("#nav-keys")
    p.wait_for_url("**/keys")
    p.fill("#create-key input[name=name]", "nightly <evals>")
    p.select_option("#create-key select[name=role]", "viewer")
    p.select_option("#create-key select[name=expires]", "7d")
    p.click("#create-key button[type=submit]")
    shown = p.locator("#new-key-text")
    shown.wait_for()
    key = shown.inner_text().strip()
    assert re.fullmatch(r"tth_[0-9a-f]{16}_[A-Za-z0-9_-]+", key), key
    assert "shown this once" in p.locator("#new-key").inner_text()
    copy = p.locator("#new-key button[data-copy]")
    copy.click()
    p.wait_for_function(
        "document.querySelector('#new-key button[data-copy]').textContent !== 'Copy'"
    )
    assert copy.inner_text() in ("Copied", "Selected: press Ctrl-C")
    shot(p, "keys-created")
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{site.url}/api/v1/whoami", headers=bearer).json()["role"] == "viewer"
    key_id = key.split("_")[1]
    # The list names it (escaped), never shows its text again.
    p.goto(f"{site.url}/keys")
    row = p.locator(f"#keys-table tr[data-key='{key_id}']")
    assert "nightly <evals>" in row.inner_text() and "active" in row.inner_text()
    assert key not in p.content()
    row.locator("a.revoke").click()
    p.wait_for_url(f"**/keys/{key_id}/revoke")
    assert "cannot be undone" in p.locator("#revoke-confirm").inner_text()
    p.click("#revoke-confirm button[type=submit]")
    p.wait_for_url("**/keys?revoked=*")
    assert key_id in p.locator("#keys-message").inner_text()
    assert "revoked" in p.locator(f"#keys-table tr[data-key='{key_id}']").inner_text()
    assert p.locator(f"#keys-table tr[data-key='{key_id}'] a.revoke").count() == 0
    assert httpx.get(f"{site.url}/api/v1/whoami", headers=bearer).status_code == 401
    shot(p, "keys-revoked")
    assert not p.problems, p.problems


def test_a_developer_manages_its_viewer_and_agent_keys_on_the_keys_page(
    page: object, site: Site
) -> None:
    p: Any = page
    sign_in(p, site, key=site.developer_key)
    assert p.locator("header nav a").count() == 3  # runs, dashboard and keys
    p.click("#nav-keys")
    p.wait_for_url("**/keys")
    offered = p.locator("#create-key select[name=role] option").all_inner_texts()
    assert sorted(offered) == ["agent", "viewer"]
    admin_id = site.key.split("_")[1]
    assert p.locator(f"#keys-table tr[data-key='{admin_id}'] a.revoke").count() == 0
    answer = p.goto(f"{site.url}/keys/{admin_id}/revoke")
    assert answer.status == 403
    assert "may not revoke admin keys" in p.locator("main").inner_text()
    assert not [m for m in p.problems if "403" not in m], p.problems


def test_a_trace_is_not_kept_in_the_tab_after_signing_out(page: object, site: Site) -> None:
    """Opening spans (htmx pushes each one's URL) keeps no copy of the page in the tab's
    storage: htmx's history cache held the last pages' HTML (a run's input, its tool
    results) in sessionStorage, out of reach of ``Cache-Control: no-store``, still there on
    the sign-in page after signing out; going back a span showed it again without the
    server being asked whether the session still stood."""
    p: Any = page
    sign_in(p, site)
    run = site.runs["blocked"]
    p.goto(f"{site.url}/runs/{run.run_id}")
    for span in run.span_ids[1:3]:
        p.locator(f".span-row[data-span='{span}']").click()
        p.wait_for_url(f"**span={span}")
    p.locator("#detail .tool-result").wait_for()
    stored = "Object.keys(sessionStorage).map(k => sessionStorage.getItem(k)).join(' ')"
    assert "Refund order 1003" not in p.evaluate(stored)
    # Back a span: the page is asked of the server again, and shows that span.
    p.go_back()
    p.wait_for_url(f"**span={run.span_ids[1]}")
    p.locator(f".span-row.selected[data-span='{run.span_ids[1]}']").wait_for()
    p.click("header form[action='/logout'] button")
    p.wait_for_url("**/login")
    assert "Refund order 1003" not in p.evaluate(stored)
    assert not p.problems, p.problems


def test_a_long_text_is_clipped_and_its_whole_opens_from_a_link(
    browser: Any, tmp_path: Path
) -> None:
    """A run whose tool result is 2 MB: its span shows the first 10,000 characters and how
    many more there are (the page was as large as the text), and the link opens the whole as
    plain text. A payload cut by the clip is still text, never run."""
    db = f"sqlite:///{tmp_path / 'tether.db'}"
    store = Store(db)
    result = "x" * 9_990 + XSS + "y" * 2_000_000 + "THE END"
    run = add_run(store, tool_result=result)
    store.close()
    key = AccessStore(db).create_key("default", Role.VIEWER, name="browser test")[1]
    env = {**os.environ, "TETHER_DATABASE_URL": db}
    with tether_serve(env=env) as served:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        p = context.new_page()
        problems: list[str] = []
        p.on("pageerror", lambda e: problems.append(str(e)))
        sign_in(p, Site(served, key, {}, key), f"/runs/{run.run_id}")
        p.locator(".span-row", has_text="execute_tool").first.click()
        shown = p.locator("#detail .tool-result")
        shown.wait_for()
        text = shown.inner_text()
        assert text.startswith("x" * 9_990) and "THE END" not in text
        assert f"{len(result) - 10_000:,} more characters" in text
        shot(p, "trace-clipped")
        with context.expect_page() as opened:
            shown.locator("a.whole").click()
        whole = opened.value
        whole.wait_for_load_state()
        assert whole.locator("body").inner_text().endswith("THE END")
        assert p.evaluate("window.__pwned") is None and whole.evaluate("window.__pwned") is None
        assert not problems, problems
        context.close()
