"""OTLP spans joining runs, on a real SQLite file and the real PostgreSQL: chains of any depth
sent one span a request in every order end in their root's run; a request is one transaction
(a failure half-way stores none of it); concurrent requests, from threads and from two
``tether serve`` processes on one store, racing to create the same pending run neither
duplicate runs nor lose spans."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from fakes.otlp import NS, json_request, json_span
from fakes.server import serving, tether_serve
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store

MODEL = "gpt-4.1-mini"


@dataclass
class Site:
    urls: list[str]
    key: str
    store: Store
    clients: list[httpx.Client] = field(default_factory=list)
    """One kept-alive client per server (shared by the threads of a race): making a client
    per request cost about 40 ms each, most of these tests' time."""

    def __post_init__(self) -> None:
        self.serve_at(self.urls)

    def serve_at(self, urls: list[str]) -> None:
        """Send to these servers from now on."""
        self.close()
        self.urls = urls
        headers = {"Authorization": f"Bearer {self.key}"}
        self.clients = [httpx.Client(base_url=u, headers=headers, timeout=60) for u in urls]

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def post(self, spans: list[dict[str, Any]], server: int = 0) -> httpx.Response:
        return self.clients[server].post("/v1/traces", json=json_request(*spans))

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(text(sql), params))


@pytest.fixture
def site(store_url: str) -> Iterator[Site]:
    key = AccessStore(store_url).create_key("default", Role.AGENT)[1]
    store = Store(store_url)
    with serving(create_app(ServerConfig(database_url=store_url))) as url:
        site = Site([url], key, store)
        yield site
        site.close()
    store.close()


def _id(*parts: int) -> str:
    """A 16-hex span id (never all zero) from small numbers."""
    return "f" + "".join(f"{p:05x}" for p in parts).rjust(15, "0")[-15:]


def _trace(*parts: int) -> str:
    return "e" + "".join(f"{p:06x}" for p in parts).rjust(31, "0")[-31:]


def _chain(trace: str, ids: list[str]) -> list[dict[str, Any]]:
    """ids[0] the root agent span, each next one the child of the one before; the last a
    failed model call with tokens."""
    spans = []
    for level, span_id in enumerate(ids):
        parent = ids[level - 1] if level else None
        start = NS + level * 1_000_000
        if level == len(ids) - 1:
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": MODEL,
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 10,
            }
            status = {"code": 2, "message": "upstream 500"}
            spans.append(
                json_span(span_id, parent, "chat", attrs, trace=trace, start=start, status=status)
            )
        else:
            attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
            spans.append(
                json_span(span_id, parent, f"step {level}", attrs, trace=trace, start=start)
            )
    return spans


def _check_trace(site: Site, trace: str, root: str, spans: int, input_tokens: int) -> None:
    runs = site.rows(
        "SELECT run_id, status, input_tokens, turns, agent_name FROM tether_runs "
        "WHERE trace_id = :t",
        t=trace,
    )
    assert [(r.run_id, r.status) for r in runs] == [(root, "completed")], runs
    assert runs[0].input_tokens == input_tokens and runs[0].agent_name == "planner"
    in_runs = site.rows("SELECT DISTINCT run_id FROM tether_spans WHERE trace_id = :t", t=trace)
    assert [r.run_id for r in in_runs] == [root]
    count = site.rows("SELECT count(*) AS n FROM tether_spans WHERE trace_id = :t", t=trace)
    assert count[0].n == spans
    # Read as the store reads a run's spans: through its run_seq (moved ones took the root's).
    keyed = site.rows(
        "SELECT count(*) AS n FROM tether_runs r JOIN tether_spans s "
        "ON s.run_seq = r.run_seq AND s.run_id = r.run_id WHERE r.run_id = :r",
        r=root,
    )
    assert keyed[0].n == spans
    events = site.rows("SELECT run_id, name FROM tether_events WHERE trace_id = :t", t=trace)
    assert events and {e.run_id for e in events} == {root}
    models = site.rows(
        "SELECT m.run_id, m.model FROM tether_run_models m "
        "JOIN tether_runs r ON r.run_id = m.run_id WHERE r.trace_id = :t",
        t=trace,
    )
    assert [(m.run_id, m.model) for m in models] == [(root, MODEL)]


@pytest.mark.parametrize("depth", [3, 4])
def test_a_chain_sent_one_span_a_request_in_any_order_ends_in_its_roots_run(
    site: Site, depth: int
) -> None:
    orders = list(itertools.permutations(range(depth)))
    for n, order in enumerate(orders):
        trace = _trace(depth, n)
        ids = [_id(depth, n, level) for level in range(depth)]
        spans = _chain(trace, ids)
        for level in order:
            answer = site.post([spans[level]])
            assert answer.status_code == 200 and answer.json() == {}, answer.text
        _check_trace(site, trace, ids[0], depth, 100)
    assert site.rows("SELECT run_id FROM tether_runs WHERE status = 'running'") == []
    assert site.rows("SELECT count(*) AS n FROM tether_runs")[0].n == len(orders)
    orphans = "SELECT count(*) AS n FROM tether_run_models WHERE run_id NOT IN "
    assert site.rows(orphans + "(SELECT run_id FROM tether_runs)")[0].n == 0


