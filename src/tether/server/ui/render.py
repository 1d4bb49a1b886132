"""Rendering a page: the template, plus what the header needs (the caller, dev mode, the
projects an admin can switch to)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from tether.server.auth import Principal
from tether.server.roles import Permission


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    principal: Principal | None,
    *,
    status: int = 200,
) -> Response:
    """``name`` rendered with ``context`` and the header's values."""
    projects: list[str] = []
    if principal is not None and principal.may(Permission.ALL_PROJECTS):
        projects = [n for n, _ in request.app.state.access.list_projects()]
    templates = request.app.state.templates
    full = {"principal": principal, "dev": request.app.state.config.dev, "projects": projects}
    full.update(context)
    response: Response = templates.TemplateResponse(request, name, full, status_code=status)
    response.headers["cache-control"] = "no-store"  # pages hold a project's data
    return response
