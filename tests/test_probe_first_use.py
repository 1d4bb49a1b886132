"""Slips a new user makes while following the README, through the real ``tether`` command."""

from __future__ import annotations

import json

import pytest

from fakes.cli import run_cli


@pytest.mark.parametrize("url", ["/tmp/tether.db", "sqlite:/tmp/tether.db"])
@pytest.mark.parametrize(
    "command",
    [("traces", "list"), ("traces", "show", "abcdef"), ("approvals", "list"), ("audit", "verify")],
)
def test_a_database_url_that_does_not_parse_is_a_user_error(
    url: str, command: tuple[str, ...]
) -> None:
    """A bare path or ``sqlite:/path`` was an "unexpected error ... please report it" from
    the commands that find the store's trace journal before opening it."""
    result = run_cli("--database-url", url, *command)
    assert result.returncode == 1
    assert f"error: invalid database URL '{url}'" in result.stderr
    assert "sqlite:///" in result.stderr and "unexpected error" not in result.stderr
    as_json = run_cli("--database-url", url, *command, "--json")
    assert json.loads(as_json.stdout)["error"] == f"invalid database URL '{url}'"