def test_a_root_arriving_before_a_pending_middle_span_takes_its_totals(site: Site) -> None:
    """grandchild, root, child: the root's run is already completed when the child brings the
    grandchild's pending run: the totals and the model filter follow."""
    trace = _trace(9, 9)
    ids = [_id(9, 9, level) for level in range(3)]
    spans = _chain(trace, ids)
    for level in (2, 0):
        assert site.post([spans[level]]).status_code == 200
    before = site.rows("SELECT input_tokens FROM tether_runs WHERE run_id = :r", r=ids[0])
    assert before[0].input_tokens == 0
    assert site.post([spans[1]]).status_code == 200
    _check_trace(site, trace, ids[0], 3, 100)
    viewer = AccessStore(site.store.url).create_key("default", Role.VIEWER)[1]
    with httpx.Client(base_url=site.urls[0], headers={"Authorization": f"Bearer {viewer}"}) as c:
        listed = c.get("/api/v1/runs", params={"model": MODEL}).json()["runs"]
    assert [r["run_id"] for r in listed] == [ids[0]]


# -- one request, one transaction ---------------------------------------------------------------

_FAIL_SQLITE = """
CREATE TRIGGER tether_test_fail BEFORE UPDATE ON tether_runs WHEN NEW.status = 'completed'
BEGIN SELECT RAISE(ABORT, 'injected failure'); END
"""
_FAIL_PG = [
    """CREATE FUNCTION tether_test_fail() RETURNS trigger AS $$
    BEGIN
        IF NEW.status = 'completed' THEN RAISE EXCEPTION 'injected failure'; END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER tether_test_fail BEFORE UPDATE ON tether_runs FOR EACH ROW
    EXECUTE FUNCTION tether_test_fail()""",
]


def test_a_failure_after_the_spans_are_written_stores_none_of_the_request(site: Site) -> None:
    """The root's run update fails (a trigger of the database refuses it) after the request's
    new spans were inserted: the request answers 503 and none of it is kept; sent again once
    the store works, all of it is."""
    trace = _trace(7, 7)
    root, child, sibling = _id(7, 7, 0), _id(7, 7, 1), _id(7, 7, 2)
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}
    assert site.post([json_span(child, root, "lookup", tool, trace=trace)]).status_code == 200
    pending = site.rows("SELECT status FROM tether_runs WHERE run_id = :r", r=root)
    assert [p.status for p in pending] == ["running"]
    with site.store.engine.begin() as conn:
        for statement in [_FAIL_SQLITE] if conn.dialect.name == "sqlite" else _FAIL_PG:
            conn.exec_driver_sql(statement)
    batch = [
        json_span(root, None, "invoke_agent planner", agent, trace=trace),
        json_span(sibling, root, "lookup", tool, trace=trace),
    ]
    failed = site.post(batch)
    assert failed.status_code == 503, failed.text
    assert "injected failure" in failed.json()["message"]
    spans = site.rows("SELECT span_id FROM tether_spans WHERE trace_id = :t", t=trace)
    assert [s.span_id for s in spans] == [child]  # the sibling's insert was rolled back
    assert [p.status for p in site.rows("SELECT status FROM tether_runs")] == ["running"]
    with site.store.engine.begin() as conn:
        on = "" if conn.dialect.name == "sqlite" else " ON tether_runs"
        conn.exec_driver_sql(f"DROP TRIGGER tether_test_fail{on}")
    assert site.post(batch).status_code == 200
    runs = site.rows("SELECT run_id, status, tool_calls FROM tether_runs")
    assert [(r.run_id, r.status, r.tool_calls) for r in runs] == [(root, "completed", 2)]


# -- racing requests ----------------------------------------------------------------------------

GRANDCHILDREN = 6


def _family(n: int) -> tuple[str, str, list[dict[str, Any]]]:
    """A trace: root, one child, and GRANDCHILDREN model calls under the child (all of which
    race to create the child's pending run when they come first)."""
    trace = _trace(5, n)
    root, child = _id(5, n, 0), _id(5, n, 1)
    spans = _chain(trace, [root, child, _id(5, n, 2)])
    for g in range(1, GRANDCHILDREN):
        extra = dict(spans[2])
        extra["spanId"] = _id(5, n, 2 + g)
        spans.append(extra)
    return trace, root, spans


def _race(site: Site, servers: int, families: int, seed: int) -> None:
    rng = random.Random(seed)
    work: list[tuple[int, list[dict[str, Any]]]] = []
    expected = []
    for n in range(families):
        trace, root, spans = _family(n)
        expected.append((trace, root))
        grandchildren, rest = spans[2:], spans[:2]
        rng.shuffle(rest)
        # Grandchildren first, each alone: they all want the child's pending run at once.
        order = [[g] for g in grandchildren] + [[s] for s in rest]
        if n % 3 == 0:  # and some families in one shuffled pile, a few spans a request
            pile = list(spans)
            rng.shuffle(pile)
            order = [pile[i : i + 2] for i in range(0, len(pile), 2)]
        work.extend((rng.randrange(servers), group) for group in order)

    def post(item: tuple[int, list[dict[str, Any]]]) -> httpx.Response:
        return site.post(item[1], item[0])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, work))
    failures = [(a.status_code, a.text) for a in answers if a.status_code != 200 or a.json()]
    assert failures == []
    for trace, root in expected:
        _check_trace(site, trace, root, 2 + GRANDCHILDREN, 100 * GRANDCHILDREN)
    assert site.rows("SELECT run_id FROM tether_runs WHERE status = 'running'") == []


def test_concurrent_requests_racing_for_one_pending_run(site: Site) -> None:
    _race(site, servers=1, families=12, seed=1)


def test_two_server_processes_on_one_store_racing_for_one_pending_run(store_url: str) -> None:
    key = AccessStore(store_url).create_key("default", Role.AGENT)[1]
    env = {**os.environ, "TETHER_DATABASE_URL": store_url}
    store = Store(store_url)
    with tether_serve(env=env) as first, tether_serve(env=env) as second:
        site = Site([first.url, second.url], key, store)
        _race(site, servers=2, families=12, seed=2)
        site.close()
    store.close()


