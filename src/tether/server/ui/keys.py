"""The keys page: the API keys of the project being looked at, a form to make one, and
revoking one after a confirmation page. For the keys that may manage keys, with the same rule
as the API (``roles.GRANTABLE``): an admin sees, makes and revokes any key, a developer its
project's viewer and agent keys (and sees its own).

A new key's text is in the answer to the form that made it and nowhere else: not in a URL,
not in a cookie, not in the store (only its hash), not in a log line. The page is sent with
``cache-control: no-store`` like every page. The forms post like the session's (sign in,
switch project): SameSite=Strict session cookie, and a post whose ``Origin`` names another
site is refused (``check_origin``). Making and revoking a key are the same audit entries as
through the API or ``tether keys`` (``key_created``, ``key_revoked``), with ``via: ui``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from tether.server.access import AccessNotFound, AccessStore, KeyInfo
from tether.server.auth import Forbidden, KeyManager, Principal, check_origin
from tether.server.roles import Role, may_grant
from tether.server.ui.render import page
from tether.server.ui.session import form

router = APIRouter()

EXPIRIES = {"never": None, "1d": 1, "7d": 7, "30d": 30, "90d": 90, "365d": 365}
"""What the form offers for a key's lifetime, in days."""
ROLES = tuple(r.value for r in Role)


def _grantable(principal: Principal) -> tuple[str, ...]:
    """The roles the caller may make and revoke, in ``ROLES`` order."""
    return tuple(r for r in ROLES if may_grant(principal.role, Role(r)))


def _access(request: Request) -> AccessStore:
    store: AccessStore = request.app.state.access
    return store


def _keys_page(
    request: Request,
    principal: Principal,
    *,
    created: tuple[KeyInfo, str] | None = None,
    message: str | None = None,
    error: str | None = None,
    revoked: str | None = None,
    status: int = 200,
) -> Response:
    """The page; ``revoked``: a key just revoked, said so when it is one of the page's
    revoked keys (the ``?revoked=`` of the redirect after revoking)."""
    keys = [k for k in _access(request).list_keys(principal.project) if principal.sees_key(k)]
    now = time.time_ns()
    states = [(k, k.state(now)) for k in keys]
    if revoked is not None and any(k.key_id == revoked and s == "revoked" for k, s in states):
        message = f"Key {revoked} is revoked: it and its browser sessions no longer work."
    context: dict[str, Any] = {
        "keys": states,
        "created": created,
        "message": message,
        "error": error,
        "roles": _grantable(principal),
        "expiries": list(EXPIRIES),
        "own_key": principal.key_id,
    }
    return page(request, "keys.html", context, principal, status=status)


@router.get("/keys")
def keys_page(request: Request, principal: KeyManager, revoked: str | None = None) -> Response:
    # Not the text of the link as it is: a link of anyone's making put its words on the page
    # in the server's voice ("/keys?revoked=... Your session expired: sign in at ...").
    return _keys_page(request, principal, revoked=revoked)


@router.post("/keys")
async def create_key(request: Request, principal: KeyManager) -> Response:
    """Make a key in the project: its text is shown in this answer, once."""
    check_origin(request)
    fields = await form(request)
    # The store's work in a worker thread, not in the event loop (``session.login``).
    return await run_in_threadpool(_create, request, principal, fields)


def _create(request: Request, principal: Principal, fields: dict[str, str]) -> Response:
    role_text = fields.get("role", "")
    expiry = fields.get("expires", "never")
    name = fields.get("name", "").strip()
    problem = None
    grantable = _grantable(principal)
    if role_text not in grantable:
        if role_text in ROLES:
            raise Forbidden(f"a {principal.role.value} key may not make {role_text} keys")
        problem = f"choose a role ({', '.join(grantable)})"
    elif expiry not in EXPIRIES:
        problem = f"choose when the key expires ({', '.join(EXPIRIES)})"
    elif len(name) > 128:
        problem = "a key's name is at most 128 characters"
    if problem:
        return _keys_page(request, principal, error=problem, status=422)
    days = EXPIRIES[expiry]
    expires = None if days is None else time.time_ns() + days * 86_400 * 1_000_000_000
    made = _access(request).create_key(
        principal.project,
        Role(role_text),
        name=name,
        expires_ns=expires,
        actor=principal.actor("ui", request),
    )
    return _keys_page(request, principal, created=made, status=201)


def _project_key(request: Request, principal: Principal, key_id: str) -> KeyInfo:
    """A key of the project being looked at; 404 for any other (or none)."""
    try:
        info = _access(request).get_key(key_id)
    except AccessNotFound:
        info = None
    if info is None or info.project != principal.project:
        from starlette.exceptions import HTTPException

        raise HTTPException(404, f"no API key {key_id!r} in project {principal.project!r}")
    # Any key may revoke itself (a leaked key's holder stops it); others by ``GRANTABLE``.
    if key_id != principal.key_id and not may_grant(principal.role, info.role):
        raise Forbidden(f"a {principal.role.value} key may not revoke {info.role.value} keys")
    return info


@router.get("/keys/{key_id}/revoke")
def revoke_form(request: Request, key_id: str, principal: KeyManager) -> Response:
    """Ask before revoking: what the key is, and that it stops working at once."""
    info = _project_key(request, principal, key_id)
    context = {"key": info, "state": info.state(time.time_ns()), "own": key_id == principal.key_id}
    return page(request, "key_revoke.html", context, principal)


@router.post("/keys/{key_id}/revoke")
async def revoke(request: Request, key_id: str, principal: KeyManager) -> Response:
    check_origin(request)
    fields = await form(request)
    if fields.get("confirm") != key_id:
        # Only the confirmation page's form names the key again.
        return RedirectResponse(f"/keys/{quote(key_id)}/revoke", status_code=303)
    return await run_in_threadpool(_revoke, request, principal, key_id)


def _revoke(request: Request, principal: Principal, key_id: str) -> Response:
    info = _project_key(request, principal, key_id)
    _access(request).revoke_key(info.key_id, actor=principal.actor("ui", request))
    if key_id == principal.key_id:  # the key this browser signed in with: signed out now
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(f"/keys?revoked={quote(key_id)}", status_code=303)
