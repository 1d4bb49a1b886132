"""The server over a PostgreSQL that stops answering after it was reached (a frozen host, a
network partition, a stuck proxy): each request is a 503 saying so, not a request that waits
for ever; and the server answers again once the database does (real PostgreSQL behind a TCP
forwarder that can be frozen)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fakes.server import serving
from fakes.tcp_proxy import TcpProxy
from tether.core import StoreError
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.store import Store


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    forwarder = TcpProxy(0, ("127.0.0.1", 5432))
    try:
        yield forwarder
    finally:
        forwarder.thaw()
        forwarder.close()


def test_a_database_that_stops_answering_is_a_503_not_a_hang(
    pg_url: str, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement timeout is the database's own: a server that answers nothing never sends
    it, and a request on a pooled connection waited for ever (the Ctrl-C of ``tether serve``
    too, for the request to end). The wait for an answer now ends a little after the statement
    timeout, and the connection is dropped from the pool."""
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "0.5")
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "1")
    Store(pg_url).close()
    _, key = AccessStore(pg_url).create_key("default", Role.VIEWER)
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert proxied != pg_url
    with serving(create_app(ServerConfig(database_url=proxied))) as base:
        headers = {"Authorization": f"Bearer {key}"}
        # A client deadline far past the server's: a hang fails the test, a 503 passes it.
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            assert c.get("/api/v1/runs").status_code == 200  # pooled connections now
            proxy.freeze()
            for _ in range(3):
                stuck = c.get("/api/v1/runs")
                assert stuck.status_code == 503, stuck.text
                assert "did not answer" in stuck.json()["error"] or "timeout" in stuck.text
            proxy.thaw()
            deadline = time.monotonic() + 30
            while (back := c.get("/api/v1/runs")).status_code != 200:
                assert time.monotonic() < deadline, back.text
                time.sleep(0.05)