def test_late_spans_add_to_an_ended_runs_totals_and_unpriced_count(site: Site) -> None:
    """Model calls arriving after their root, one request each: the run's tokens, cost and
    count of unpriced calls grow by each (without rereading its spans)."""
    trace, root = _trace(8, 8), _id(8, 8, 0)
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
    assert site.post([json_span(root, None, "invoke_agent planner", agent, trace=trace)])
    calls = [("gpt-4.1-mini", 1000), ("no-such-model", 500), ("no-such-model", 250)]
    for n, (model, tokens) in enumerate(calls, start=1):
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": tokens,
        }
        answer = site.post([json_span(_id(8, 8, n), root, "chat", attrs, trace=trace)])
        assert answer.status_code == 200 and answer.json() == {}
    run = site.rows("SELECT * FROM tether_runs WHERE run_id = :r", r=root)[0]
    assert run.status == "completed" and run.turns == 3 and run.input_tokens == 1750
    priced = site.rows("SELECT attributes FROM tether_spans WHERE span_id = :s", s=_id(8, 8, 1))[
        0
    ].attributes
    cost = json.loads(priced)["tether.cost.usd"]
    assert cost > 0 and run.cost_usd == pytest.approx(cost)
    assert json.loads(run.attributes)["tether.cost.unpriced"] == 2


def test_a_server_killed_during_a_request_keeps_all_of_it_or_none(store_url: str) -> None:
    """kill -9 of ``tether serve`` at several moments of a 2,400-span request: the store
    holds every span of it or none (and runs only with their spans), and opens afterwards;
    killed after its 200, it holds all of it. The moments are fractions of how long such a
    request takes here when let finish (measured by the first attempt, on this machine now)."""
    key = AccessStore(store_url).create_key("default", Role.AGENT)[1]
    env = {**os.environ, "TETHER_DATABASE_URL": store_url}
    store = Store(store_url)
    site = Site([], key, store)
    families = 300

    def request(attempt: int) -> list[dict[str, Any]]:
        return [s for n in range(families) for s in _family(1000 * attempt + n)[2]]

    def check(spans: list[dict[str, Any]], moment: str) -> None:
        traces = {s["traceId"] for s in spans}
        counts = site.rows("SELECT trace_id, count(*) AS n FROM tether_spans GROUP BY trace_id")
        stored = sum(c.n for c in counts if c.trace_id in traces)
        assert stored in (0, len(spans)), (moment, stored)
        runs = [r for r in site.rows("SELECT trace_id FROM tether_runs") if r.trace_id in traces]
        assert len(runs) == (families if stored else 0)

    for attempt, fraction in enumerate((None, 0.1, 0.5, 0.9)):
        spans = request(attempt)
        with tether_serve(env=env) as served:
            site.serve_at([served.url])
            if fraction is None:  # let it finish (how long it takes), then kill -9
                began = time.monotonic()
                assert site.post(spans).status_code == 200
                took = time.monotonic() - began
                served.proc.kill()
                served.proc.wait(timeout=30)
                check(spans, "killed after its answer")
                assert len(site.rows("SELECT span_id FROM tether_spans")) == len(spans)
                continue
            with ThreadPoolExecutor(max_workers=1) as pool:
                sent = pool.submit(site.post, spans)
                time.sleep(took * fraction)
                served.proc.kill()
                served.proc.wait(timeout=30)
                # The connection dies with the server (the exporter would send it again).
                with contextlib.suppress(httpx.HTTPError):
                    sent.result(timeout=60)
        check(spans, f"killed at {fraction:.0%} of {took:.2f} s")
    site.close()
    store.close()


def test_times_past_the_stores_integers_reject_that_span_not_the_request(site: Site) -> None:
    # OTLP's times are unsigned 64-bit; the store's columns are signed: a span whose start,
    # end or event time does not fit is rejected with a reason (partial success), and the
    # request's other spans are stored (a 500 made exporters drop the whole batch).
    trace, top = _trace(71), 2**64 - 1
    late_event = json_span(_id(71, 4), None, "late event", {}, trace=trace)
    late_event["events"] = [{"name": "e", "timeUnixNano": str(top)}]
    answer = site.post(
        [
            json_span(_id(71, 1), None, "fine", {}, trace=trace),
            json_span(_id(71, 2), None, "late start", {}, trace=trace, start=top, end=top),
            json_span(_id(71, 3), None, "late end", {}, trace=trace, end=top),
            late_event,
        ]
    )
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3", partial
    assert "out of range" in partial["errorMessage"]
    names = site.rows("SELECT name FROM tether_spans WHERE trace_id = :t", t=trace)
    assert [n for (n,) in names] == ["fine"]


def test_token_counts_past_any_real_call_reject_that_span_not_the_request(site: Site) -> None:
    # A token count of 1e300 (a double) or 2^63-1 on two spans of one run overflowed the run's
    # integer totals: the whole request failed (SQLite 500, PostgreSQL 503, retried forever).
    trace = _trace(72)
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL}
    huge = json_span(_id(72, 2), _id(72, 1), "huge", chat, trace=trace)
    huge["attributes"].append({"key": "gen_ai.usage.input_tokens", "value": {"doubleValue": 1e300}})
    answer = site.post(
        [
            json_span(_id(72, 1), None, "root", {}, trace=trace),
            huge,
            *(
                json_span(
                    _id(72, 3 + i),
                    _id(72, 1),
                    f"max {i}",
                    {**chat, "gen_ai.usage.output_tokens": 2**63 - 1},
                    trace=trace,
                )
                for i in range(2)
            ),
            json_span(
                _id(72, 5),
                _id(72, 1),
                "fine",
                {**chat, "gen_ai.usage.input_tokens": 10},
                trace=trace,
            ),
        ]
    )
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3", partial
    assert "gen_ai.usage.input_tokens" in partial["errorMessage"]
    assert "gen_ai.usage.output_tokens" in partial["errorMessage"]
    names = site.rows("SELECT name FROM tether_spans WHERE trace_id = :t", t=trace)
    assert sorted(n for (n,) in names) == ["fine", "root"]
    totals = site.rows("SELECT input_tokens FROM tether_runs WHERE run_id = :r", r=_id(72, 1))
    assert totals == [(10,)]


