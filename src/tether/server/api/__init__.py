"""The REST API, mounted under ``/api/v1``: every route needs a key (or dev mode)."""

from fastapi import APIRouter

from tether.server.api import access

router = APIRouter()
router.include_router(access.router)

__all__ = ["router"]
