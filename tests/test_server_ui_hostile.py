"""The web UI against what a hostile sender or visitor can make it show or do: spans sent over
OTLP with an agent key whose text is built to break the pages that show it, and links made to
mislead whoever opens them. A real server on 127.0.0.1 over a real SQLite file."""

from __future__ import annotations

import html
import re
import secrets
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
    keys: dict[str, str]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    access = AccessStore(url)
    keys = {r.value: access.create_key("default", r, name=f"the {r.value}")[1] for r in Role}
    access.engine.dispose()
    with serving(create_app(ServerConfig(database_url=url))) as base:
        yield Site(base, keys)


MAX_BREAKDOWN = 100
"""``tether.server.metrics.MAX_BREAKDOWN``."""


def _text(key: str, value: str) -> dict[str, object]:
    return {"key": key, "value": {"stringValue": value}}


def send_spans(site: Site, spans: list[dict[str, object]]) -> None:
    """``spans`` (OTLP/JSON) sent to ``/v1/traces`` with the agent key, all taken."""
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    sent = httpx.post(
        f"{site.url}/v1/traces",
        json=body,
        headers={"Authorization": f"Bearer {site.keys['agent']}"},
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    assert "rejected" not in sent.text, sent.text


def _span(trace: str, span: str, parent: str | None, name: str, attrs: list[object]) -> dict:
    now = time.time_ns()
    found: dict[str, object] = {
        "traceId": trace,
        "spanId": span,
        "name": name,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1_000_000),
        "attributes": attrs,
    }
    if parent:
        found["parentSpanId"] = parent
    return found


@pytest.fixture
def viewer(site: Site) -> Iterator[httpx.Client]:
    """A browser's session signed in with the viewer key."""
    with httpx.Client(base_url=site.url, timeout=60, follow_redirects=False) as client:
        signed = client.post("/login", data={"key": site.keys["viewer"], "next": "/runs"})
        assert signed.status_code == 303, signed.text[:200]
        yield client


def test_text_nested_past_pythons_stack_is_shown_as_text(site: Site, viewer: httpx.Client) -> None:
    """A tool's arguments, result or a model's messages that are JSON nested 10,000 deep (a
    page an HTTP tool fetched, a span anyone with an agent key sends) are shown as the text
    they are. Re-read as JSON to be indented, they raised RecursionError: that span's detail,
    and the trace page opened on it (its shareable link), answered 500, so a sender could make
    the one span that mattered impossible to look at."""
    deep = "[" * 10_000 + "]" * 10_000
    trace, root, model, tool = secrets.token_hex(16), *(secrets.token_hex(8) for _ in range(3))
    send_spans(
        site,
        [
            _span(trace, root, None, "invoke_agent", [_text("input.value", "hello")]),
            _span(
                trace,
                model,
                root,
                "chat",
                [
                    _text("gen_ai.operation.name", "chat"),
                    _text("gen_ai.input.messages", deep),
                    _text("gen_ai.output.messages", deep),
                ],
            ),
            _span(
                trace,
                tool,
                root,
                "execute_tool",
                [
                    _text("gen_ai.operation.name", "execute_tool"),
                    _text("gen_ai.tool.name", "fetch"),
                    _text("gen_ai.tool.call.arguments", deep),
                    _text("gen_ai.tool.call.result", deep),
                    _text("note", deep),
                ],
            ),
        ],
    )
    for span in (model, tool):
        page = viewer.get(f"/runs/{root}", params={"span": span})
        assert page.status_code == 200, page.text[:300]
        assert 'id="span-title"' in page.text
        fragment = viewer.get(f"/runs/{root}/spans/{span}", headers={"HX-Request": "true"})
        assert fragment.status_code == 200, fragment.text[:300]
        # shown as text, clipped (the first 10,000 characters), the whole a link away
        shown = html.unescape(fragment.text)
        assert deep[:10_000] + '<span class="clipped">… 10,000 more characters' in shown
    note = viewer.get(f"/runs/{root}/spans/{tool}/text", params={"attribute": "note"})
    assert note.status_code == 200 and note.text == deep