def test_a_span_id_stored_in_another_trace_is_rejected_not_dropped_silently(site: Site) -> None:
    # Spans are keyed by their 8-byte id alone: the same id in another trace is not a
    # resend. It was answered 200 with no rejection and not stored (2xx: not stored).
    first, second = _trace(73, 1), _trace(73, 2)
    assert site.post([json_span(_id(73, 1), None, "first", {}, trace=first)]).status_code == 200
    resent = site.post([json_span(_id(73, 1), None, "first", {}, trace=first)])
    assert resent.status_code == 200 and "partialSuccess" not in resent.json()
    other = site.post(
        [
            json_span(_id(73, 1), None, "other trace", {}, trace=second),
            json_span(_id(73, 2), None, "fine", {}, trace=second),
        ]
    )
    assert other.status_code == 200, other.text
    partial = other.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1", partial
    assert f"span {_id(73, 1)}" in partial["errorMessage"]
    assert "another trace" in partial["errorMessage"]
    rows = site.rows("SELECT trace_id, name FROM tether_spans")
    assert sorted(rows) == sorted([(first, "first"), (second, "fine")])


# -- requests of new spans, and what sends them the careful way ------------------------------
# Requests whose spans are all new are written without looking each span up first (SQLite);
# a span or run found stored by the inserts sends the request down the careful path, and a
# project with a pending run takes that path from the start. Either way the result is the same.


def test_a_request_resending_one_span_among_new_ones_stores_each_once(site: Site) -> None:
    trace = _trace(7, 1)
    ids = [_id(7, 1, i) for i in range(2)]
    first = _chain(trace, ids)  # the root and a model call of 100 input tokens
    assert site.post(first).status_code == 200
    # The model call sent again (a retry) beside a second model call of the run, new.
    second = dict(first[1], spanId=_id(7, 1, 9))
    again = site.post([first[1], second])
    assert again.status_code == 200 and "partialSuccess" not in again.json(), again.text
    runs = site.rows("SELECT input_tokens, turns FROM tether_runs WHERE run_id = :r", r=ids[0])
    assert [(r.input_tokens, r.turns) for r in runs] == [(200, 2)]  # the retry counted once
    spans = site.rows("SELECT count(*) AS n FROM tether_spans WHERE trace_id = :t", t=trace)
    assert spans[0].n == 3
    assert site.post([*first, second]).status_code == 200  # all of it again: nothing changes
    runs = site.rows("SELECT input_tokens, turns FROM tether_runs WHERE run_id = :r", r=ids[0])
    assert [(r.input_tokens, r.turns) for r in runs] == [(200, 2)]


def test_a_new_root_whose_id_is_a_stored_span_of_the_project_is_refused(site: Site) -> None:
    trace = _trace(7, 2)
    ids = [_id(7, 2, i) for i in range(2)]
    assert site.post(_chain(trace, ids)).status_code == 200
    # Another trace whose root reuses the stored child's id, beside a trace that is new.
    clash = json_span(ids[1], None, "clash", {"gen_ai.operation.name": "invoke_agent"})
    fine = _chain(_trace(7, 3), [_id(7, 3, 0), _id(7, 3, 1)])
    answer = site.post([clash, *fine])
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and ids[1] in partial["errorMessage"]
    _check_trace(site, _trace(7, 3), _id(7, 3, 0), spans=2, input_tokens=100)
    _check_trace(site, trace, ids[0], spans=2, input_tokens=100)


def test_whole_traces_are_stored_right_beside_many_pending_runs_of_another_project(
    site: Site, store_url: str
) -> None:
    """Another project's thousand orphan spans (each a pending run) make the check for
    pending runs give up: requests go the careful way and store the same; this project's
    own pending run still takes its root."""
    other = AccessStore(store_url)
    other.create_project("noisy")
    noisy_key = other.create_key("noisy", Role.AGENT)[1]
    orphans = [
        json_span(_id(8, 1, i), _id(8, 2, i), "orphan", {}, trace=_trace(8, i)) for i in range(300)
    ]
    with httpx.Client(base_url=site.urls[0], timeout=60) as c:
        sent = c.post(
            "/v1/traces",
            json=json_request(*orphans),
            headers={"Authorization": f"Bearer {noisy_key}"},
        )
    assert sent.status_code == 200, sent.text
    trace = _trace(9, 1)
    ids = [_id(9, 1, i) for i in range(3)]
    chain = _chain(trace, ids)
    assert site.post(chain[2:]).status_code == 200  # the last span first: a pending run
    assert site.post(chain[:2]).status_code == 200  # then its root and parent
    _check_trace(site, trace, ids[0], spans=3, input_tokens=100)
    assert site.post(_chain(_trace(9, 2), [_id(9, 2, 0), _id(9, 2, 1)])).status_code == 200
    _check_trace(site, _trace(9, 2), _id(9, 2, 0), spans=2, input_tokens=100)
    pending = site.rows(
        "SELECT count(*) AS n FROM tether_runs WHERE project = 'noisy' AND status = 'running'"
    )
    assert pending[0].n == 300


