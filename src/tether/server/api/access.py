"""``/api/v1``: who am I, projects, API keys."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tether.server.access import AccessNotFound, AccessStore
from tether.server.auth import (
    Forbidden,
    KeyManager,
    Principal,
    ProjectManager,
    Reader,
    authenticate,
    scoped,
)
from tether.server.roles import GRANTS, Permission, Role, may_grant

router = APIRouter(tags=["access"])

MAX_KEY_TTL_S = 10 * 365 * 86_400


def _access(request: Request) -> AccessStore:
    store: AccessStore = request.app.state.access
    return store


class WhoAmI(BaseModel):
    """The caller of a request."""

    role: str
    """Its key's role (``admin`` in dev mode)."""
    project: str
    """The project it acts on."""
    key_id: str | None
    """Its key's id; null in dev mode."""
    permissions: list[str]
    """What it may do."""
    dev: bool
    """Whether the server runs in dev mode (no sign-in)."""


@router.get("/whoami")
def whoami(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> WhoAmI:
    """The caller: its role, project and permissions."""
    return WhoAmI(
        role=principal.role.value,
        project=principal.project,
        key_id=principal.key_id,
        permissions=sorted(p.value for p in GRANTS[principal.role]),
        dev=request.app.state.config.dev,
    )


class ProjectView(BaseModel):
    """A project."""

    name: str
    """Its name."""
    created_ns: int | None
    """When it was made, in nanoseconds since the epoch."""


@router.get("/projects")
def list_projects(request: Request, principal: Reader) -> list[ProjectView]:
    """The projects the caller may look at: all of them for an admin, else its own (an
    ``agent`` key, which only sends traces, none: 403)."""
    projects = _access(request).list_projects()
    if not principal.may(Permission.ALL_PROJECTS):
        projects = [p for p in projects if p[0] == principal.project]
    return [ProjectView(name=n, created_ns=c) for n, c in projects]


class NewProject(BaseModel):
    """A project to make."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    """Its name: lower-case letters, digits, ``-``, ``_``, ``.``."""


@router.post("/projects", status_code=201)
def create_project(request: Request, body: NewProject, principal: ProjectManager) -> ProjectView:
    """Make a project (admin)."""
    _access(request).create_project(body.name, actor=principal.actor("api", request))
    return ProjectView(name=body.name, created_ns=time.time_ns())


class KeyView(BaseModel):
    """An API key (never its secret)."""

    key_id: str
    project: str
    role: str
    name: str
    state: str
    """``active``, ``expired`` or ``revoked``."""
    created_ns: int
    expires_ns: int | None
    revoked_ns: int | None
    last_used_ns: int | None
    """When it last opened a request (written at most once a minute); null: never."""


class NewKey(BaseModel):
    """A key to make in the caller's project."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    """What it may do: an admin makes any key, a developer viewer and agent keys
    (``roles.GRANTABLE``)."""
    name: str = Field(default="", max_length=128)
    """A label to recognise it by."""
    expires_in_s: int | None = Field(default=None, ge=60, le=MAX_KEY_TTL_S)
    """Seconds until it stops working; null: never."""


class CreatedKey(KeyView):
    key: str
    """The key itself: shown this once, only its hash is kept."""


@router.get("/keys")
def list_keys(request: Request, principal: KeyManager) -> list[KeyView]:
    """The keys of the project the caller may make and revoke (``roles.GRANTABLE``: all of
    them for an admin, the viewer and agent keys for a developer), and its own."""
    keys = _access(request).list_keys(principal.project)
    return [KeyView(**k.shown()) for k in keys if principal.sees_key(k)]


@router.post("/keys", status_code=201)
def create_key(request: Request, body: NewKey, principal: KeyManager) -> CreatedKey:
    """Make a key in the project; its text is in this answer only."""
    if not may_grant(principal.role, body.role):
        raise Forbidden(f"a {principal.role.value} key may not make {body.role.value} keys")
    expires = None
    if body.expires_in_s is not None:
        expires = time.time_ns() + body.expires_in_s * 1_000_000_000
    info, key = _access(request).create_key(
        principal.project,
        body.role,
        name=body.name,
        expires_ns=expires,
        actor=principal.actor("api", request),
    )
    return CreatedKey(**info.shown(), key=key)


@router.delete("/keys/{key_id}")
def revoke_key(
    request: Request,
    key_id: str,
    caller: Annotated[Principal, Depends(authenticate)],
    project: str | None = None,
) -> KeyView:
    """Revoke a key of the project: it and its sessions stop working at once. Any key may
    revoke itself, whatever its role (a leaked key's holder stops it); others need
    ``manage_keys`` and a role ``GRANTABLE`` lets them make."""
    access = _access(request)
    if key_id == caller.key_id:
        return KeyView(**access.revoke_key(key_id, actor=caller.actor("api", request)).shown())
    principal = scoped(request, caller, project)
    if not principal.may(Permission.MANAGE_KEYS):
        raise Forbidden(
            f"a key of role {principal.role.value!r} may not {Permission.MANAGE_KEYS.value}"
        )
    try:
        info = access.get_key(key_id)
    except AccessNotFound:
        info = None
    if info is None or info.project != principal.project:
        raise _no_key(key_id)
    if not may_grant(principal.role, info.role):
        raise Forbidden(f"a {principal.role.value} key may not revoke {info.role.value} keys")
    return KeyView(**access.revoke_key(key_id, actor=principal.actor("api", request)).shown())


def _no_key(key_id: str) -> Any:
    from starlette.exceptions import HTTPException

    return HTTPException(404, f"no API key {key_id!r} in this project")
