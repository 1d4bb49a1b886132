"""Rendering a page: the template, plus what the header needs (the caller, dev mode, the
projects an admin can switch to)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.responses import Response

from tether.server.auth import Principal
from tether.server.roles import Permission

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


_lock = threading.Lock()


def _templates(app: Any) -> Any:
    """The app's Jinja2 templates, made on the first page (Jinja2 is not imported before)."""
    templates = getattr(app.state, "templates", None)
    if templates is None:
        with _lock:
            templates = getattr(app.state, "templates", None)
            if templates is None:
                templates = app.state.templates = _make_templates()
    return templates


def _make_templates() -> Any:
    import jinja2
    from fastapi.templating import Jinja2Templates

    from tether.server.ui import filters

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is escaped unless a template says otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return Jinja2Templates(env=env)


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
    templates = _templates(request.app)
    full = {"principal": principal, "dev": request.app.state.config.dev, "projects": projects}
    full.update(context)
    response: Response = templates.TemplateResponse(request, name, full, status_code=status)
    response.headers["cache-control"] = "no-store"  # pages hold a project's data
    return response
