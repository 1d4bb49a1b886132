"""Rendering a page: the template, plus what the header needs (the caller, dev mode, the
projects an admin can switch to)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.responses import Response

from tether.core.text import visible
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
        finalize=_shown,
    )
    filters.install(env)
    return Jinja2Templates(env=env)


def _shown(value: Any) -> Any:
    """Every text a page shows, as the CLI prints it (``visible``): escaping keeps a run's
    text from being read as HTML, not from reordering or hiding itself. A right-to-left
    override in an agent's or a span's name turned the rest of its line around (a name that
    reads as another), and Unicode tag characters in a run's input carried instructions the
    reviewer of the trace could not see. Markup a template made itself is left alone."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return visible(value)
    return value


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