def test_a_command_in_flight_when_the_database_stops_answering_fails_and_is_not_reused(
    pg_url: str, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command already sent when the server stops answering fails with the reason, and its
    connection is not handed out again: the next command, once the server answers, works."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from tether.store.db import create_store_engine

    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "0.5")
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "1")
    engine = create_store_engine(pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
            proxy.freeze()
            # In a thread: without the wait's end the test fails (after 30 s), it does not hang.
            pool = ThreadPoolExecutor(1)
            sent = pool.submit(conn.execute, text("SELECT 2"))
            try:
                error = sent.exception(timeout=30)
            except TimeoutError:
                proxy.close()  # its sockets closed, the stuck command ends: the test fails
                raise
            finally:
                pool.shutdown(wait=False)
            assert isinstance(error, OperationalError)
            assert "did not answer within 1.5 s" in str(error)
        proxy.thaw()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 3")).scalar() == 3
        # A statement the server works on too long is ended by the server's own timeout
        # (its error, not this one).
        with engine.connect() as conn, pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(1)"))
    finally:
        engine.dispose()


def test_a_request_waiting_on_the_database_does_not_stop_the_others(
    pg_url: str, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Prometheus scrape and the UI's forms (sign in, switch project, make or revoke a key)
    are async routes that called the store in the event loop: while the store did not answer,
    the whole server answered nothing, not even a page that needs no store. Their store work
    runs in worker threads now: a request that needs no store is answered meanwhile."""
    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "2")
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "1")
    Store(pg_url).close()
    access = AccessStore(pg_url)
    _, viewer = access.create_key("default", Role.VIEWER)
    _, admin = access.create_key("default", Role.ADMIN)
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    with serving(create_app(ServerConfig(database_url=proxied))) as base:
        with httpx.Client(base_url=base, timeout=60) as warm:
            signed_in = warm.post("/login", data={"key": admin})
            assert signed_in.status_code == 303
            assert warm.get("/metrics", headers={"Authorization": f"Bearer {viewer}"}).is_success
            session = dict(warm.cookies)
        waiting_on_store = {
            "scrape": lambda c: c.get("/metrics", headers={"Authorization": f"Bearer {viewer}"}),
            "sign in": lambda c: c.post("/login", data={"key": viewer}),
            "switch": lambda c: c.post("/switch-project", data={"project": "x"}),
            "new key": lambda c: c.post("/keys", data={"role": "viewer"}),
        }
        for what, call in waiting_on_store.items():
            proxy.freeze()
            signed_in_browser = httpx.Client(base_url=base, timeout=60, cookies=session)
            with signed_in_browser as c, ThreadPoolExecutor(1) as pool:
                stuck = pool.submit(call, c)
                deadline = time.monotonic() + 30
                while not proxy.waiting():  # the request reached the store
                    assert time.monotonic() < deadline and not stuck.done(), what
                    time.sleep(0.01)
                free = httpx.get(f"{base}/favicon.ico", timeout=60)
                assert free.status_code == 204
                assert not stuck.done(), f"{what}: the server answered nothing meanwhile"
                proxy.thaw()
                assert stuck.result().status_code < 600


def test_a_caller_not_known_yet_is_not_told_where_the_database_is(
    pg_url: str, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database cannot be reached, checking a key or a session cookie fails: the
    answer said why with the store's URL and the driver's words (its host, port, user and
    schema: 'reading keys from postgresql://postgres@127.0.0.1:5433/...?options=-csearch_path
    ... failed: connection to server at ... failed') to anyone who sent a made-up key. The
    caller is told the store is unavailable (503, worth retrying); the log keeps the reason."""
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "1")
    Store(pg_url).close()
    schema = pg_url.rpartition("search_path%3D")[2]
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    made_up = {"Authorization": f"Bearer tth_{'0' * 16}_madeup"}
    with serving(create_app(ServerConfig(database_url=proxied))) as base:
        port = base.rpartition(":")[2]
        proxy.close()
        with httpx.Client(base_url=base, timeout=60) as c:
            answers = {
                "api": c.get("/api/v1/runs", headers=made_up),
                "otlp": c.post(
                    "/v1/traces",
                    headers={**made_up, "content-type": "application/json"},
                    content=b"{}",
                ),
                "page": c.get("/runs", headers={"cookie": f"tether_session_{port}=madeup"}),
                "sign in": c.post("/login", data={"key": made_up["Authorization"][7:]}),
            }
    for what, answer in answers.items():
        assert answer.status_code == 503, (what, answer.text)
        assert "store is unavailable" in answer.text, what
        for where in (str(proxy.port), schema, "postgres", "search_path"):
            assert where not in answer.text, (what, where, answer.text)
    logged = [r.getMessage() for r in caplog.records if str(proxy.port) in r.getMessage()]
    assert logged, "the reason is in the server's log"


def test_a_transaction_cut_off_by_a_partition_does_not_hold_its_trace_for_hours(
    pg_url: str, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose link to PostgreSQL froze in the middle of an OTLP request's transaction
    gives up on that connection; the database does not know: its session sits idle in the
    transaction, holding the trace's advisory lock, until TCP keep-alives end it (two hours by
    default). Every request sent again for that trace (by this server or a replica) waited on
    the lock and failed with the statement timeout. Tether's sessions end such a transaction
    after twice the statement timeout (``idle_in_transaction_session_timeout``)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from fakes.otlp import json_request, json_span
    from tether.server.otlp import decode
    from tether.server.otlp_store import _lock_traces, ingest

    monkeypatch.setenv("TETHER_DB_STATEMENT_TIMEOUT_S", "1")
    monkeypatch.setenv("TETHER_DB_CONNECT_TIMEOUT_S", "1")
    store = Store(pg_url)
    proxied = Store(pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
    trace = "5b8efff798038103d269b633813fc60c"
    body = json_request(json_span("00f067aa0ba902b7", None, "agent", {}, trace=trace))
    request: ExportTraceServiceRequest = decode("application/json", "", json.dumps(body).encode())
    try:
        with pytest.raises(StoreError), proxied.transaction() as conn:
            _lock_traces(conn, {trace}, set())  # the lock the request takes first
            proxy.freeze()  # the link stops here: the session sits in its transaction
            conn.exec_driver_sql("SELECT 1")  # fails: "did not answer"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert ingest(store, "default", request).accepted == 1
                break
            except StoreError as exc:  # the lock is still held
                assert time.monotonic() < deadline, f"the trace stays locked: {exc.message}"
    finally:
        proxy.thaw()
        proxied.close()
        store.close()
