"""ASGI middleware of the server: a limit on request bodies, and security headers on every
answer (a Content-Security-Policy without inline scripts, no framing, no sniffing)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""Everything from this server only; no inline script or style, no eval."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes browsers send Origin: null
    (b"cross-origin-opener-policy", b"same-origin"),
)


async def reply_json(send: Send, status: int, message: str) -> None:
    """An error answer sent from middleware, in the API's error shape."""
    body = json.dumps({"error": message, "hint": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class BodyLimit:
    """413 for a body over the limit, said by its ``Content-Length`` or counted as it
    streams in (a chunked body has no length), before the route reads it all; and no body
    read at all before the caller is known.

    Paths under ``unbuffered`` are left to their route: it checks the caller first and then
    the body's ``Content-Length`` and the body itself, within its own limit, and answers in
    its protocol's shape (OTLP's ``Status``). Read here, a large
    body was held before anyone was asked who sent it: connections without a key each
    holding 16 MiB of an OTLP body they never finished held the server's memory.

    On every other path but those of ``open_paths`` (the sign-in form, whose body is the
    credential), a request that sends a body is first put to ``authenticate`` (in a worker
    thread: it reads the store). One it refuses reaches its route with an empty body and
    unread connection: the route's own check refuses it again, with the answer that route
    gives (401 JSON, a redirect to sign in). The routes cannot check first themselves:
    FastAPI reads a body before it solves a route's dependencies, so every form and JSON
    route read up to 1 MiB from anyone."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        by_prefix: Mapping[str, int],
        unbuffered: tuple[str, ...] = (),
        authenticate: Callable[[Request], object] | None = None,
        open_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.default = default
        # Longest prefix first: the most specific limit wins.
        self.by_prefix = sorted(by_prefix.items(), key=lambda item: -len(item[0]))
        self.unbuffered = unbuffered
        self.authenticate = authenticate
        self.open_paths = open_paths

    async def _known(self, scope: Scope) -> bool:
        """Whether ``authenticate`` takes the request's caller (any refusal is the route's
        to answer, the store's failures included)."""
        if self.authenticate is None or scope["path"] in self.open_paths:
            return True
        try:
            await run_in_threadpool(self.authenticate, Request(scope))
        except Exception:
            return False
        return True

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.by_prefix:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(self.unbuffered):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await reply_json(send, 413, f"the request body is larger than {limit:,} bytes")
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if (chunked or bool(declared)) and not await self._known(scope):
            await self.app(scope, _no_body, send)
            return
        # The body is read here, up to the limit, and handed on whole: a route never starts
        # on a body that turns out too large (a chunked body declares no length).
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await reply_json(send, 413, f"the request body is larger than {limit:,} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)


class SecurityHeaders:
    """The headers of ``SECURITY_HEADERS`` on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra: list[Any] = [h for h in SECURITY_HEADERS if h[0] not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class JsonBodies:
    """415 for a request under ``prefix`` that sends a body that is not JSON (routes there
    take JSON only; a form or a file posted to them is a mistake, or a cross-site forgery)."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(self.prefix)
            and scope["method"] in ("POST", "PUT", "PATCH")
        ):
            headers = dict(scope["headers"])
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            length = headers.get(b"content-length", b"0")
            # A chunked body has no length: it is a body all the same.
            sent = length not in (b"0", b"") or b"transfer-encoding" in headers
            if media != b"application/json" and (media or sent):
                await reply_json(
                    send, 415, "the request body must be JSON (Content-Type: application/json)"
                )
                return
        await self.app(scope, receive, send)
