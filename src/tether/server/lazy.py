"""Routes whose modules load on the first request that reaches them.

``tether serve`` answers its first request sooner when what that request does not need is
not imported yet: the web UI (its routes, Jinja2 and the templates), OTLP ingest (protobuf
and the OpenTelemetry protos) and Prometheus (prometheus-client). Each group is a
``LazyRoutes`` placeholder in the app's route list; the first request it matches imports the
group's routers, puts their routes in the app in its place and is dispatched again among them.
What a client sees is the same as if they had been there from the start (the OpenAPI schema
loads every group first); only that first request takes the import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send


class LazyRoutes(BaseRoute):
    """A placeholder for the routers ``load`` returns, matching paths that start with one of
    ``prefixes`` (with ``prefixes=None``: any HTTP path no earlier route took)."""

    def __init__(
        self,
        app: FastAPI,
        name: str,
        load: Callable[[], Sequence[APIRouter]],
        prefixes: tuple[str, ...] | None,
    ) -> None:
        self.app = app
        self.name = name
        self._load = load
        self.prefixes = prefixes
        self._lock = threading.Lock()
        self.loaded = False

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        if self.prefixes is None or scope["path"].startswith(self.prefixes):
            return Match.FULL, {}
        return Match.NONE, {}

    def load(self) -> None:
        """Import the group and put its routes in the app (once)."""
        with self._lock:
            if self.loaded:
                return
            routers = self._load()
            routes = self.app.router.routes
            if self in routes:
                routes.remove(self)
            for router in routers:
                self.app.include_router(router)
            self.loaded = True

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.load()
        # Dispatched again: the group's own routes are in the app now, this one is not.
        await self.app.router.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyRoutes({self.name!r}, loaded={self.loaded})"


def install(app: FastAPI, groups: Sequence[LazyRoutes]) -> None:
    """Add the placeholders (in order, after the routes already there), and make the OpenAPI
    schema load every group before it is made."""
    app.router.routes.extend(groups)
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        for group in groups:
            group.load()
        return make_schema()

    app.openapi = openapi  # type: ignore[method-assign]
