"""Who is asking: an API key (``Authorization: Bearer tth_...``), a browser session cookie, or
nobody in ``--dev`` mode; and what they may do (``require``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from tether.core import DEFAULT_PROJECT, StoreError
from tether.core.settings import is_project_name
from tether.core.text import one_line
from tether.server.access import AccessStore, KeyInfo
from tether.server.config import LOOPBACK_HOSTS, public_origin
from tether.server.roles import GRANTS, Permission, Role, may_grant

SESSION_COOKIE = "tether_session"
"""The session cookie's name on a default port (a site's 80 or 443); see ``session_cookie``."""
DEV_PROJECT_COOKIE = "tether_dev_project"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
log = logging.getLogger("tether.server")


class AuthError(Exception):
    """401: no credentials, or credentials that open nothing (unknown, revoked, expired)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Forbidden(Exception):
    """403: signed in, and not allowed this."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProjectNotFound(Exception):
    """404: a project the caller cannot see (or that does not exist: the same answer)."""

    def __init__(self, project: str) -> None:
        super().__init__(project)
        self.project = project


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    role: Role
    """Its key's role (``admin`` in dev mode)."""
    project: str
    """The project it acts on for this request."""
    key: KeyInfo | None
    """The key it came with; None in dev mode."""
    session_token: str | None = None
    """The browser session's token, when it came with one (never logged)."""

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def sees_key(self, key: KeyInfo) -> bool:
        """Whether a listing of keys shows ``key`` to this caller: the keys of the roles it
        may make and revoke (``roles.GRANTABLE``), and its own. A developer key listed every
        key of its project, the names and ids of its admin and developer keys included:
        what a leaked developer key needs to know which keys to go after."""
        return may_grant(self.role, key.role) or key.key_id == self.key_id

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.key_id

    def actor(self, via: str, request: Request) -> dict[str, Any]:
        """Who made an admin change or answered an approval, for the audit log (the key's id,
        never the key): ``via`` is ``api`` or ``ui``; ``key_project``: the key's own project,
        when it acts on another (an admin key, ``?project=NAME``); ``client``: the address
        the request came from (behind a proxy, the one uvicorn's ``--forwarded-allow-ips``
        trusts to name it) and ``user_agent`` as sent, one line, clipped: what an incident
        review asks after a key was misused."""
        found = {"via": via, "project": self.project, "key_id": self.key_id, "role": str(self.role)}
        if self.key is not None and self.key.project != self.project:
            found["key_project"] = self.key.project
        if request.client is not None and request.client.host:
            found["client"] = one_line(request.client.host)[:MAX_ACTOR_TEXT]
        agent = request.headers.get("user-agent", "").strip()
        if agent:
            found["user_agent"] = one_line(agent)[:MAX_ACTOR_TEXT]
        return found


MAX_ACTOR_TEXT = 200
"""The most characters of a client address or user agent an audit entry keeps."""


def _bearer(request: Request) -> str | None:
    """The key of the ``Authorization`` header. Two such headers are refused: the first was
    taken, so a request with a wrong key and then a valid one was refused and the other way
    round served, where a proxy in front that reads the last one (or checks only the one it
    adds) took the other."""
    headers = request.headers.getlist("authorization")
    if not headers:
        return None
    if len(headers) > 1:
        raise AuthError(f"send one Authorization header, not {len(headers)}")
    header = headers[0]
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("the Authorization header must be 'Bearer <API key>'")
    return value.strip()


def _access(request: Request) -> AccessStore:
    store: AccessStore = request.app.state.access
    return store


def session_cookie(request: Request) -> str:
    """The session cookie's name for the port the request was sent to (``Host``): browsers
    keep one cookie jar per host name, whatever the port, so two servers on one machine
    (localhost:8000 and localhost:8001) with one name overwrote each other's session (signing
    in to one signed out of the other) and each received the other's token."""
    host = request.headers.get("host", "")
    port = host.rsplit(":", 1)[1] if ":" in host.rsplit("]", 1)[-1] else ""
    name = f"{SESSION_COOKIE}_{port}" if port.isdigit() and len(port) <= 5 else SESSION_COOKIE
    # Served over HTTPS (--secure-cookies): ``__Host-``, which a browser takes only from this
    # very origin, Secure, for the whole site and no Domain: a page of a sibling subdomain or
    # of plain HTTP on the same name cannot plant a session cookie of its choosing.
    return f"__Host-{name}" if request.app.state.config.secure_cookies else name


