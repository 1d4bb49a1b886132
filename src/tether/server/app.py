"""The server's application factory: ``create_app(config, routers=...)``.

The API lives under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``), the UI's pages at ``/``,
its assets under ``/static`` (all shipped in the package), OTLP ingest at ``/v1/traces`` and
Prometheus at ``/metrics``. The UI, OTLP and Prometheus are loaded on the first request that
reaches them (``tether.server.lazy``): a server that is asked for its API first answers
without importing Jinja2, protobuf or prometheus-client. Other routers passed in ``routers``
are mounted as they are; they use the same authentication dependencies
(``tether.server.auth``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from tether.server import errors
from tether.server.access import AccessStore
from tether.server.auth import authenticate
from tether.server.config import ServerConfig
from tether.server.http_deadline import BodyReadTimeout
from tether.server.lazy import LazyRoutes, install
from tether.server.middleware import BodyLimit, JsonBodies, SecurityHeaders
from tether.store import create_store_engine
from tether.store.reader import StoreReader

log = logging.getLogger("tether.server")

HERE = Path(__file__).parent
API_PREFIX = "/api/v1"


OTLP_PATH = "/v1/traces"
"""``tether.server.otlp``'s path, known before it is imported (a test holds them equal); the
route applies its body limit itself."""


LOGIN_PATH = "/login"
LOGIN_MAX_BODY_BYTES = 16 << 10
"""The sign-in form's body (a key and the page to go to next) is read before any key is
checked, since it holds the key: it is kept small."""


def _ui() -> list[APIRouter]:
    from tether.server.ui import router

    return [router]


def _otlp() -> list[APIRouter]:
    from tether.server import otlp

    return [otlp.router]


def _prometheus() -> list[APIRouter]:
    from tether.server import prometheus

    return [prometheus.router]


def create_app(config: ServerConfig, *, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The ASGI application of ``tether serve`` over the store at ``config.database_url``."""
    engine = create_store_engine(config.database_url)
    access = AccessStore(config.database_url, engine=engine)
    reader = StoreReader(config.database_url, engine=engine, connect=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access.ensure_ready()  # migrations on start: the first request finds the schema
        reader.ensure_ready()
        if config.dev:
            log.warning("dev mode: no sign-in, every request acts as an admin (loopback only)")
        yield
        access.wait_for_uses()
        engine.dispose()

    app = FastAPI(
        title="Tether",
        summary="Runs, traces, agents and metrics of Tether's store.",
        version=API_PREFIX.rsplit("/", 1)[-1],
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not here
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.engine = engine
    app.state.access = access
    app.state.reader = reader
    from tether.server.api import router as api_router

    app.include_router(api_router, prefix=API_PREFIX)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    lazy = [
        LazyRoutes(app, "otlp", _otlp, prefixes=(OTLP_PATH,)),
        LazyRoutes(app, "prometheus", _prometheus, prefixes=("/metrics",)),
        # Last: the UI's pages take any path nothing before took (404 for the rest).
        LazyRoutes(app, "ui", _ui, prefixes=None),
    ]
    install(app, lazy)
    errors.install(app)
    # Outermost last: the body limit sees the request first.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(JsonBodies, prefix="/api/")
    limits = {LOGIN_PATH: LOGIN_MAX_BODY_BYTES}
    limits.update(config.body_limits)
    # OTLP reads its body itself, after the key is checked (tether.server.otlp); every other
    # body is read once its sender is known, but the sign-in form's, which holds the key.
    app.add_middleware(
        BodyLimit,
        default=config.max_body_bytes,
        by_prefix=limits,
        unbuffered=(OTLP_PATH,),
        authenticate=authenticate,
        open_paths=frozenset({LOGIN_PATH}),
    )
    # Outermost: every wait for a body's next part is timed, the body limit's own included.
    app.add_middleware(BodyReadTimeout, timeout_s=config.read_timeout_s)
    return app
