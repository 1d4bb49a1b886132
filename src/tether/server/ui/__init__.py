"""The web UI: server-rendered pages (Jinja2) with htmx, every asset served from ``/static``."""

from fastapi import APIRouter

from tether.server.ui import pages, session

router = APIRouter(include_in_schema=False)
router.include_router(session.router)
router.include_router(pages.router)

__all__ = ["router"]
