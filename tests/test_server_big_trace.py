"""A trace of 30,000 spans stays usable: the page lists one level at a time (a page of 200
spans, the rest on demand), subtrees load when opened, and the page stays small."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.server import serving
from fakes.stored_runs import add_run
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import SpanRecord, Store, TraceBatch

STEPS = 250
CALLS = 119  # 250 steps x (1 + 119 calls) = 30,000 spans under the root


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('big') / 'tether.db'}"
    store = Store(url)
    seeded = add_run(store, tool_calls=0)
    run, trace = seeded.run_id, seeded.trace_id
    start = time.time_ns() - 3_600_000_000_000
    spans = []
    for s in range(STEPS):
        step_id = f"{0xA000000000000000 + s * 1000:016x}"
        spans.append(
            SpanRecord(
                trace,
                run_id=run,
                span_id=step_id,
                parent_id=run,
                name=f"plan step {s}",
                kind="plan",
                start_ns=start + s * 1000,
                end_ns=start + s * 1000 + 900,
            )
        )
        for c in range(CALLS):
            spans.append(
                SpanRecord(
                    trace,
                    run_id=run,
                    span_id=f"{0xB000000000000000 + s * 1000 + c:016x}",
                    parent_id=step_id,
                    name=f"execute_tool t{c}",
                    kind="tool",
                    start_ns=start + s * 1000 + c,
                    end_ns=start + s * 1000 + c + 1,
                    attributes={"gen_ai.tool.name": f"t{c}"},
                )
            )
    store.write(TraceBatch(spans=spans))
    key = AccessStore(url).create_key("default", Role.VIEWER)[1]
    with serving(create_app(ServerConfig(database_url=url))) as base:
        yield base, key, run


def test_the_page_lists_one_page_of_each_level(big: tuple[str, str, str]) -> None:
    base, key, run = big
    headers = {"Authorization": f"Bearer {key}"}
    page = httpx.get(f"{base}/runs/{run}", headers=headers, timeout=60)
    assert page.status_code == 200
    assert "30,002 spans" in page.text  # the root, its chat span, 250 steps x 120
    rows = page.text.count('class="span-row')
    assert rows < 800, rows  # not 30,000
    assert "more spans" in page.text
    step = f"{0xA000000000000000:016x}"
    assert f'id="kids-{step}"' in page.text
    fragment = httpx.get(
        f"{base}/runs/{run}/children",
        params={"parent": step, "depth": 2, "t0": 0, "t_span": 10**12},
        headers=headers,
        timeout=60,
    )
    assert fragment.status_code == 200
    assert fragment.text.count('class="span-row') == CALLS
    more = httpx.get(
        f"{base}/runs/{run}/children",
        params={"parent": run, "offset": 200, "depth": 1, "t0": 0, "t_span": 10**12},
        headers=headers,
        timeout=60,
    )
    # The root's 251 children: 200 on the page, the other 51 on demand.
    assert more.text.count('class="span-row') == 51 and "more spans" not in more.text
    api = httpx.get(
        f"{base}/api/v1/runs/{run}/spans",
        params={"parent_id": step, "limit": 50},
        headers=headers,
        timeout=60,
    ).json()
    assert api["total"] == CALLS and api["next_offset"] == 50 and len(api["spans"]) == 50


def test_the_whole_trace_api_reads_a_bounded_part(big: tuple[str, str, str]) -> None:
    """GET /api/v1/runs/{id} read every span of the run into memory: an agent key could grow
    one run by OTLP batches until any reader's request exhausted the server. It reads the
    first ``max_spans`` (default 10,000) and says when there are more."""
    base, key, run = big
    headers = {"Authorization": f"Bearer {key}"}
    whole = f"{base}/api/v1/runs/{run}"
    first = httpx.get(whole, headers=headers, timeout=60).json()
    assert len(first["spans"]) == 10_000 and first["truncated"] is True
    starts = [s["start_ns"] for s in first["spans"]]
    assert starts == sorted(starts)  # the first ones, in start order
    few = httpx.get(whole, params={"max_spans": 3}, headers=headers, timeout=60).json()
    assert [s["span_id"] for s in few["spans"]] == [s["span_id"] for s in first["spans"][:3]]
    all_of_it = httpx.get(whole, params={"max_spans": 40_000}, headers=headers, timeout=60)
    assert all_of_it.json()["truncated"] is False and len(all_of_it.json()["spans"]) == 30_002
    for bad in ({"max_spans": 0}, {"max_spans": 100_001}, {"max_events": -1}):
        assert httpx.get(whole, params=bad, headers=headers, timeout=60).status_code == 422


def _stored_run(
    tmp_path: Path, spans: list[tuple[str, str | None, str]], events: Any = None
) -> tuple[Store, str, Any]:
    """A store with one run holding ``spans`` ((span id, parent id, name), started in that
    order) and the events ``events(seeded run, start)`` makes: the store, its URL, the run."""
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    store = Store(url)
    seeded = add_run(store, tool_calls=0)
    start = time.time_ns() - 3_600_000_000_000
    records = [
        SpanRecord(
            seeded.trace_id,
            run_id=seeded.run_id,
            span_id=span_id,
            parent_id=parent_id,
            name=name,
            kind="plan",
            start_ns=start + i,
            end_ns=start + i + 1,
        )
        for i, (span_id, parent_id, name) in enumerate(spans)
    ]
    store.write(TraceBatch(spans=records, events=events(seeded, start) if events else []))
    return store, url, seeded


@contextmanager
def _run_with(
    tmp_path: Path, spans: list[tuple[str, str | None, str]]
) -> Iterator[tuple[str, httpx.Client]]:
    """A served store with one run holding ``spans`` (``_stored_run``): the run's id, and a
    client with a viewer key."""
    _, url, seeded = _stored_run(tmp_path, spans)
    key = AccessStore(url).create_key("default", Role.VIEWER)[1]
    with (
        serving(create_app(ServerConfig(database_url=url))) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c,
    ):
        yield seeded.run_id, c


def test_a_trace_nested_deeper_than_200_levels_opens_to_its_last_span(tmp_path: Path) -> None:
    """Each subtree the page opens asks for the next level's depth (its indent): past 200 it
    was refused (422), and the spans below could never be seen."""
    ids = [f"{0xC000000000000000 + i:016x}" for i in range(260)]
    chain: list[tuple[str, str | None, str]] = [
        (ids[i], ids[i - 1], f"level {i}") for i in range(1, 260)
    ]
    with _run_with(tmp_path, [(ids[0], None, "level 0"), *chain]) as (run_id, c):
        page = c.get(f"/runs/{run_id}").text
        opened = 0
        for level in range(1, 259):  # follow each level's toggle, as the browser does
            link = re.search(rf'hx-get="([^"]*children[^"]*parent={ids[level]}[^"]*)"', page)
            if link is None:  # opened with the page already
                assert f"level {level + 1}" in page
                continue
            answer = c.get(html.unescape(link.group(1)))
            assert answer.status_code == 200, (level, answer.status_code)
            page, opened = answer.text, level
        assert "level 259" in page and opened > 200


def test_a_run_waiting_for_its_root_pages_through_all_its_top_spans(tmp_path: Path) -> None:
    """OTLP children arrive before their root (they end first): until it comes, the root's
    children have no parent in the run. They were listed apart, at most 200 and with no
    way to the rest (the API's total counted none of them)."""
    missing_root = "d000000000000001"
    calls: list[tuple[str, str | None, str]] = [
        (f"{0xD100000000000000 + i:016x}", missing_root, f"call {i}") for i in range(250)
    ]
    with _run_with(tmp_path, calls) as (run_id, c):
        api = f"/api/v1/runs/{run_id}/spans"
        first = c.get(api).json()
        assert first["next_offset"] is not None
        rest = c.get(api, params={"offset": first["next_offset"], "limit": 1000}).json()
        names = {s["name"] for s in first["spans"] + rest["spans"]}
        assert {f"call {i}" for i in range(250)} <= names
        page = c.get(f"/runs/{run_id}").text
        more = re.search(r'hx-get="([^"]*children[^"]*offset=[^"]*)"', page)
        assert more is not None and "call 249" not in page
        assert "call 249" in c.get(html.unescape(more.group(1))).text


def test_a_page_of_the_tree_reads_the_decisions_of_its_own_spans(tmp_path: Path) -> None:
    """Each page of the tree (a subtree opened) read and parsed every control decision of
    the run: 0.3 s a click in a run of 30,000 decided spans, growing with the run. It reads
    those of the page's spans, and shows them."""
    from sqlalchemy import event

    from tether.server import traces
    from tether.store import EventRecord
    from tether.trace import semconv

    ids = [f"{0xE000000000000000 + i:016x}" for i in range(600)]

    def decisions(seeded: Any, start: int) -> list[EventRecord]:
        return [
            EventRecord(
                seeded.trace_id,
                run_id=seeded.run_id,
                span_id=span_id,
                name=semconv.EVENT_CONTROL_DECISION,
                time_ns=start + i,
                attributes={semconv.TETHER_DECISION: "block" if i % 2 else "allow"},
            )
            for i, span_id in enumerate(ids)
        ]

    spans: list[tuple[str, str | None, str]] = [(s, None, f"call {i}") for i, s in enumerate(ids)]
    store, _, seeded = _stored_run(tmp_path, spans, decisions)
    fetched: list[int] = []  # per decisions query: how many of the run's span ids it names

    def rows(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if sql.lstrip().startswith("SELECT tether_events.span_id, tether_events.attributes"):
            fetched.append(sum(1 for p in params if isinstance(p, str) and p in ids))

    event.listen(store.engine, "before_cursor_execute", rows)
    lines, total = traces.children(store.engine, seeded.run_id, None, offset=200)
    assert total >= 600 and len(lines) == traces.CHILDREN_PAGE
    assert fetched == [len(lines)]  # asked for the page's spans, not every decision (600)
    for line in lines:
        number = int(line.name.split()[-1]) if line.name.startswith("call ") else None
        if number is not None:
            assert line.decisions == ["block" if number % 2 else "allow"]


def test_a_sub_millisecond_step_shows_its_time_not_zero(tmp_path: Path) -> None:
    """A run of 0.4 ms (a cached answer, a fast tool) read ``0 ms`` in the runs table and on
    its page, as if it took no time."""
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    store = Store(url)
    seeded = add_run(store, latency_ms=0.4, tool_calls=0)
    store.close()
    key = AccessStore(url).create_key("default", Role.VIEWER)[1]
    headers = {"Authorization": f"Bearer {key}"}
    with serving(create_app(ServerConfig(database_url=url))) as base:
        for path in ("/runs", f"/runs/{seeded.run_id}"):
            page = httpx.get(f"{base}{path}", headers=headers, timeout=60)
            assert page.status_code == 200, page.text
            assert "0.4 ms" in page.text and ">0 ms<" not in page.text, path


def test_the_blocked_list_reads_no_span_attributes(tmp_path: Path) -> None:
    """The list of blocked decisions at the top of a run's page read each blocked span whole
    (its attributes and events): 1.2-1.5 s a page where those spans held large attributes
    (a tool's arguments, messages). It reads the decisions and the spans' names only."""
    from sqlalchemy import event

    from tether.store import EventRecord
    from tether.trace import semconv

    url = f"sqlite:///{tmp_path / 'tether.db'}"
    store = Store(url)
    seeded = add_run(store, tool_calls=0)
    start = time.time_ns() - 3_600_000_000_000
    ids = [f"{0xF000000000000000 + i:016x}" for i in range(30)]
    spans = [
        SpanRecord(
            seeded.trace_id,
            run_id=seeded.run_id,
            span_id=s,
            parent_id=seeded.run_id,
            name=f"execute_tool refund {i}",
            kind="tool",
            start_ns=start + i,
            end_ns=start + i + 1,
            attributes={"gen_ai.tool.call.arguments": "x" * 200_000},
        )
        for i, s in enumerate(ids)
    ]
    decisions = [
        EventRecord(
            seeded.trace_id,
            run_id=seeded.run_id,
            span_id=s,
            name=semconv.EVENT_CONTROL_DECISION,
            time_ns=start + i,
            attributes={
                semconv.TETHER_DECISION: "block",
                semconv.TETHER_CONTROL_NAME: "refund_limit",
                semconv.TETHER_CONTROL_HOOK: "before_tool",
                semconv.TETHER_DECISION_REASON: f"too much {i}",
            },
        )
        for i, s in enumerate(ids)
    ]
    store.write(TraceBatch(spans=spans, events=decisions))
    store.close()
    key = AccessStore(url).create_key("default", Role.VIEWER)[1]
    app = create_app(ServerConfig(database_url=url))
    statements: list[str] = []
    with serving(app) as base:
        event.listen(app.state.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        page = httpx.get(
            f"{base}/runs/{seeded.run_id}", headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
    assert page.status_code == 200
    listed = page.text.split('id="blocked-list"')[1].split("</div>\n</div>")[0]
    assert "execute_tool refund 0</a>" in listed and "too much 19" in listed
    assert "too much 20" not in listed  # the first 20; the badge counts all 30
    assert "30 blocked decisions" in page.text
    assert statements and not [s for s in statements if "tether_spans.attributes" in s]
