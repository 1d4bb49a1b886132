"""The store's read side on a real SQLite file and the real PostgreSQL: filters alone and
combined, keyset pages that cover every run once (runs started at the same nanosecond
included), a total count, one run's trace, and "not found" told apart from "store down"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fakes.tcp_proxy import SilentServer, TcpProxy, free_port
from tether.core import InvalidQuery, NotFound, StoreError, new_span_id, new_trace_id
from tether.store import (
    EventRecord,
    RunQuery,
    RunRecord,
    SpanRecord,
    Store,
    StoreReader,
    TraceBatch,
    decode_cursor,
    encode_cursor,
)

T0 = 1_767_225_600_000_000_000


def _at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


RUNS = 40
CYCLE = [
    ("completed", "final_answer"),
    ("completed", "blocked"),
    ("failed", "error"),
    ("paused", "escalated"),
    ("running", None),
]
AGENTS = [("support", "aaaa1111" * 8), ("billing", "bbbb2222" * 8), (None, None)]
MODELS = [("gpt-4.1-mini",), ("small",), ("big", "small")]  # the last: a fallback


def _runs() -> list[tuple[RunRecord, tuple[str, ...]]]:
    """Runs of every kind of value, four of them started at each nanosecond, and the models
    each requested."""
    out = []
    for i in range(RUNS):
        status, outcome = CYCLE[i % len(CYCLE)]
        agent, version = AGENTS[i % len(AGENTS)]
        run = RunRecord(
            new_trace_id(),
            agent,
            version,
            T0 + (i // 4) * 1_000,  # ties: the run id orders them
            run_id=new_span_id(),
            status=status,
            outcome=outcome,
            input=f"input {i} " + "x" * 50,
            output=None if status == "running" else f"output {i}",
            ended_ns=None if status == "running" else T0 + (i // 4) * 1_000 + 500,
            project="acme" if i % 2 else "default",
            kind="agent_run" if agent else "model_request",
            entry_point="runtime" if agent else "model_gateway",
            caller={"project": "acme" if i % 2 else "default", "end_user": f"u{i}"},
        )
        out.append((run, MODELS[i % len(MODELS)]))
    return out


@pytest.fixture
def stored(store_url: str) -> Iterator[tuple[Store, list[tuple[RunRecord, tuple[str, ...]]]]]:
    store = Store(store_url)
    runs = _runs()
    spans = [
        SpanRecord(
            run.trace_id,
            new_span_id(),
            run.run_id,
            f"chat {model}",
            "model",
            run.started_ns + 1 + n,
            run.started_ns + 2 + n,
            attributes={"gen_ai.request.model": model},
            run_id=run.run_id,
        )
        for run, models in runs
        for n, model in enumerate(models)
    ]
    store.write(TraceBatch(runs_started=[r for r, _ in runs], spans=spans))
    yield store, runs
    store.close()


def _newest_first(
    runs: list[tuple[RunRecord, tuple[str, ...]]],
    keep: Callable[[RunRecord, tuple[str, ...]], bool] = lambda r, m: True,
) -> list[str]:
    chosen = [r for r, m in runs if keep(r, m)]
    return [r.run_id for r in sorted(chosen, key=lambda r: (r.started_ns, r.run_id), reverse=True)]


FILTERS: list[tuple[dict[str, Any], Callable[[RunRecord, tuple[str, ...]], bool]]] = [
    ({"status": "failed"}, lambda r, m: r.status == "failed"),
    ({"status": ("paused", "running")}, lambda r, m: r.status in ("paused", "running")),
    ({"outcome": "blocked"}, lambda r, m: r.outcome == "blocked"),
    ({"outcome": ("error", "escalated")}, lambda r, m: r.outcome in ("error", "escalated")),
    ({"agent": "support"}, lambda r, m: r.agent_name == "support"),
    ({"agent": ("support", "billing")}, lambda r, m: r.agent_name is not None),
    ({"version": "bbbb2222"}, lambda r, m: r.agent_version == "bbbb2222" * 8),
    ({"version": "b"}, lambda r, m: (r.agent_version or "").startswith("b")),
    ({"model": "small"}, lambda r, m: "small" in m),
    ({"model": "big"}, lambda r, m: "big" in m),
    ({"model": ("gpt-4.1-mini", "big")}, lambda r, m: bool({"gpt-4.1-mini", "big"} & set(m))),
    ({"project": "acme"}, lambda r, m: r.project == "acme"),
    ({"kind": "model_request"}, lambda r, m: r.kind == "model_request"),
    ({"entry_point": "model_gateway"}, lambda r, m: r.entry_point == "model_gateway"),
    ({"since": _at(T0 + 5_000)}, lambda r, m: r.started_ns >= T0 + 5_000),
    ({"until": _at(T0 + 5_000)}, lambda r, m: r.started_ns < T0 + 5_000),
    # combined: every filter must hold
    (
        {"status": "completed", "project": "acme"},
        lambda r, m: r.status == "completed" and r.project == "acme",
    ),
    (
        {"agent": "support", "model": "small", "project": "default"},
        lambda r, m: r.agent_name == "support" and "small" in m and r.project == "default",
    ),
    (
        {"since": _at(T0 + 2_000), "until": _at(T0 + 7_000), "outcome": "final_answer"},
        lambda r, m: T0 + 2_000 <= r.started_ns < T0 + 7_000 and r.outcome == "final_answer",
    ),
    ({"agent": "support", "kind": "model_request"}, lambda r, m: False),
    ({"agent": "nobody"}, lambda r, m: False),
    # Times beyond the store's 64-bit columns are their ends, not an error.
    (
        {"since": datetime(1, 1, 1, tzinfo=UTC), "until": datetime(9999, 12, 31, tzinfo=UTC)},
        lambda r, m: True,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("filters", "keep"), FILTERS, ids=[str(f[0]) for f in FILTERS])
def test_each_filter_alone_and_combined(
    stored: tuple[Store, list[Any]],
    filters: dict[str, Any],
    keep: Callable[[RunRecord, tuple[str, ...]], bool],
) -> None:
    store, runs = stored
    expected = _newest_first(runs, keep)
    listing = store.find_runs(RunQuery(limit=100, **filters))
    assert [r.run_id for r in listing.runs] == expected
    assert listing.total == len(expected) and listing.next_cursor is None
    if len(expected) > 2:  # the same runs, a page at a time, with the count on every page
        first = store.find_runs(RunQuery(limit=2, **filters))
        assert first.total == len(expected) and first.next_cursor is not None
        rest = store.find_runs(RunQuery(limit=100, cursor=first.next_cursor, **filters))
        assert [r.run_id for r in [*first.runs, *rest.runs]] == expected


@pytest.mark.parametrize("size", [1, 3, 4, 7, 39, 40, 41])
def test_pages_cover_every_run_once_even_when_runs_start_together(
    stored: tuple[Store, list[Any]], size: int
) -> None:
    store, runs = stored
    seen: list[str] = []
    cursor = None
    for _ in range(RUNS + 1):
        listing = store.find_runs(RunQuery(limit=size, cursor=cursor))
        assert listing.total == RUNS
        assert len(listing.runs) == min(size, RUNS - len(seen))
        seen += [r.run_id for r in listing.runs]
        cursor = listing.next_cursor
        if cursor is None:
            break
    assert seen == _newest_first(runs)  # each once, newest first, ties by run id


def test_streamed_pages_read_the_same_runs(stored: tuple[Store, list[Any]]) -> None:
    store, _runs = stored
    query = RunQuery(limit=9, project="acme")
    found = store.find_runs(query)
    streamed = store.stream_runs(query, chunk=2)
    assert (streamed.total, streamed.next_cursor) == (found.total, found.next_cursor)
    assert list(streamed.runs) == found.runs
    assert found.runs[0].caller is not None and found.runs[0].caller["project"] == "acme"


def test_a_run_reads_back_with_every_new_field(stored: tuple[Store, list[Any]]) -> None:
    store, runs = stored
    for run, _models in runs[:6]:
        assert store.get_run(run.run_id) == run


def test_text_is_read_up_to_a_length_when_asked(stored: tuple[Store, list[Any]]) -> None:
    store, _runs = stored
    [run] = store.find_runs(RunQuery(limit=1), text_chars=5).runs
    assert len(run.input) == 5


def test_a_malformed_cursor_is_an_invalid_query(stored: tuple[Store, list[Any]]) -> None:
    store, _runs = stored
    good = encode_cursor(T0, "a" * 16)
    assert decode_cursor(good) == (T0, "a" * 16)
    # A forged run id holding a NUL read as the store being down on PostgreSQL (which refuses
    # a NUL), and one holding a lone surrogate crashed with a UnicodeEncodeError.
    forged = (encode_cursor(T0, "a\x00b"), encode_cursor(T0, "a\ud800b"))
    for bad in ("", "not a cursor", good[:-3], good + "!", "W10", "x" * 5000, "\x1b[2J", *forged):
        with pytest.raises(InvalidQuery, match="not a page cursor"):
            store.find_runs(RunQuery(cursor=bad))
    # A cursor past the last run is no error: the page is empty.
    past = store.find_runs(RunQuery(cursor=encode_cursor(0, "0")))
    assert past.runs == [] and past.total == RUNS and past.next_cursor is None


def test_filter_values_are_matched_as_the_store_wrote_them(store_url: str) -> None:
    """A NUL or a lone surrogate in a filter (PostgreSQL refuses both in a query) matches what
    the store wrote for it; '%' and '_' are characters, not patterns."""
    store = Store(store_url)
    try:
        odd = RunRecord(
            new_trace_id(), "a\x00b\ud800", "50%_off", T0, run_id=new_span_id(), project="p\x00"
        )
        plain = RunRecord(new_trace_id(), "ab", "50xyoff", T0 + 1, run_id=new_span_id())
        store.write(TraceBatch(runs_started=[odd, plain]))
        assert [r.run_id for r in store.find_runs(RunQuery(agent="a\x00b\ud800")).runs] == [
            odd.run_id
        ]
        assert [r.run_id for r in store.find_runs(RunQuery(project="p\x00")).runs] == [odd.run_id]
        assert [r.run_id for r in store.find_runs(RunQuery(version="50%_")).runs] == [odd.run_id]
        assert store.find_runs(RunQuery(model="\x00\udfff")).total == 0
        # A tag holding a lone surrogate (a crash: UnicodeEncodeError) matches as written.
        tagged = RunRecord(
            new_trace_id(), "t", "v", T0 + 2, run_id=new_span_id(), attributes={"k": "v\udc80"}
        )
        store.write(TraceBatch(runs_started=[tagged]))
        assert [r.run_id for r in store.find_runs(RunQuery(tag="k=v\udc80")).runs] == [
            tagged.run_id
        ]
    finally:
        store.close()


def test_one_runs_trace_and_what_is_not_there(store_url: str) -> None:
    store = Store(store_url)
    try:
        trace_id, run_id = new_trace_id(), new_span_id()
        run = RunRecord(trace_id, "support", "v1", T0, run_id=run_id)
        root = SpanRecord(
            trace_id, run_id, None, "invoke_agent", "agent", T0 + 1, T0 + 9, run_id=run_id
        )
        model = SpanRecord(
            trace_id, new_span_id(), run_id, "chat", "model", T0 + 2, T0 + 3, run_id=run_id
        )
        event = EventRecord(
            trace_id, model.span_id, "tether.control.decision", T0 + 2, {"a": 1}, run_id=run_id
        )
        store.write(TraceBatch(runs_started=[run], spans=[model, root], events=[event]))
        trace = store.get_trace(run_id[:8])
        assert (trace.run, trace.spans, trace.events) == (run, [root, model], [event])
        assert store.get_trace(trace_id).run == run

        with pytest.raises(NotFound, match="no run or trace"):
            store.get_trace("0123456789abcdef")
        with pytest.raises(InvalidQuery, match="too short"):
            store.get_run("abc")
        # Not the store being down (PostgreSQL refuses a NUL), nor a UnicodeEncodeError.
        for odd in ("abcdef\x00gh", "abcdef\ud800gh"):
            with pytest.raises(NotFound, match="no run or trace"):
                store.get_run(odd)
        other = RunRecord(trace_id, "support", "v1", T0 + 5, run_id=new_span_id())
        store.write(TraceBatch(runs_started=[other]))
        with pytest.raises(InvalidQuery, match="several runs") as shared:
            store.get_run(trace_id)
        assert not isinstance(shared.value, NotFound)
    finally:
        store.close()  # fmt: skip


# -- "not found" is not "store down" -----------------------------------------------------------


def _store_failed(call: Callable[[], object]) -> StoreError:
    """The error of a read on a store that failed: a StoreError that is neither NotFound
    nor InvalidQuery (the store, not the request, is at fault)."""
    with pytest.raises(StoreError) as failed:
        call()
    assert type(failed.value) is StoreError, type(failed.value)
    return failed.value


def test_a_closed_port_is_a_store_error_not_not_found() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    reader = StoreReader(url, connect=False)  # nothing is reached yet
    try:
        error = _store_failed(lambda: reader.get_run("0123456789abcdef"))
        assert "cannot open the trace store" in error.message
        _store_failed(lambda: reader.find_runs(RunQuery()))
        _store_failed(lambda: reader.get_trace("0123456789abcdef"))
    finally:
        reader.close()


def test_a_store_that_never_answers_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "1")
    server = SilentServer()
    reader = StoreReader(
        f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/test", connect=False
    )
    try:
        error = _store_failed(lambda: reader.get_run("0123456789abcdef"))
        assert "timeout" in error.message
    finally:
        reader.close()
        server.close()  # fmt: skip


def test_a_store_that_goes_down_is_a_store_error_and_found_again(pg_url: str) -> None:
    Store(pg_url).close()  # migrated
    port = free_port()
    proxy = TcpProxy(port, ("127.0.0.1", 5432))
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    reader = StoreReader(url)
    try:
        with pytest.raises(NotFound):
            reader.get_run("0123456789abcdef")  # up: not there
        proxy.close()
        _store_failed(lambda: reader.get_run("0123456789abcdef"))  # down: not "not found"
        _store_failed(lambda: reader.find_runs(RunQuery()))
        proxy = TcpProxy(port, ("127.0.0.1", 5432))
        assert reader.find_runs(RunQuery()).total == 0  # back: read again
    finally:
        reader.close()
        proxy.close()


def test_a_sqlite_store_that_is_a_folder_is_a_store_error(tmp_path: Any) -> None:
    (tmp_path / "folder.db").mkdir()
    reader = StoreReader(f"sqlite:///{tmp_path / 'folder.db'}", connect=False)
    try:
        _store_failed(lambda: reader.get_run("0123456789abcdef"))
    finally:
        reader.close()


def test_queries_are_checked_when_made() -> None:
    from pydantic import ValidationError

    for bad in (
        {"status": "complete"},
        {"outcome": "won"},
        {"limit": 0},
        {"limit": 10_001},
        {"agent": [f"a{i}" for i in range(101)]},  # each value is a parameter: capped
    ):
        with pytest.raises(ValidationError):
            RunQuery(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RunQuery(colour="red")  # type: ignore[call-arg]
    assert len(RunQuery(agent=[f"a{i}" for i in range(100)]).agent) == 100
    naive = RunQuery(since=datetime(2026, 1, 1))
    assert naive.since_ns == T0


def test_record_defaults_are_the_core_values() -> None:
    """``records`` spells them out (it loads without pydantic): they must stay the same."""
    from tether.core import DEFAULT_PROJECT, EntryPoint, RunKind
    from tether.store import tables

    run = RunRecord("t", "a", "v", 1, run_id="r")
    assert (run.project, run.kind, run.entry_point) == (
        DEFAULT_PROJECT,
        RunKind.AGENT_RUN,
        EntryPoint.RUNTIME,
    )
    defaults = {c.name: c.server_default.arg for c in tables.runs.c if c.server_default}  # type: ignore[attr-defined]
    assert defaults == {"project": "default", "kind": "agent_run", "entry_point": "runtime"}
