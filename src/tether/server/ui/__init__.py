"""The web UI: server-rendered pages (Jinja2) with htmx, every asset served from ``/static``."""

from fastapi import APIRouter

from tether.server.ui import keys, pages, session

router = APIRouter(include_in_schema=False)
router.include_router(session.router)
router.include_router(pages.router)
router.include_router(keys.router)

__all__ = ["router"]
