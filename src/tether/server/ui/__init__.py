"""The web UI: server-rendered pages (Jinja2) with htmx, every asset served from ``/static``."""

from fastapi import APIRouter

from tether.server.ui import session

router = APIRouter(include_in_schema=False)
router.include_router(session.router)

__all__ = ["router"]
