"""Deadlines on reading a request, against clients that hold connections by being slow
(slowloris).

uvicorn closes a kept-alive connection that stays idle between requests, but not one that is
slow inside a request: a client that connects and sends nothing, sends its headers a byte at a
time, or stops part way through its body holds the connection (and what it sent) for as long
as it likes, and a few thousand of them hold every file descriptor the server has.

- ``deadline_protocol``: a request's headers must be complete within the timeout of its first
  byte (of the connection, for its first request); past it the connection is closed, with
  nothing answered (the client is not reading).
- ``BodyReadTimeout``: while a route waits for the next part of a request's body, the client
  has the timeout to send it; past it the answer is 408 and the connection is closed. Only
  waits for the client count: a route busy elsewhere (a slow store) before it reads the body
  is not timed, nor is a client waiting for ``100 Continue``.

A proxy in front (nginx, a cloud load balancer) can do more (rates, connections per address);
these keep a server reachable on its own from being held by a handful of sockets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tether.server.middleware import reply_json

__all__ = ["DEFAULT_READ_TIMEOUT_S", "BodyReadTimeout", "BodyTimedOut", "deadline_protocol"]

DEFAULT_READ_TIMEOUT_S = 30.0
"""How long a client has for a request's headers, and for each part of its body."""

log = logging.getLogger("tether.server")


def _address(client: Any) -> str:
    """``host:port`` of a client (uvicorn's pair), for a log line."""
    return f"{client[0]}:{client[1]}" if client else "a client"


class _HeaderDeadline(HttpToolsProtocol):
    timeout_s = DEFAULT_READ_TIMEOUT_S
    _timer: asyncio.TimerHandle | None = None

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
        self._arm()  # the first request's headers

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a later request's, from its first byte on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
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
    route is waiting for."""

    def __init__(self, app: ASGIApp, *, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body: a wait for the disconnect, as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise BodyTimedOut(
                    f"the request body stopped arriving for {self.timeout_s:g}s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, watched_send)
        except BodyTimedOut as exc:
            log.warning(
                "closed the connection of %s: the request body paused over %gs",
                _address(scope.get("client")),
                self.timeout_s,
            )
            if not started:  # 408, and the connection closed (the answer says so)
                await reply_json(send, 408, str(exc))
