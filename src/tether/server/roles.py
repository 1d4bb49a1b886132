"""Roles of API keys and what each may do. Plain data: the CLI reads it without FastAPI."""

from __future__ import annotations

import re
from enum import StrEnum

from tether.core import TetherError


class Role(StrEnum):
    """What an API key is for."""

    ADMIN = "admin"
    """Runs the install: every project, projects and keys of any role."""
    DEVELOPER = "developer"
    """Works on one project's agents: reads its runs, approves or denies its escalated tool
    calls, makes and revokes its non-admin keys."""
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
    """List, create and revoke the project's keys (non-admin ones, unless admin)."""
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


def may_grant(granter: Role, role: Role) -> bool:
    """Whether a key of role ``granter`` may make a key of ``role``: only an admin makes
    admin keys."""
    if Permission.MANAGE_KEYS not in GRANTS[granter]:
        return False
    return granter is Role.ADMIN or role is not Role.ADMIN


PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
"""What a project may be called: it appears in URLs, log lines and file names."""


def check_project_name(name: str) -> str:
    """The name, or a ``TetherError`` saying what a project name may be."""
    if not PROJECT_NAME.fullmatch(name):
        raise TetherError(
            f"{name!r} is not a valid project name",
            hint="use 1 to 64 characters: lower-case letters, digits, '-', '_' and '.', "
            "starting with a letter or digit",
        )
    return name