def test_the_keys_page_says_only_what_happened(site: Site) -> None:
    """``/keys?revoked=ID`` (where revoking a key leads) says that key is revoked only when it
    is a revoked key of the page: any words in a link of anyone's making were put on the page
    as the server's own notice, to a developer or admin who opened it."""
    lure = "x is fine. Your session expired: sign in again at tether-login.example"
    with httpx.Client(base_url=site.url, timeout=60, follow_redirects=False) as client:
        signed = client.post("/login", data={"key": site.keys["admin"], "next": "/keys"})
        assert signed.status_code == 303
        page = client.get("/keys", params={"revoked": lure})
        assert page.status_code == 200
        assert "tether-login.example" not in html.unescape(page.text)
        assert 'id="keys-message"' not in page.text
        viewer_id = site.keys["viewer"].split("_")[1]
        # Not revoked (yet): nothing said.
        assert 'id="keys-message"' not in client.get(f"/keys?revoked={viewer_id}").text
        confirmed = client.post(f"/keys/{viewer_id}/revoke", data={"confirm": viewer_id})
        assert confirmed.status_code == 303
        done = client.get(confirmed.headers["location"])
        assert f"Key {viewer_id} is revoked" in done.text
        assert 'id="keys-message"' in done.text


def test_signing_in_again_ends_the_browsers_earlier_session(site: Site) -> None:
    """A browser signed in with one key and then with another (a shared machine, a second
    person) holds one live session: the earlier one ends in the store. It stayed open until
    it expired (12 hours), so a copy of the earlier cookie still opened the first key's
    project after the browser had moved on."""
    with httpx.Client(base_url=site.url, timeout=60, follow_redirects=False) as client:
        assert client.post("/login", data={"key": site.keys["admin"]}).status_code == 303
        cookie = next(iter(client.cookies.jar))
        earlier = cookie.value
        assert client.get("/keys").status_code == 200
        assert client.post("/login", data={"key": site.keys["viewer"]}).status_code == 303
        later = client.cookies.get(cookie.name)
        assert later and later != earlier
        assert client.get("/runs").status_code == 200
    with httpx.Client(base_url=site.url, timeout=60, follow_redirects=False) as copy:
        copy.cookies.set(cookie.name, earlier)
        ended = copy.get("/keys")
        assert ended.status_code == 303 and ended.headers["location"].startswith("/login")


def test_a_flood_of_agent_names_leaves_the_dashboard_short(
    site: Site, viewer: httpx.Client
) -> None:
    """Any agent key names agents, versions and models (a span's attributes): the breakdowns
    list the ``MAX_BREAKDOWN`` groups with the most runs and sum the rest in one line. Each
    of 20,000 names was a line (and, on SQLite, a percentile read each): the dashboard grew
    to 8 MB and 15 s for 3 s of sending, and with every run more."""
    names = MAX_BREAKDOWN + 30
    spans = []
    for i in range(names):
        attrs = [
            _text("gen_ai.operation.name", "invoke_agent"),
            _text("gen_ai.agent.name", f"a{i}"),
        ]
        # "a0" has two runs: the first line whatever the order of the rest.
        spans.append(_span(secrets.token_hex(16), secrets.token_hex(8), None, "agent", attrs))
    spans.append(
        _span(
            secrets.token_hex(16),
            secrets.token_hex(8),
            None,
            "agent",
            [_text("gen_ai.operation.name", "invoke_agent"), _text("gen_ai.agent.name", "a0")],
        )
    )
    send_spans(site, spans)
    page = viewer.get("/dashboard")
    assert page.status_code == 200
    table = page.text.split("<h2>By agent</h2>")[1].split("</table>")[0]
    assert table.count("<tr") == 1 + MAX_BREAKDOWN + 1  # the heading, the lines, the rest
    assert '<td>a0</td><td class="num">2</td>' in table
    assert "30 others" in table
    bearer = {"Authorization": f"Bearer {site.keys['viewer']}"}
    figures = httpx.get(f"{site.url}/api/v1/metrics", headers=bearer, timeout=60).json()
    assert len(figures["by_agent"]) == MAX_BREAKDOWN
    rest = figures["others"]["agent"]
    assert rest["requests"] == 30 and rest["p50_ms"] is None
    listed = sum(b["requests"] for b in figures["by_agent"])
    assert listed + rest["requests"] == figures["totals"]["requests"] == names + 1
    assert all(b["p50_ms"] is not None for b in figures["by_agent"])
    assert "project" not in figures["others"]


