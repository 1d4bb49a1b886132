"""The REST API, mounted under ``/api/v1``: every route needs a key (or dev mode)."""

from fastapi import APIRouter

from tether.server.api import access, approvals, runs

router = APIRouter()
router.include_router(access.router)
router.include_router(runs.router)
router.include_router(approvals.router)

__all__ = ["router"]
