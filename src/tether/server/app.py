"""The server's application factory: ``create_app(config, routers=...)``.

The API lives under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``), the UI's pages at ``/``,
its assets under ``/static`` (all shipped in the package). Other routers (OTLP ingest,
Prometheus) are passed in ``routers`` and mounted as they are; they use the same
authentication dependencies (``tether.server.auth``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import jinja2
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tether.server import errors
from tether.server.access import AccessStore
from tether.server.config import ServerConfig
from tether.server.middleware import BodyLimit, JsonBodies, SecurityHeaders
from tether.store import create_store_engine
from tether.store.reader import StoreReader

log = logging.getLogger("tether.server")

HERE = Path(__file__).parent
API_PREFIX = "/api/v1"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped unless a template says otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from tether.server.ui import filters

    filters.install(env)
    return Jinja2Templates(env=env)


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
    app.state.templates = _templates()
    from tether.server.api import router as api_router
    from tether.server.ui import router as ui_router

    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(ui_router)
    from tether.server import otlp, prometheus

    for router in (otlp.router, prometheus.router, *routers):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    errors.install(app)
    # Outermost last: the body limit sees the request first.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(JsonBodies, prefix="/api/")
    limits = {otlp.OTLP_PATH: otlp.MAX_BODY_BYTES, **config.body_limits}
    app.add_middleware(BodyLimit, default=config.max_body_bytes, by_prefix=limits)
    return app