def _other_project_client(site: Site) -> httpx.Client:
    """An agent key of project ``other``, sending to the site's first server."""
    access = AccessStore(str(site.store.engine.url.render_as_string(hide_password=False)))
    if not access.project_exists("other"):
        access.create_project("other")
    key = access.create_key("other", Role.AGENT)[1]
    return httpx.Client(
        base_url=site.urls[0], headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def test_a_root_named_first_as_another_projects_missing_parent_is_stored(site: Site) -> None:
    """A span of project ``other`` naming a parent not arrived yet made a pending run under
    that parent's id; when the parent came, as a root of another project (it called a
    service of ``other``, whose spans name it through ``traceparent``), that project's root
    and its children were refused ('its run id is already taken') and its run never ended."""
    root, child, theirs = _id(81, 1), _id(81, 2), _id(81, 3)
    with _other_project_client(site) as other:
        early = other.post(
            "/v1/traces",
            json=json_request(
                json_span(theirs, root, "their server span", {}, trace=_trace(81, 2))
            ),
        )
        assert early.status_code == 200 and "partialSuccess" not in early.json(), early.text
        ours = site.post(
            [
                json_span(
                    root, None, "our agent", {"gen_ai.agent.name": "planner"}, trace=_trace(81, 1)
                ),
                json_span(child, root, "our step", {}, trace=_trace(81, 1)),
            ]
        )
        assert ours.status_code == 200 and "partialSuccess" not in ours.json(), ours.text
        # Sent after the root: its parent is another project's, so it is its project's root.
        late = other.post(
            "/v1/traces",
            json=json_request(json_span(_id(81, 4), root, "late", {}, trace=_trace(81, 2))),
        )
        assert late.status_code == 200 and "partialSuccess" not in late.json(), late.text
    runs = site.rows(
        "SELECT run_id, project, status FROM tether_runs ORDER BY project, status, run_id"
    )
    # Each of other's spans naming the root is its run's root, whichever came first.
    assert [(r.project, r.status, r.run_id) for r in runs] == [
        ("default", "completed", root),
        ("other", "completed", theirs),
        ("other", "completed", _id(81, 4)),
    ]
    spans = site.rows("SELECT span_id, run_id FROM tether_spans ORDER BY span_id")
    assert [(s.span_id, s.run_id) for s in spans] == [
        (root, root),
        (child, root),
        (theirs, theirs),
        (_id(81, 4), _id(81, 4)),
    ]
    keyed = site.rows(
        "SELECT count(*) AS n FROM tether_runs r JOIN tether_spans s "
        "ON s.run_seq = r.run_seq AND s.run_id = r.run_id WHERE r.run_id = :r",
        r=theirs,
    )
    assert keyed[0].n == 1  # read through its run's run_seq
    # Shown in its run's tree: its parent, stored in another project's run, hid it there.
    url = str(site.store.engine.url.render_as_string(hide_password=False))
    viewer = AccessStore(url).create_key("other", Role.VIEWER)[1]
    with httpx.Client(
        base_url=site.urls[0], headers={"Authorization": f"Bearer {viewer}"}, timeout=60
    ) as reader:
        listed = reader.get(f"/api/v1/runs/{theirs}/spans").json()["spans"]
        assert [s["span_id"] for s in listed] == [theirs]
        page = reader.get(f"/runs/{theirs}")
        assert page.status_code == 200 and "their server span" in page.text


def test_callee_spans_sent_before_their_cross_project_caller_end_in_runs_of_their_own(
    site: Site,
) -> None:
    """A service of project ``other`` called twice by a run of ``default`` (one trace, ids
    through ``traceparent``) sent its spans first, as exporters do (they end first): they
    waited in a pending run named after the caller's span, and when it arrived that run was
    moved aside and stayed ``running`` for ever, its tokens counted nowhere. Now each call is
    a run of ``other``, ended, with its spans' totals, as when the caller comes first."""
    trace = _trace(85, 1)
    caller, first, second = _id(85, 1), _id(85, 2), _id(85, 4)
    model = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": MODEL,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
    }
    server = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support"}
    with _other_project_client(site) as other:
        callee = [
            json_span(_id(85, 3), first, "chat", model, trace=trace),
            json_span(first, caller, "serve 1", server, trace=trace),
            json_span(second, caller, "serve 2", server, trace=trace, status={"code": 2}),
            json_span(_id(85, 5), second, "chat", model, trace=trace),
        ]
        for span in callee:  # one a request, children first
            answer = other.post("/v1/traces", json=json_request(span))
            assert answer.status_code == 200 and "partialSuccess" not in answer.json()
    # One pending run, which keeps the id it took first (after ``first``, the first missing
    # parent) while it waits for the caller.
    pending = site.rows("SELECT run_id, status FROM tether_runs")
    assert [(r.run_id, r.status) for r in pending] == [(first, "running")]
    waits = site.rows("SELECT span_id, run_id FROM tether_otlp_waits")
    assert [tuple(w) for w in waits] == [(caller, first)]
    ours = site.post([json_span(caller, None, "our agent", {}, trace=trace)])
    assert ours.status_code == 200 and "partialSuccess" not in ours.json(), ours.text
    runs = site.rows(
        "SELECT run_id, project, status, agent_name, input_tokens, turns FROM tether_runs "
        "ORDER BY run_id"
    )
    assert [tuple(r) for r in runs] == [
        (caller, "default", "completed", "rag", 0, 0),
        (first, "other", "completed", "support", 100, 1),
        (second, "other", "failed", "support", 100, 1),
    ]
    spans = site.rows("SELECT span_id, run_id FROM tether_spans ORDER BY span_id")
    assert [tuple(s) for s in spans] == [
        (caller, caller),
        (first, first),
        (_id(85, 3), first),
        (second, second),
        (_id(85, 5), second),
    ]
    for run in (first, second):
        keyed = site.rows(
            "SELECT count(*) AS n FROM tether_runs r JOIN tether_spans s "
            "ON s.run_seq = r.run_seq AND s.run_id = r.run_id WHERE r.run_id = :r",
            r=run,
        )
        assert keyed[0].n == 2
    models = site.rows("SELECT run_id, model FROM tether_run_models ORDER BY run_id")
    assert [tuple(m) for m in models] == [(first, MODEL), (second, MODEL)]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # SQLite: BEGIN IMMEDIATE