def test_the_runs_page_suggests_the_busiest_agents_only(site: Site, viewer: httpx.Client) -> None:
    """The agent filter's suggestions are the 200 agents with the most runs: the page
    carried every name any agent key ever sent."""
    spans = [
        _span(
            secrets.token_hex(16),
            secrets.token_hex(8),
            None,
            "agent",
            [_text("gen_ai.operation.name", "invoke_agent"), _text("gen_ai.agent.name", name)],
        )
        for name in [f"flood-{i:03}" for i in range(250)] + ["support"] * 3
    ]
    send_spans(site, spans)
    page = viewer.get("/runs")
    suggested = page.text.split('<datalist id="agent-names">')[1].split("</datalist>")[0]
    assert suggested.count("<option") == 200
    assert '<option value="support">' in suggested


def test_a_span_of_many_events_shows_the_first_and_its_decisions(
    site: Site, viewer: httpx.Client
) -> None:
    """A span's page shows its first 200 events and says how many there are; its control
    decisions are shown wherever they fall. One OTLP request gives a span as many events as
    it likes (200,000: a page of 17.6 MB, 8 s to make, each time it was opened)."""
    trace, root = secrets.token_hex(16), secrets.token_hex(8)
    span = _span(trace, root, None, "agent", [_text("input.value", "hi")])
    start = int(str(span["startTimeUnixNano"]))
    events: list[dict[str, object]] = [
        {"name": f"tick {i}", "timeUnixNano": str(start + i)} for i in range(1_000)
    ]
    events.append(
        {
            "name": "tether.control.decision",
            "timeUnixNano": str(start + 5_000),
            "attributes": [
                _text("tether.control.name", "tool_policy"),
                _text("tether.control.hook", "before_tool"),
                _text("tether.decision", "block"),
                _text("tether.decision.reason", "late and blocked"),
            ],
        }
    )
    span["events"] = events
    send_spans(site, [span])
    for page in (
        viewer.get(f"/runs/{root}", params={"span": root}),
        viewer.get(f"/runs/{root}/spans/{root}", headers={"HX-Request": "true"}),
    ):
        assert page.status_code == 200
        detail = page.text.split('id="span-title"')[1]
        assert detail.count('<div class="message">') == 200
        assert "tick 199 ·" in detail and "tick 200 ·" not in detail
        assert "the first 200 of 1,001" in detail
        assert 'data-verdict="block"' in detail and "late and blocked" in detail
    bearer = {"Authorization": f"Bearer {site.keys['viewer']}"}
    # The API pages them (its answer held every one: 17 MB for 200,000).
    url = f"{site.url}/api/v1/runs/{root}/spans/{root}"
    first = httpx.get(url, headers=bearer, timeout=60).json()
    assert len(first["events"]) == 1_000 and first["events_total"] == 1_001
    assert first["next_events_offset"] == 1_000
    rest = httpx.get(url, headers=bearer, params={"events_offset": 1_000}, timeout=60).json()
    assert [e["name"] for e in rest["events"]] == ["tether.control.decision"]
    assert rest["events_total"] == 1_001 and rest["next_events_offset"] is None
    small = httpx.get(url, headers=bearer, params={"events_limit": 10}, timeout=60).json()
    assert [e["name"] for e in small["events"]] == [f"tick {i}" for i in range(10)]
    past = httpx.get(url, headers=bearer, params={"events_offset": 5_000}, timeout=60).json()
    assert past["events"] == [] and past["events_total"] == 1_001
    assert past["next_events_offset"] is None
    too_many = httpx.get(url, headers=bearer, params={"events_limit": 10_001}, timeout=60)
    assert too_many.status_code == 422


