"""Deadlines on reading a request, against clients that hold connections by being slow
(slowloris).

uvicorn closes a kept-alive connection that stays idle between requests, but not one that is
slow inside a request: a client that connects and sends nothing, sends its headers a byte at a
time, or stops part way through its body holds the connection (and what it sent) for as long
as it likes, and a few thousand of them hold every file descriptor the server has.

- ``deadline_protocol``: a request's headers must be complete within the timeout of its first
  byte (of the connection, for its first request); past it the connection is closed, with
  nothing answered (the client is not reading). They must also be small
  (``MAX_HEADER_BYTES``, ``MAX_HEADER_FIELDS``; 431 past either): uvicorn keeps every header
  and the URL as they come, and one client sending small headers as fast as it could made
  the server hold 700 MB within 5 seconds, before any deadline or key was looked at. And a
  client must read its answers: one whose unread answer fills the socket and stays unread for
  the timeout is cut off.
- ``BodyReadTimeout``: while a route waits for the next part of a request's body, the client
  has the timeout to send it, and the body as a whole must come at ``MIN_BODY_RATE`` after a
  first timeout's grace; past either the answer is 408 and the connection is closed (a byte
  sent every few seconds held the sign-in form's 16 KiB, read before any key is known, for
  days). Only waits for the client count: a route busy elsewhere (a slow store) before it
  reads the body is not timed, nor is a client waiting for ``100 Continue``. An answer sent
  before the body was read to its end (a 401 before the body of a caller without a key)
  closes the connection: kept alive, the rest of the body was read and dropped for as long
  as the client sent it, past every deadline.

A proxy in front (nginx, a cloud load balancer) can do more (rates, connections per address);
these keep a server reachable on its own from being held by a handful of sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tether.server.middleware import reply_json

__all__ = [
    "DEFAULT_READ_TIMEOUT_S",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_FIELDS",
    "MIN_BODY_RATE",
    "BodyReadTimeout",
    "BodyTimedOut",
    "deadline_protocol",
]

DEFAULT_READ_TIMEOUT_S = 30.0
"""How long a client has for a request's headers, and for each part of its body."""

MAX_HEADER_BYTES = 64 << 10
"""Most bytes of a request line and headers, counted as they arrive (what arrives with the
first byte of a request, at most one read of 256 KiB, is not counted: a bound, not an exact
figure). Browsers send a few KiB, cookies included; nginx takes 32 KiB."""

MAX_HEADER_FIELDS = 100
"""Most header fields of one request (Apache's ``LimitRequestFields``): each is a Python tuple
of two ``bytes`` in uvicorn, about 150 bytes of memory for 4 on the wire."""

MIN_BODY_RATE = 1024
"""Bytes a second a request's body must average, after a first read timeout's grace."""

log = logging.getLogger("tether.server")


def _address(client: Any) -> str:
    """``host:port`` of a client (uvicorn's pair), for a log line."""
    return f"{client[0]}:{client[1]}" if client else "a client"


class _ClientLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn's logger for one connection: each line names the client's address."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"{msg} (client {extra['client']})", kwargs

    @property
    def level(self) -> int:  # uvicorn reads its logger's level (trace logging)
        level: int = self.logger.level
        return level


class _HeadersTooLarge(Exception):
    """Raised in a parser callback to stop the parser (uvicorn then answers its parse error,
    which ``send_400_response`` turns into 431)."""


