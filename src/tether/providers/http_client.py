"""An ``httpx.AsyncClient`` per event loop, shared by the HTTP provider and HTTP tools."""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import Callable
from functools import cache

import certifi
import httpx


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