def test_signing_out_of_a_session_that_already_ended(site: Site) -> None:
    """Signing out works when the session has already ended (its key revoked or expired): it
    sent the browser to sign in again with ``next=/logout`` (a page no browser can open:
    405 once signed in) and left the dead cookie in place."""
    with httpx.Client(base_url=site.url, timeout=60, follow_redirects=False) as client:
        assert client.post("/login", data={"key": site.keys["viewer"]}).status_code == 303
        assert client.cookies
        own = site.keys["viewer"].split("_")[1]
        bearer = {"Authorization": f"Bearer {site.keys['admin']}"}
        revoked = httpx.delete(f"{site.url}/api/v1/keys/{own}", headers=bearer, timeout=60)
        assert revoked.status_code in (200, 204), revoked.text
        out = client.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert not client.cookies  # the dead cookie is dropped
        # From another site's page: refused, signed in or not.
        other = client.post("/logout", headers={"Origin": "http://elsewhere.example"})
        assert other.status_code == 403


def test_the_whole_text_of_an_attribute_with_a_long_key_opens(
    site: Site, viewer: httpx.Client
) -> None:
    """A span sent with a 2,000-character attribute key and a long value: its page links to
    the whole value, and the link opens it (the route took keys up to 1,024 characters and
    answered 422) (found by r38)."""
    key, value = "k" * 2_000, "v" * 12_000 + "THE END"
    trace, root = secrets.token_hex(16), secrets.token_hex(8)
    send_spans(site, [_span(trace, root, None, "invoke_agent", [_text(key, value)])])
    page = viewer.get(f"/runs/{root}", params={"span": root})
    assert page.status_code == 200, page.text[:300]
    links = re.findall(r'<a class="whole" href="([^"]*attribute=k+)"', page.text)
    assert len(links) == 1, page.text[-3000:]
    whole = viewer.get(html.unescape(links[0]))
    assert whole.status_code == 200 and whole.text == value


def test_a_missing_run_span_or_attribute_does_not_repeat_the_links_words(
    site: Site, viewer: httpx.Client
) -> None:
    """A link to a run, a span or a span's whole text that is none: the 404 page named the
    link's run id, span id and attribute as given, so words of anyone's making were shown
    as the server's own notice (a whole-text link took 1,024 characters of them) (found by
    r38)."""
    lure = "x. Your session expired: sign in again at tether-login.example"
    trace, root = secrets.token_hex(16), secrets.token_hex(8)
    send_spans(site, [_span(trace, root, None, "invoke_agent", [_text("k", "v")])])
    for path, params in (
        (f"/runs/{lure}", {}),
        (f"/runs/{root}/spans/{lure}", {}),
        (f"/runs/{root}/spans/{lure}/text", {"attribute": "k"}),
        (f"/runs/{root}/spans/{root}/text", {"attribute": lure}),
        (f"/api/v1/runs/{lure}", {}),
        (f"/api/v1/runs/{root}/spans/{lure}", {}),
    ):
        missing = viewer.get(path, params=params)
        assert missing.status_code == 404, (path, missing.status_code)
        assert "tether-login" not in html.unescape(missing.text), path
    missing = viewer.get(f"/runs/{root}/spans/{'0' * 16}")
    assert missing.status_code == 404 and f"{root}/{'0' * 16}" in missing.text
