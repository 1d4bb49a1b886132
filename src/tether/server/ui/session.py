"""Signing in and out of the UI, and switching projects.

Signing in takes a key in a form and sets a session cookie (HttpOnly, SameSite=Strict; Secure
behind HTTPS) holding a random session token, never the key: the key is checked once, and
revoking it ends the session. Forms post to this origin only (``form-action 'self'``,
SameSite=Strict), and a post whose ``Origin`` names another site is refused.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from tether.core import DEFAULT_PROJECT
from tether.server.access import SESSION_TTL_NS, AccessStore
from tether.server.auth import (
    DEV_PROJECT_COOKIE,
    Forbidden,
    Principal,
    authenticate,
    check_origin,
    scoped,
    session_cookie,
    verified_key,
)
from tether.server.roles import Permission, Role
from tether.server.ui.render import page

router = APIRouter()
MAX_FORM_FIELDS = 20


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/runs"
    return target


async def form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form (one value each)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(body, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than any of the UI's forms has
        raise HTTPException(400, f"a form of the UI has at most {MAX_FORM_FIELDS} fields") from None
    return {k: v[0] for k, v in fields.items()}


def _login_page(request: Request, message: str | None, next_url: str, status: int) -> Response:
    return page(request, "login.html", {"message": message, "next": next_url}, None, status=status)


@router.get("/")
def home() -> Response:
    return RedirectResponse("/runs", status_code=303)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    if request.app.state.config.dev:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, None, safe_next(next), 200)


@router.post("/login")
async def login(request: Request) -> Response:
    check_origin(request)
    fields = await form(request)
    # The store's work in a worker thread: in the event loop, a store slow to answer would
    # hold every other request (so for every form that is read here, then acted on).
    return await run_in_threadpool(_sign_in, request, fields)


def _sign_in(request: Request, fields: dict[str, str]) -> Response:
    next_url = safe_next(fields.get("next"))
    access: AccessStore = request.app.state.access
    key = fields.get("key", "").strip()
    info = verified_key(access, key) if key else None
    if info is None:
        return _login_page(
            request, "That key is not valid (unknown, revoked or expired).", next_url, 401
        )
    if info.role is Role.AGENT:
        return _login_page(
            request, "An agent key sends traces; it cannot sign in to the UI.", next_url, 403
        )
    # The session this browser had (another key's, or this one's) ends: signing in over it
    # replaced its cookie and left it open in the store until it expired, a token that still
    # opened the other key's project to whoever had a copy of the old cookie.
    earlier = request.cookies.get(session_cookie(request))
    if earlier:
        access.close_session(earlier)
    token = access.open_session(info)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        session_cookie(request),
        token,
        max_age=SESSION_TTL_NS // 1_000_000_000,
        httponly=True,
        samesite="strict",
        secure=request.app.state.config.secure_cookies,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Sign out: the browser's session ends, if it is still open. A session already ended (its
    key revoked or expired) is signed out of too: signing out asked for a live one, so it
    sent the browser to sign in again with ``next=/logout``, which a page cannot open (405),
    and kept the dead cookie."""
    check_origin(request)
    token = request.cookies.get(session_cookie(request))
    access: AccessStore = request.app.state.access
    if token and access.session(token) is not None:  # no write for a made-up cookie
        access.close_session(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(  # with the flags it was set with (a __Host- cookie needs Secure)
        session_cookie(request),
        path="/",
        secure=request.app.state.config.secure_cookies,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/switch-project")
async def switch_project(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    """Look at another project (a key that may see all projects)."""
    check_origin(request)
    fields = await form(request)
    return await run_in_threadpool(_switch, request, principal, fields)


def _switch(request: Request, principal: Principal, fields: dict[str, str]) -> Response:
    project = fields.get("project", "") or DEFAULT_PROJECT
    if not principal.may(Permission.ALL_PROJECTS) and project != principal.project:
        raise Forbidden("only an admin key may switch projects")
    scoped(request, principal, project)  # 404 for a project that does not exist
    response = RedirectResponse(f"/runs?project={quote(project)}", status_code=303)
    if request.app.state.config.dev:
        response.set_cookie(DEV_PROJECT_COOKIE, project, httponly=True, samesite="strict")
    elif principal.session_token:
        request.app.state.access.switch_session(principal.session_token, project)
    return response
