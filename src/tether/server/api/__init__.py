"""The REST API, mounted under ``/api/v1``: every route needs a key (or dev mode)."""

from fastapi import APIRouter

from tether.server.api import access, runs

router = APIRouter()
router.include_router(access.router)
router.include_router(runs.router)

__all__ = ["router"]