class _HeaderDeadline(HttpToolsProtocol):
    timeout_s = DEFAULT_READ_TIMEOUT_S
    _timer: asyncio.TimerHandle | None = None
    _in_headers = False
    _begun_here = False
    _header_bytes = 0
    _header_fields = 0
    _too_large = False

    def data_received(self, data: bytes) -> None:
        # Counted only when the headers began in an earlier read: what precedes them in the
        # read they begin in (the end of a pipelined body) is not theirs.
        self._begun_here = False
        super().data_received(data)
        if self._in_headers and not self._begun_here and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(
                    f"the request line and headers are larger than {MAX_HEADER_BYTES:,} bytes"
                )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > MAX_HEADER_FIELDS:
            self._too_large = True
            raise _HeadersTooLarge
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse(f"the request has more than {MAX_HEADER_FIELDS} header fields")
        else:
            super().send_400_response(msg)

    def _refuse(self, reason: str) -> None:
        """431, in the API's error shape, and the connection closed."""
        self._disarm()
        log.warning("closed the connection of %s: %s", _address(self.client), reason)
        body = json.dumps({"error": reason, "hint": None}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            client = _address(self.client)
            log.warning(
                "closed the connection of %s: no complete request headers in %gs",
                client,
                self.timeout_s,
            )
            self.transport.close()

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self.timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # uvicorn's own warnings ("Invalid HTTP request received.", an unsupported upgrade)
        # named no client: a scan or a broken client could not be told from a proxy's fault.
        # Its address only: the request's headers (keys, cookies) are never logged.
        self.logger = _ClientLog(self.logger, {"client": _address(self.client)})  # type: ignore[assignment]
        self._arm()  # the first request's headers

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = self._begun_here = True
        self._header_bytes = self._header_fields = 0
        self._arm()  # a later request's, from its first byte on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    # A client that reads nothing of the answers it asked for: the transport holds what the
    # socket does not take and asks uvicorn to pause (``pause_writing``), and the route waits
    # for it to drain, without end. Unread answers (a few pipelined requests for a static
    # file, no key needed) held each connection, its task and its open file past every
    # deadline; now one paused longer than the timeout is closed.
    _write_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.timeout_s, self._not_reading)

    def resume_writing(self) -> None:
        self._stop_write_timer()
        super().resume_writing()

    def _stop_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _not_reading(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            log.warning(
                "closed the connection of %s: it read none of its answer for %gs",
                _address(self.client),
                self.timeout_s,
            )
            self.transport.abort()  # close() would wait for the buffer to be written

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_write_timer()
        super().connection_lost(exc)


def deadline_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request headers are not
    complete ``timeout_s`` after they began."""
    return type("HeaderDeadline", (_HeaderDeadline,), {"timeout_s": float(timeout_s)})


class BodyTimedOut(Exception):
    """The client paused a body past the read timeout. A route may answer it itself (OTLP
    answers in its own error format); the answer must close the connection."""


class BodyReadTimeout:
    """408 when the client takes longer than ``timeout_s`` to send the next part of a body the
    route is waiting for, or sends the body slower than ``MIN_BODY_RATE`` on average (after
    ``timeout_s`` of grace); ``Connection: close`` on an answer that starts before the body
    was read to its end."""

    def __init__(self, app: ASGIApp, *, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = not _has_body(scope)
        started = False
        first_wait: float | None = None
        received = 0
        loop = asyncio.get_running_loop()

        async def timed_receive() -> Message:
            nonlocal body_done, first_wait, received
            if body_done:  # after the body: a wait for the disconnect, as long as it takes
                return await receive()
            now = loop.time()
            if first_wait is None:
                first_wait = now
            # The whole body is due by the grace plus its bytes at the least rate.
            due = first_wait + self.timeout_s + received / MIN_BODY_RATE
            wait = min(self.timeout_s, due - now)
            try:
                if wait <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                reason = (
                    f"the request body stopped arriving for {self.timeout_s:g}s"
                    if wait == self.timeout_s
                    else f"the request body arrived slower than {MIN_BODY_RATE:,} bytes a second"
                )
                raise BodyTimedOut(reason) from None
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:  # the rest of the body is not read: the connection ends
                    headers = list(message.get("headers", []))
                    if not any(name.lower() == b"connection" for name, _ in headers):
                        message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, timed_receive, watched_send)
        except BodyTimedOut as exc:
            log.warning(
                "closed the connection of %s: %s",
                _address(scope.get("client")),
                exc,
            )
            if not started:  # 408, and the connection closed (the answer says so)
                await reply_json(send, 408, str(exc))


def _has_body(scope: Scope) -> bool:
    """Whether the request declares a body (a ``Content-Length`` other than 0, or a
    ``Transfer-Encoding``)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0 ")):
            return True
    return False
