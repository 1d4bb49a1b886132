"""How errors are answered: JSON ``{"error", "hint"}`` under ``/api`` (and any path that is
not a page), a ``google.rpc.Status`` on OTLP's path, a page or a redirect to the sign-in form
for the UI."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response

from tether.core import Conflict, StoreError, TetherError
from tether.server.auth import AuthError, Forbidden, ProjectNotFound

log = logging.getLogger("tether.server")


def _is_page(request: Request) -> bool:
    """A browser page of the UI (not the API, not a machine route such as OTLP)."""
    path = request.url.path
    return not path.startswith(("/api/", "/v1/", "/static/")) and path != "/metrics"


def error_json(status: int, message: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint, **extra}, status_code=status)


def _answer(
    request: Request,
    status: int,
    message: str,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An error answer to a machine: OTLP's ``google.rpc.Status`` on the OTLP path (its
    exporters read nothing else), the API's JSON elsewhere."""
    from tether.server.app import OTLP_PATH

    if request.url.path == OTLP_PATH:
        from tether.server.otlp import error_reply  # loaded already: this path reached it

        text = message if hint is None else f"{message} ({hint})"
        return error_reply(request.headers.get("content-type", ""), status, text, headers)
    answer = error_json(status, message, hint, **extra)
    if headers:
        answer.headers.update(headers)
    return answer


def _page(request: Request, status: int, message: str) -> Response:
    from tether.server.ui.render import page

    return page(request, "error.html", {"status": status, "message": message}, None, status=status)


def _problems(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        out.append({"where": where, "message": str(error.get("msg", "invalid"))})
    return out


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, exc: AuthError) -> Response:
        if _is_page(request):
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            if request.headers.get("hx-request"):  # htmx follows this header, not a 303
                return Response(status_code=401, headers={"HX-Redirect": "/login"})
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return _answer(
            request,
            401,
            exc.message,
            "tether keys create makes a key",
            headers={"WWW-Authenticate": 'Bearer realm="tether"'},
        )

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if _is_page(request):
            return _page(request, 403, exc.message)
        return _answer(request, 403, exc.message)

    @app.exception_handler(ProjectNotFound)
    async def no_project(request: Request, exc: ProjectNotFound) -> Response:
        message = f"no project {exc.project!r}"
        if _is_page(request):
            return _page(request, 404, message)
        return _answer(request, 404, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = _problems(exc)
        reason = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        if _is_page(request):
            return _page(request, 422, f"invalid request: {reason}")
        return _answer(request, 422, f"invalid request: {reason}", problems=problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if _is_page(request):
            return _page(request, exc.status_code, message)
        return _answer(request, exc.status_code, message, headers=exc.headers)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        status = _store_status(exc)
        if status == 503:
            log.warning("store error: %s", exc.message)
        if _is_page(request):
            return _page(request, status, exc.message)
        return _answer(request, status, exc.message, exc.hint)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        if _is_page(request):
            return _page(request, 409, exc.message)
        return _answer(request, 409, exc.message, exc.hint)

    @app.exception_handler(TetherError)
    async def tether_error(request: Request, exc: TetherError) -> Response:
        if _is_page(request):
            return _page(request, 400, exc.message)
        return _answer(request, 400, exc.message, exc.hint)


def _store_status(exc: StoreError) -> int:
    """404 for a run that is not there, 400 for a question the store cannot answer as asked,
    500 for a stored record that cannot be read back, 503 for a store that is down (the only
    one worth retrying)."""
    name = type(exc).__name__
    if name == "NotFound":
        return 404
    if name == "InvalidQuery":
        return 400
    if name == "CorruptRecord":
        return 500
    return 503