def test_requests_claiming_one_run_id_take_turns_whatever_their_trace(site: Site) -> None:
    """PostgreSQL: two requests creating a run under one id (a root, and another project's
    span naming it as its missing parent) under different trace ids did not wait for each
    other (locks were per trace id): the second read the run as absent, its insert of the
    run was skipped as existing once the first committed, and its spans went into the other
    project's run. Now a request waits for the lock of each run id it may create."""
    from tether.server.otlp_store import _RUN_LOCK_SPACE, _lock_keys

    root = _id(82, 1)
    (key,) = _lock_keys([root])
    with site.store.engine.connect() as holder, _other_project_client(site) as other:
        holder.execute(text("SELECT pg_advisory_lock(:a, :b)"), {"a": _RUN_LOCK_SPACE, "b": key})
        with ThreadPoolExecutor(1) as pool:
            sent = pool.submit(
                other.post,
                "/v1/traces",
                json=json_request(json_span(_id(82, 2), root, "child", {}, trace=_trace(82, 2))),
            )
            deadline = time.monotonic() + 60
            waiting = False
            while not waiting and not sent.done() and time.monotonic() < deadline:
                waiting = bool(
                    holder.execute(
                        text(
                            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                            "AND NOT granted AND classid = :a AND objid = :b"
                        ),
                        {"a": _RUN_LOCK_SPACE, "b": key & 0xFFFFFFFF},
                    ).first()
                )
                time.sleep(0.02)
            assert waiting and not sent.done()
            holder.execute(
                text("SELECT pg_advisory_unlock(:a, :b)"), {"a": _RUN_LOCK_SPACE, "b": key}
            )
            assert sent.result().status_code == 200


def test_a_moved_pending_run_takes_an_id_no_sender_can_take_first(site: Site) -> None:
    """The pending run moved out of a root's way took an id derived from its project and the
    root's id: a sender of that project who sent a run under that id first made every
    request carrying the root fail whole (the moved run's insert clashed)."""
    import hashlib

    root = _id(83, 1)
    derived = hashlib.sha256(f"other/{root}".encode()).hexdigest()[:16]
    with _other_project_client(site) as other:
        for spans in (
            [json_span(derived, None, "squatter", {}, trace=_trace(83, 3))],
            [json_span(_id(83, 2), root, "waiting", {}, trace=_trace(83, 2))],
        ):
            answer = other.post("/v1/traces", json=json_request(*spans))
            assert answer.status_code == 200 and "partialSuccess" not in answer.json()
    ours = site.post([json_span(root, None, "our agent", {}, trace=_trace(83, 1))])
    assert ours.status_code == 200 and "partialSuccess" not in ours.json(), ours.text
    runs = site.rows("SELECT run_id, project FROM tether_runs ORDER BY run_id")
    assert len(runs) == 3 and (root, "default") in [(r.run_id, r.project) for r in runs]


def test_a_span_its_own_parent_and_a_parent_cycle_show_in_their_runs_tree(site: Site) -> None:
    """OTLP takes a span naming itself as parent, or spans naming each other, as the root of
    their run (the first of the cycle): they were stored and counted, and the run's tree and
    its /spans listing were empty (no span without a parent in the run)."""
    url = str(site.store.engine.url.render_as_string(hide_password=False))
    viewer = AccessStore(url).create_key("default", Role.VIEWER)[1]
    itself, b, c = _id(84, 1), _id(84, 2), _id(84, 3)
    assert (
        site.post([json_span(itself, itself, "self", {}, trace=_trace(84, 1))]).status_code == 200
    )
    cycle = [
        json_span(b, c, "cycle b", {}, trace=_trace(84, 2)),
        json_span(c, b, "cycle c", {}, trace=_trace(84, 2)),
    ]
    assert site.post(cycle).status_code == 200
    with httpx.Client(
        base_url=site.urls[0], headers={"Authorization": f"Bearer {viewer}"}, timeout=60
    ) as reader:
        for span_id, names in ((itself, {"self"}), (b, {"cycle b", "cycle c"})):
            (run_id,) = site.rows("SELECT run_id FROM tether_spans WHERE span_id = :s", s=span_id)[
                0
            ]
            top = reader.get(f"/api/v1/runs/{run_id}/spans").json()["spans"]
            assert len(top) == 1, top
            below = reader.get(
                f"/api/v1/runs/{run_id}/spans", params={"parent_id": top[0]["span_id"]}
            ).json()["spans"]
            assert {s["name"] for s in top + below} == names  # (self: not its own child)
            page = reader.get(f"/runs/{run_id}").text
            assert all(name in page for name in names)


# -- chains sent one span a request: rows written grow with the spans ---------------------------


