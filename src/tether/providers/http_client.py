"""An ``httpx.AsyncClient`` per event loop, shared by the HTTP provider and HTTP tools; how
a URL with credentials in it is shown; how long a server asks a client to wait; and reading
a response body or its lines with a cap on its size."""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import io
import re
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from datetime import UTC
from functools import cache
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

import certifi
import httpx

from tether.core.text import SECRET_PARAM, hide_secret_params

REDACTED: Final = "***"


def display_url(url: str) -> str:
    """``url`` as it may be shown or recorded: a password in it and the values of query
    parameters that look secret (``api_key``, ``token``, ``sig``, ...) become ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed port, say: still hide what looks like a password
        return hide_secret_params(re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url), REDACTED)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{REDACTED}@{hostport}"
    query = hide_secret_params(parts.query, REDACTED)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> list[str]:
    """The secret values ``display_url`` hides in ``url`` (to scrub them from other text)."""
    secrets: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets += {parts.password, unquote(parts.password)}
    except ValueError:
        parts = None
    query = parts.query if parts is not None else url.partition("?")[2]
    for match in SECRET_PARAM.finditer(query):
        value = match.group(0)[len(match.group(1)) :]
        if value:
            secrets += {value, unquote(value)}
    return secrets


@cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one costs ~20 ms, sharing it is free."""
    return ssl.create_default_context(cafile=certifi.where())


class LoopBoundClient:
    """One client per event loop, created lazily.

    An ``AsyncClient``'s pooled connections belong to the loop they were opened on; reusing
    them from another loop (``run_sync`` twice, say, or from several threads at once) fails, so
    each loop gets its own client, and closing affects only the calling loop's client.
    """

    def __init__(self, factory: Callable[[], httpx.AsyncClient]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                client = self._clients[loop] = self._factory()
            return client

    async def aclose(self) -> None:
        """Close the running loop's client (a later ``get`` opens a new one)."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - time.time()


class ResponseTooLarge(Exception):
    """A response body went past the cap its reader was given."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the response is larger than {limit:,} bytes")
        self.limit = limit


class LineTooLong(Exception):
    """A line of a response went past the cap its reader was given."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a line of the response is longer than {limit:,} characters")
        self.limit = limit


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body of a response opened with ``stream=True``, decoded (gzip and the like);
    raises ``ResponseTooLarge`` as soon as it passes ``limit`` bytes, without reading on."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge(limit)
    return bytes(body)


async def read_head(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body of a response opened with ``stream=True``,
    decoded (gzip and the like); the rest is left unread (closing the response drops it)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


_NEWLINE = re.compile(r"\r\n|\r|\n")


async def lines_capped(
    response: httpx.Response,
    limit: int,
    *,
    due: Callable[[], float] | None = None,
    max_line: int | None = None,
) -> AsyncGenerator[str, None]:
    """The lines of a response opened with ``stream=True`` (without their ``\\r\\n``, ``\\r``
    or ``\\n``, as server-sent events allow), decoded as UTF-8 (bad bytes become U+FFFD; a
    byte order mark at the start is dropped, as server-sent events require, else the first
    line's field name is unknown and its event lost); a last line without a line break too.
    Raises ``ResponseTooLarge`` as soon as the body passes ``limit`` bytes: one endless line
    cannot grow past it either. With ``due`` (a time on the running loop's clock, asked again
    before each read), a read still waiting for bytes then raises ``TimeoutError``: the
    reader moves ``due`` on as what it reads makes progress, so bytes trickled in without
    any do not keep it waiting. With ``max_line``, a line longer than that many characters
    raises ``LineTooLong`` as soon as it is, with no more of it held than one chunk past the
    cap (without it, one line was held whole up to ``limit``: 32 MB of text in memory, several
    times over, before the call failed)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    line = io.StringIO()  # the line so far: appending to a str would copy it every chunk
    after_cr = False  # the last chunk ended with "\r": a "\n" next belongs to it
    total = 0
    held = 0  # characters of the line so far
    max_chars = limit if max_line is None else max_line
    chunks = response.aiter_bytes()
    try:
        while True:
            try:
                if due is None:
                    chunk = await anext(chunks)
                else:
                    # Bounds only the wait for bytes, never the reader's time between lines.
                    async with asyncio.timeout_at(due()):
                        chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            total += len(chunk)
            if total > limit:
                raise ResponseTooLarge(limit)
            text = decoder.decode(chunk)
            if not text:
                continue
            if after_cr and text.startswith("\n"):
                text = text[1:]
            after_cr = text.endswith("\r")
            *ended, rest = _NEWLINE.split(text)
            for piece in ended:
                if held + len(piece) > max_chars:
                    raise LineTooLong(max_chars)
                line.write(piece)
                yield line.getvalue()
                line = io.StringIO()
                held = 0
            held += len(rest)
            if held > max_chars:
                raise LineTooLong(max_chars)
            line.write(rest)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    line.write(decoder.decode(b"", final=True))
    last = line.getvalue()
    if last:
        yield last
