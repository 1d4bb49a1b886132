"""Shared fixtures: real SQLite files, the real PostgreSQL and Redis on 127.0.0.1 (required
when CI=true)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAIServer
from tether.providers.openai_compat import OpenAIChatModel

PG_ADMIN_URL = os.environ.get(
    "TETHER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg not installed: {exc}"
    try:
        conninfo = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    problem = _pg_available()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"tether_test_{uuid.uuid4().hex[:12]}"
    conninfo = pg_admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_available() -> str | None:
    """None if Redis answers, else why not."""
    try:
        import redis
    except ImportError as exc:
        return f"redis not installed: {exc}"
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as exc:
        return f"Redis at {REDIS_URL} unreachable: {exc}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    problem = _redis_available()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires Redis: {problem}")
        pytest.skip(problem)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are deleted afterwards."""
    import redis

    prefix = f"tether-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a real SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tether.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the developer's own ./.tether store from a test."""
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TETHER_DATABASE_URL", raising=False)
    monkeypatch.delenv("TETHER_REDIS_URL", raising=False)
    monkeypatch.delenv("TETHER_REDIS_PREFIX", raising=False)


@pytest.fixture(autouse=True)
def _close_trace_writers() -> Iterator[None]:
    """Each test's process-wide writers are flushed and closed when it ends."""
    yield
    from tether.trace import close_writers

    close_writers()


# --------------------------------------------------------------------------- OpenAI-compatible


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A real OpenAI-compatible server on 127.0.0.1 (``tests/fakes/openai_server``)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
async def make_model(
    openai_server: FakeOpenAIServer,
) -> AsyncIterator[Callable[..., OpenAIChatModel]]:
    """Models pointed at the fake server, with tiny backoff; closed after the test."""
    made: list[OpenAIChatModel] = []

    def make(**kwargs: Any) -> OpenAIChatModel:
        kwargs.setdefault("base_url", openai_server.base_url)
        kwargs.setdefault("backoff_base_s", 0.01)
        kwargs.setdefault("backoff_max_s", 0.05)
        kwargs.setdefault("timeout_s", 5.0)
        model = OpenAIChatModel(kwargs.pop("name", "gpt-test"), **kwargs)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff delays the OpenAI-compatible provider asked for; the waits themselves are
    skipped."""
    from tether.providers import openai_compat

    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(openai_compat, "_sleep", fake_sleep)
    return delays