def check_origin(request: Request) -> None:
    """A request sent by a page of another origin is refused (CSRF), whatever the cookie says.
    Browsers name the page's origin on every cross-origin POST; a client that is not a
    browser sends none. The page's origin is this server's when it is the request's scheme,
    ``Host`` and port (the web's origin: ``http://host`` is not ``https://host``) or the public
    URL the server was given (``--public-url``, behind a proxy). The scheme is the one the
    request came with (uvicorn's ``X-Forwarded-Proto``, believed from ``--forwarded-allow-ips``
    only), and ``https`` with ``--secure-cookies`` (served over HTTPS; its cookie is sent over
    nothing else): the scheme was not compared, so a plain-HTTP page on the same name (what a
    network attacker can serve) was this server's page. ``null`` (an opaque origin: a
    sandboxed iframe, a data: URL, a file:// page of any site) is never this server's page:
    its pages send their origin (``Referrer-Policy: same-origin``)."""
    origin = request.headers.get("origin")
    config = request.app.state.config
    if origin is None:
        return
    scheme = "https" if config.secure_cookies else request.url.scheme
    own = _origin_of(f"{scheme}://{request.headers.get('host', '')}")
    sent = _origin_of(origin)
    if sent is not None and sent in (own, config.public_origin):
        return  # (public_origin: behind a proxy that rewrites Host, the origin it was told)
    raise Forbidden(
        "this request was sent from another site"
        + ("" if config.public_origin else " (behind a proxy that rewrites Host? --public-url)")
    )


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` as ``public_origin`` writes it (the default port
    left out); None for what is no http(s) origin (``null``)."""
    try:
        return public_origin(url)
    except ValueError:
        return None


def _loopback_host(request: Request) -> bool:
    """The request is addressed to this machine by a loopback name (``Host``), not to a
    domain that resolves here (DNS rebinding)."""
    host = request.headers.get("host")
    if not host:  # HTTP/1.0 without a Host: no browser sends that
        return True
    name = host if host.endswith("]") else host.rsplit(":", 1)[0]
    return name.strip("[]").lower() in LOOPBACK_HOSTS


_PRINCIPAL = "tether.principal"
"""Where a request's scope keeps its caller once known (the body limit asks before the
route does: ``middleware.BodyLimit``)."""


def authenticate(request: Request) -> Principal:
    """The caller, from the key or the session cookie; ``AuthError`` when there is neither
    or it opens nothing. In dev mode every request is an admin's. Asked twice for one
    request, the store is read once.

    What a browser sends by itself (the session cookie; in dev mode, nothing at all) is not
    taken from another origin's page for a request that changes something (CSRF: a page on
    another port of this host or another subdomain of this site gets the SameSite cookie
    sent), and dev mode answers only requests addressed to a loopback name (a page whose
    domain resolves to 127.0.0.1 would otherwise read and act as an admin)."""
    known: Principal | None = request.scope.get(_PRINCIPAL)
    if known is None:
        known = request.scope[_PRINCIPAL] = _caller(request)
    return known


def _unchecked(exc: StoreError) -> StoreError:
    """The store failed while the caller's key or session was being checked. Its reason names
    the database (its URL: host, port, user, schema or file path) and what the driver said:
    it goes to the server's log, and the caller, not known yet (anyone who sends a made-up
    key), is told only that the store is unavailable (503: worth trying again)."""
    log.warning("cannot check a caller's credentials: %s", exc.message)
    slow = any(word in exc.message for word in ("did not answer", "timeout", "timed out"))
    return StoreError(
        "the credentials cannot be checked now: the server's store is unavailable"
        + (" (it did not answer in time)" if slow else ""),
        hint="try again shortly; the server's log says why",
    )


def verified_key(access: AccessStore, key_text: str) -> KeyInfo | None:
    """``AccessStore.authenticate``, with a store failure told as ``_unchecked`` does."""
    try:
        return access.authenticate(key_text)
    except StoreError as exc:
        raise _unchecked(exc) from None


def _caller(request: Request) -> Principal:
    unsafe = request.method not in SAFE_METHODS
    if request.app.state.config.dev:
        if not _loopback_host(request):
            raise Forbidden(
                "dev mode answers only requests addressed to 127.0.0.1, localhost or [::1]"
            )
        if unsafe:
            check_origin(request)
        project = request.cookies.get(DEV_PROJECT_COOKIE) or DEFAULT_PROJECT
        if not is_project_name(project):  # no run's project is called that: not sent on
            project = DEFAULT_PROJECT
        return Principal(role=Role.ADMIN, project=project, key=None)
    key_text = _bearer(request)
    access = _access(request)
    if key_text is not None:
        info = verified_key(access, key_text)
        if info is None:
            raise AuthError("the API key is not valid (unknown, revoked or expired)")
        access.note_used(info)
        return Principal(role=info.role, project=info.project, key=info)
    token = request.cookies.get(session_cookie(request))
    if token:
        if unsafe:
            check_origin(request)
        try:
            session = access.session(token)
        except StoreError as exc:
            raise _unchecked(exc) from None
        if session is not None:
            access.note_used(session.key)
            return Principal(
                role=session.key.role,
                project=session.project,
                key=session.key,
                session_token=token,
            )
        raise AuthError("the session has ended; sign in again")
    raise AuthError("an API key is required: send 'Authorization: Bearer <API key>'")


def scoped(request: Request, principal: Principal, project: str | None) -> Principal:
    """The principal acting on ``project`` (None: its own): only a key that may see all
    projects may name another; for any other key another project does not exist (404)."""
    if project is None or project == principal.project:
        return principal
    if not principal.may(Permission.ALL_PROJECTS):
        raise ProjectNotFound(project)
    access = _access(request)
    # A name runs were written under but never made a project is one to look at too (an
    # agent's TETHER_PROJECT names any): its runs were out of everyone's reach.
    if not access.project_exists(project) and not access.project_has_runs(project):
        raise ProjectNotFound(project)
    return Principal(
        role=principal.role,
        project=project,
        key=principal.key,
        session_token=principal.session_token,
    )


def require(permission: Permission) -> Callable[[Request, str | None], Principal]:
    """A dependency: the caller, acting on the project named by the ``project`` query
    parameter (or its own), who must hold ``permission`` (else 403)."""

    def dependency(request: Request, project: str | None = None) -> Principal:
        principal = scoped(request, authenticate(request), project)
        if not principal.may(permission):
            raise Forbidden(f"a key of role {principal.role.value!r} may not {permission.value}")
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require(Permission.READ))]
KeyManager = Annotated[Principal, Depends(require(Permission.MANAGE_KEYS))]
ProjectManager = Annotated[Principal, Depends(require(Permission.MANAGE_PROJECTS))]
Approver = Annotated[Principal, Depends(require(Permission.DECIDE_APPROVALS))]
