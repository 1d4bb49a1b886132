"""Roles of API keys and what each may do. Plain data: the CLI reads it without FastAPI."""

from __future__ import annotations

from enum import StrEnum

from tether.core import TetherError
from tether.core.settings import PROJECT_NAME, PROJECT_NAME_RULE


class Role(StrEnum):
    """What an API key is for."""

    ADMIN = "admin"
    """Runs the install: every project, projects and keys of any role."""
    DEVELOPER = "developer"
    """Works on one project's agents: reads its runs, sends traces, approves or denies its
    escalated tool calls, lists, makes and revokes the project's viewer and agent keys."""
    VIEWER = "viewer"
    """Reads one project's runs, traces and dashboards."""
    AGENT = "agent"
    """A machine sending traces (OTLP) for one project: writes, never reads."""


class Permission(StrEnum):
    """One thing a route needs the caller to be allowed."""

    READ = "read"
    """Runs, traces, agents, metrics of the caller's project."""
    INGEST = "ingest"
    """Send spans to the caller's project (OTLP in)."""
    MANAGE_KEYS = "manage_keys"
    """List, make and revoke the project's keys of the roles ``GRANTABLE`` names (a listing
    shows those and the caller's own key: ``auth.Principal.sees_key``)."""
    DECIDE_APPROVALS = "decide_approvals"
    """Approve or deny a tool call a paused run of the caller's project waits on."""
    MANAGE_PROJECTS = "manage_projects"
    """Create projects."""
    ALL_PROJECTS = "all_projects"
    """Look at any project, not only the key's own."""


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.DEVELOPER: frozenset(
        {
            Permission.READ,
            Permission.INGEST,
            Permission.MANAGE_KEYS,
            Permission.DECIDE_APPROVALS,
        }
    ),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.AGENT: frozenset({Permission.INGEST}),
}
"""What each role may do."""


GRANTABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.DEVELOPER: frozenset({Role.VIEWER, Role.AGENT}),
    Role.VIEWER: frozenset(),
    Role.AGENT: frozenset(),
}
"""The roles of the keys a key may make and revoke (in its own project; an admin in any).

Least privilege: a developer provisions its project's agents and dashboards without an admin
key (an admin key opens every project), but makes only keys that can do less than its own: a
developer key cannot make another developer key, so a leaked one cannot copy itself into keys
that outlive its revocation, and it never makes or revokes an admin key. The API, the UI's
keys page and ``may_grant`` all read this table."""


def may_grant(granter: Role, role: Role) -> bool:
    """Whether a key of role ``granter`` may make (or revoke) a key of ``role``."""
    return role in GRANTABLE[granter]


def check_project_name(name: str) -> str:
    """The name, or a ``TetherError`` saying what a project name may be (``PROJECT_NAME``,
    the rule ``TETHER_PROJECT`` follows too)."""
    if not PROJECT_NAME.fullmatch(name):
        raise TetherError(f"{name!r} is not a valid project name", hint=f"use {PROJECT_NAME_RULE}")
    return name