@contextlib.contextmanager
def _rows_written() -> Iterator[list[int]]:
    """Rows inserted, updated or deleted by every engine of this process while inside (the
    server's statements included: it runs in this process)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount > 0:
            count[0] += cursor.rowcount

    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield count
    finally:
        event.remove(Engine, "after_cursor_execute", after)


CHAIN = 1000


def test_a_long_chain_sent_leaf_first_one_span_a_request_writes_rows_linear_in_it(
    site: Site,
) -> None:
    """Each span naming a parent not arrived yet moved its whole pending run into a new one
    named after that parent: a chain of 1,000 spans sent leaf first, one a request, wrote
    about 500,000 rows (2,000 spans: 2 million, 16 s on SQLite). A pending run now keeps
    its id and only what it waits for changes; its spans move once, when the root comes."""
    trace = _trace(90, 1)
    ids = [_id(90, 1, level) for level in range(CHAIN)]
    spans = _chain(trace, ids)
    with _rows_written() as written:
        for span in reversed(spans):
            answer = site.post([span])
            assert answer.status_code == 200 and answer.json() == {}, answer.text
    assert written[0] < 10 * CHAIN, written[0]
    _check_trace(site, trace, ids[0], CHAIN, 100)
    assert site.rows("SELECT run_id FROM tether_runs WHERE status = 'running'") == []


@pytest.mark.parametrize("order", ["root first", "shuffled", "halves"])
def test_a_long_chain_sent_one_span_a_request_in_other_orders_ends_in_its_roots_run(
    site: Site, order: str
) -> None:
    """Root first (each span joins the root's run), shuffled (pending runs meet and merge
    in the middle), and the lower half leaf first, then the upper half root first, then the
    span joining them. The run reads back whole, as a tree of one path."""
    depth = 200
    trace = _trace(91, len(order))
    ids = [_id(91, len(order), level) for level in range(depth)]
    spans = _chain(trace, ids)
    levels = list(range(depth))
    if order == "shuffled":
        random.Random(7).shuffle(levels)
    elif order == "halves":
        middle = depth // 2
        levels = [*range(depth - 1, middle, -1), *range(middle), middle]
    with _rows_written() as written:
        for level in levels:
            answer = site.post([spans[level]])
            assert answer.status_code == 200 and answer.json() == {}, answer.text
    assert written[0] < 20 * depth, written[0]
    _check_trace(site, trace, ids[0], depth, 100)
    assert site.rows("SELECT run_id FROM tether_runs WHERE status = 'running'") == []
    url = str(site.store.engine.url.render_as_string(hide_password=False))
    viewer = AccessStore(url).create_key("default", Role.VIEWER)[1]
    with httpx.Client(
        base_url=site.urls[0], headers={"Authorization": f"Bearer {viewer}"}, timeout=60
    ) as reader:
        path, under = [], None
        while True:
            params = {} if under is None else {"parent_id": under}
            listed = reader.get(f"/api/v1/runs/{ids[0]}/spans", params=params).json()["spans"]
            if not listed:
                break
            assert len(listed) == 1, listed
            under = listed[0]["span_id"]
            path.append(under)
    assert path == ids


def test_a_pending_run_named_after_its_top_span_waits_on_when_that_span_is_sent_again(
    site: Site,
) -> None:
    """A pending run keeps the id it took first (its first missing parent's) when that span
    arrives naming a parent still missing: the span sits in a run of its own id without
    being its root. Its failure is a tool error, not the run's; sent again beside a new
    child, it does not end the run; the root ends it, with every span."""
    trace = _trace(92, 1)
    root, middle, leaf, late = _id(92, 1), _id(92, 2), _id(92, 3), _id(92, 4)
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}
    failed = json_span(middle, root, "lookup", tool, trace=trace, status={"code": 2})
    for spans in (
        [json_span(leaf, middle, "leaf", {}, trace=trace)],
        [failed],
        [failed, json_span(late, middle, "late", {}, trace=trace)],
    ):
        answer = site.post(spans)
        assert answer.status_code == 200 and answer.json() == {}, answer.text
        runs = site.rows("SELECT run_id, status FROM tether_runs")
        assert [tuple(r) for r in runs] == [(middle, "running")]
    events = site.rows("SELECT span_id, name FROM tether_events")
    assert [tuple(e) for e in events] == [(middle, "tether.tool.error")]
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
    assert site.post([json_span(root, None, "root", agent, trace=trace)]).status_code == 200
    runs = site.rows("SELECT run_id, status, tool_calls FROM tether_runs")
    assert [tuple(r) for r in runs] == [(root, "completed", 1)]
    keyed = site.rows(
        "SELECT s.span_id FROM tether_runs r JOIN tether_spans s "
        "ON s.run_seq = r.run_seq AND s.run_id = r.run_id WHERE r.run_id = :r ORDER BY 1",
        r=root,
    )
    assert [k.span_id for k in keyed] == sorted([root, middle, leaf, late])
    assert site.rows("SELECT run_id FROM tether_events") == [(root,)]
    assert site.rows("SELECT span_id FROM tether_otlp_waits") == []


def test_chains_sent_shuffled_a_few_spans_a_request_end_in_their_roots_runs(site: Site) -> None:
    """Chains of 5-29 spans, shuffled, one to three spans a request. Pending runs meeting in
    a request keep the oldest: it may be named after a span of the request whose parent is
    there too (stored in another pending run), and that span was taken for its run's root
    (the run ended, still waiting)."""
    for seed in range(30):
        rng = random.Random(seed)
        depth = rng.randrange(5, 30)
        trace = _trace(93, seed)
        ids = [_id(93, seed, level) for level in range(depth)]
        spans = _chain(trace, ids)
        levels = list(range(depth))
        rng.shuffle(levels)
        sent = 0
        while sent < depth:
            batch = levels[sent : sent + rng.randrange(1, 4)]
            answer = site.post([spans[level] for level in batch])
            assert answer.status_code == 200 and answer.json() == {}, answer.text
            sent += len(batch)
        _check_trace(site, trace, ids[0], depth, 100)
    assert site.rows("SELECT run_id FROM tether_runs WHERE status = 'running'") == []
    assert site.rows("SELECT span_id FROM tether_otlp_waits") == []


@pytest.mark.parametrize("callee_first", [True, False])
def test_two_projects_waiting_for_one_span_each_keep_their_spans(
    site: Site, callee_first: bool
) -> None:
    """A span of project ``other`` naming a span of ``default`` (read off ``traceparent``)
    before it arrived made the one wait row for that span (keyed by it alone) ``other``'s:
    ``default``'s own children of it, sent next, were refused ('its run id is already
    taken') and lost, or ``other``'s were, sent second. Both wait now; the span arriving
    (not a root: its own parent is still missing) ends ``other``'s run, and its root ends
    ``default``'s."""
    trace = _trace(90, 1)
    root, middle, ours, theirs = _id(90, 1), _id(90, 2), _id(90, 3), _id(90, 4)
    ours_span = json_span(ours, middle, "our child", {}, trace=trace)
    with _other_project_client(site) as other:
        sends = [
            lambda: other.post(
                "/v1/traces",
                json=json_request(json_span(theirs, middle, "their server", {}, trace=trace)),
            ),
            lambda: site.post([ours_span]),
        ]
        for send in sends if callee_first else sends[::-1]:
            answer = send()
            assert answer.status_code == 200 and "partialSuccess" not in answer.json()
    waits = site.rows("SELECT span_id FROM tether_otlp_waits")
    assert [w.span_id for w in waits] == [middle, middle]
    answer = site.post([json_span(middle, root, "our middle", {}, trace=trace)])
    assert answer.status_code == 200 and "partialSuccess" not in answer.json(), answer.text
    runs = site.rows("SELECT project, status, run_id FROM tether_runs ORDER BY project")
    assert [(r.project, r.status) for r in runs] == [
        ("default", "running"),
        ("other", "completed"),
    ]
    assert runs[1].run_id == theirs
    answer = site.post([json_span(root, None, "our root", {}, trace=trace)])
    assert answer.status_code == 200 and "partialSuccess" not in answer.json(), answer.text
    runs = site.rows("SELECT project, status, run_id FROM tether_runs ORDER BY project")
    assert [tuple(r) for r in runs] == [
        ("default", "completed", root),
        ("other", "completed", theirs),
    ]
    spans = site.rows("SELECT span_id, run_id FROM tether_spans ORDER BY span_id")
    assert [tuple(s) for s in spans] == [
        (root, root),
        (middle, root),
        (ours, root),
        (theirs, theirs),
    ]
    keyed = site.rows(  # read as the store reads a run's spans: by its run_seq
        "SELECT s.span_id FROM tether_runs r JOIN tether_spans s "
        "ON s.run_seq = r.run_seq AND s.run_id = r.run_id WHERE r.run_id = :r ORDER BY s.span_id",
        r=root,
    )
    assert [k.span_id for k in keyed] == [root, middle, ours]
    assert site.rows("SELECT span_id FROM tether_otlp_waits") == []


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_request_of_more_spans_than_postgres_has_lock_slots_is_stored(site: Site) -> None:
    """PostgreSQL: a request took an advisory lock per trace id and per run id it may create
    (three for an orphan span with random ids); all locks share one table of
    max_locks_per_transaction x (max_connections + max_prepared_transactions) entries, so
    one request of a few thousand such spans failed with 'out of shared memory' (a 503 the
    exporter retries for ever) and filled the table for every other transaction."""
    (slots,) = site.rows(
        "SELECT current_setting('max_locks_per_transaction')::int * "
        "(current_setting('max_connections')::int "
        "+ current_setting('max_prepared_transactions')::int) AS n"
    )
    count = slots.n  # three keys each: well past the table, whatever else backends count
    rng = random.Random(39)
    spans = [
        json_span(
            f"{rng.getrandbits(64) | 1:016x}",
            f"{rng.getrandbits(64) | 1:016x}",
            "orphan",
            {},
            trace=f"{rng.getrandbits(128) | 1:032x}",
        )
        for _ in range(count)
    ]
    answer = site.post(spans)
    assert answer.status_code == 200 and "partialSuccess" not in answer.json(), answer.text
    assert site.rows("SELECT count(*) AS n FROM tether_otlp_waits")[0].n == count


@contextlib.contextmanager
def _statements() -> Iterator[list[int]]:
    """Statements run by every engine of this process while inside (the server's included)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    def before(*args: Any) -> None:
        count[0] += 1

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield count
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def test_pending_runs_under_ids_another_project_holds_take_new_ids_in_a_few_statements(
    site: Site,
) -> None:
    """Project ``other`` holding pending runs named after 300 parents (its spans named them
    first), a request of ``default`` naming the same parents made 300 pending runs of its own
    under new ids, and looked each new id up in a statement of its own."""
    trace = _trace(95, 1)
    parents = [_id(95, i) for i in range(300)]
    with _other_project_client(site) as other:
        theirs = [json_span(_id(96, i), p, "x", {}, trace=trace) for i, p in enumerate(parents)]
        answer = other.post("/v1/traces", json=json_request(*theirs))
        assert answer.status_code == 200 and "partialSuccess" not in answer.json()
    ours = [json_span(_id(97, i), p, "y", {}, trace=trace) for i, p in enumerate(parents)]
    with _statements() as count:
        answer = site.post(ours)
    assert answer.status_code == 200 and "partialSuccess" not in answer.json(), answer.text
    assert count[0] < 60, count[0]
    pending = site.rows(
        "SELECT count(*) AS n FROM tether_runs r JOIN tether_otlp_waits w ON w.run_id = r.run_id "
        "WHERE r.project = 'default' AND r.status = 'running'"
    )
    assert pending[0].n == 300
