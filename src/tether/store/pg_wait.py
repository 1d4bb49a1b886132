"""A wait for PostgreSQL's answer that ends.

The statement timeout is the server's own: a server that stops answering after the
connection was made (a frozen host, a network partition, a stuck proxy) never sends it, and
libpq waits for its answer for ever. The kernel of a frozen host still acknowledges what is
sent to it, so neither TCP keep-alives nor ``tcp_user_timeout`` end that wait. Here a
connection gives up when nothing has come from the server for a while longer than the
statement timeout (by then the server would have answered, if only with the timeout's
error): the command fails with ``OperationalError`` ("did not answer"), the connection is
closed, and the pool replaces it. A slow answer that keeps arriving is never cut off.
A migration lifts it (``waits_unbounded``): it runs without the statement timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy.engine import URL

from tether.core import Settings

_STATEMENT_TIMEOUT = re.compile(r"statement_timeout\s*=\s*(\S+)")


def answer_deadline_s(parsed: URL) -> float | None:
    """How long a PostgreSQL connection of ``parsed`` waits with nothing from the server
    before it gives up: the statement timeout plus the connect timeout (what a round trip to
    the server may take); None when statements may run for ever (no statement timeout, or one
    the URL sets in a form not read here)."""
    settings = Settings.from_env()
    options = parsed.query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    if "statement_timeout" in options:
        found = _STATEMENT_TIMEOUT.search(options)
        if found is None or not found.group(1).isdigit() or int(found.group(1)) == 0:
            return None
        statement_s = int(found.group(1)) / 1000  # libpq's unit: milliseconds
    else:
        statement_s = settings.db_statement_timeout_s
    if not statement_s:
        return None
    return statement_s + (settings.db_connect_timeout_s or 5.0)


def _within(gen: Generator[Any, Any, Any], seconds: float, no_answer: type[Exception]) -> Any:
    """``gen`` (psycopg's protocol generator: it yields what to wait for and is sent what is
    ready, nothing at each poll interval) failing with ``no_answer`` once the socket was idle
    ``seconds``."""
    deadline = time.monotonic() + seconds
    try:
        state = next(gen)
        while True:
            ready = yield state
            now = time.monotonic()
            if ready:
                deadline = now + seconds
            elif now > deadline:
                gen.close()
                raise no_answer(f"the database server did not answer within {seconds:g} s")
            state = gen.send(ready)
    except StopIteration as done:
        return done.value


@cache
def _connection_class(seconds: float) -> type[Any]:
    import psycopg

    class NoAnswer(psycopg.OperationalError):
        """The server sent nothing for longer than it may take to answer."""

    class AnsweringConnection(psycopg.Connection[Any]):
        """A psycopg connection whose every wait for the server ends (``_within``), unless
        its ``answer_deadline_s`` is None."""

        answer_deadline_s: float | None = seconds

        def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
            deadline = self.answer_deadline_s
            if deadline is None:
                return super().wait(gen, *args, **kwargs)
            try:
                return super().wait(_within(gen, deadline, NoAnswer), *args, **kwargs)
            except NoAnswer:
                # Mid-exchange: the connection cannot be used again. Closed here, it is one
                # the pool drops (SQLAlchemy sees ``closed``), not one it hands out next.
                self.pgconn.finish()
                raise

    return AnsweringConnection


@contextmanager
def waits_unbounded(dbapi_connection: Any) -> Iterator[None]:
    """Statements on ``dbapi_connection`` wait for the server's answer as long as it takes
    (a migration: one ``UPDATE`` of a whole table sends nothing back until it is done, and it
    runs without the statement timeout). Bounded again afterwards."""
    if not hasattr(dbapi_connection, "answer_deadline_s"):
        yield  # a connection made without a deadline
        return
    dbapi_connection.answer_deadline_s = None
    try:
        yield
    finally:
        del dbapi_connection.answer_deadline_s  # the class's deadline again


def connect_with_deadline(seconds: float) -> Callable[..., Any]:
    """A ``do_connect`` listener: the engine's connections give up after ``seconds`` without
    an answer."""
    connection_class = _connection_class(seconds)

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connection_class.connect(*cargs, **cparams)

    return connect
