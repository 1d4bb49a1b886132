"""A run with a 5 MB input: its page, the API's trace document and span list clip each long
text (a marker says how much is left out and where the whole is), so they stay small, and the
whole text is one request away. They were 5-25 MB (the input, its messages, a tool's
arguments and result, each whole)."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fakes.server import tether_serve
from fakes.stored_runs import add_run
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store

BIG = 5_000_000
BOUND = 100_000  # bytes: each page or document, whatever the texts' size


@contextmanager
def _served(url: str, key: str) -> Iterator[httpx.Client]:
    """``tether serve`` on the store at ``url``, and a client with ``key``."""
    env = {**os.environ, "TETHER_DATABASE_URL": url}
    with (
        tether_serve(env=env) as served,
        httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as c,
    ):
        yield c


def test_a_run_with_a_5_mb_input_has_a_small_page_and_trace_document(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    store = Store(url)
    big = "x" * (BIG - 1) + "!"
    seeded = add_run(store, input_text=big, tool_arguments=f'{{"a": "{big}"}}', tool_result=big)
    store.close()
    run, root = seeded.run_id, seeded.run_id
    key = AccessStore(url).create_key("default", Role.VIEWER)[1]
    with _served(url, key) as c:
        page = c.get(f"/runs/{run}")
        assert page.status_code == 200 and len(page.content) < BOUND, len(page.content)
        assert f"{BIG - 10_000:,} more characters" in page.text
        whole = re.search(r'<a class="whole" href="([^"]*field=input)"', page.text)
        assert whole is not None
        assert c.get(html.unescape(whole.group(1))).text == big
        for span in seeded.span_ids:  # each span opened: its detail clipped too
            opened = c.get(f"/runs/{run}", params={"span": span})
            assert opened.status_code == 200 and len(opened.content) < BOUND, len(opened.content)
            for link in re.findall(r'<a class="whole" href="([^"]*attribute=[^"]*)"', opened.text):
                text = c.get(html.unescape(link)).text
                assert len(text) >= BIG and "x!" in text

        document = c.get(f"/api/v1/runs/{run}")
        assert document.status_code == 200 and len(document.content) < BOUND
        said = document.json()
        assert said["clipped"] >= 4 and said["run"]["input"].startswith("x" * 10_000)
        assert f"{BIG - 10_000:,} more characters" in said["run"]["input"]
        assert len(c.get(f"/api/v1/runs/{run}", params={"text_chars": 0}).content) > 3 * BIG
        listing = c.get("/api/v1/runs")
        assert listing.status_code == 200 and len(listing.content) < BOUND
        assert "more characters" in listing.json()["runs"][0]["input"]
        spans = c.get(f"/api/v1/runs/{run}/spans", params={"parent_id": root})
        assert spans.status_code == 200 and len(spans.content) < BOUND
        assert spans.json()["clipped"] >= 3
        tool = next(s for s in spans.json()["spans"] if s["kind"] == "tool")["span_id"]
        one = c.get(f"/api/v1/runs/{run}/spans/{tool}").json()  # one span: whole
        assert one["span"]["attributes"]["gen_ai.tool.call.result"] == big


def test_the_largest_text_chars_lists_runs_on_postgresql(pg_url: str) -> None:
    """``text_chars`` 2**31 - 1 (the most the API takes): the list read one more character,
    2**31, which PostgreSQL's substr does not take (int4): a 503 naming a missing function
    (found by r38)."""
    store = Store(pg_url)
    seeded = add_run(store, input_text="x" * 20_000)
    store.close()
    access = AccessStore(pg_url)
    key = access.create_key("default", Role.VIEWER)[1]
    access.engine.dispose()
    with _served(pg_url, key) as c:
        for most in (2**31 - 2, 2**31 - 1):
            listing = c.get("/api/v1/runs", params={"text_chars": most})
            assert listing.status_code == 200, listing.text
            assert [r["input"] for r in listing.json()["runs"]] == ["x" * 20_000]
        clipped = c.get("/api/v1/runs", params={"text_chars": 5}).json()["runs"][0]["input"]
        assert clipped.startswith("xxxxx… [") and seeded.run_id in clipped


def test_the_whole_text_of_an_attribute_is_the_stored_text(tmp_path: Path) -> None:
    """The link to an attribute's whole text gives it as stored: it was read as JSON and
    written again, which kept only the last of two equal keys (what a tool was called with,
    hidden) and changed numbers (found by r38)."""
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    store = Store(url)
    arguments = '{"cmd": "rm -rf /", "cmd": "ls", "pad": "' + "p" * 10_000 + '"}'
    seeded = add_run(store, tool_arguments=arguments, tool_result="1e999")
    store.close()
    key = AccessStore(url).create_key("default", Role.VIEWER)[1]
    tool = seeded.span_ids[-1]
    with _served(url, key) as c:
        page = c.get(f"/runs/{seeded.run_id}", params={"span": tool})
        link = re.search(r'<a class="whole" href="([^"]*tool\.call\.arguments)"', page.text)
        assert link is not None, page.text
        whole = c.get(html.unescape(link.group(1)))
        assert whole.status_code == 200 and whole.text == arguments
        result = c.get(
            f"/runs/{seeded.run_id}/spans/{tool}/text",
            params={"attribute": "gen_ai.tool.call.result"},
        )
        assert result.text == "1e999"
