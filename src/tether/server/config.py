"""What one ``tether serve`` process is set up with."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
DEFAULT_MAX_BODY_BYTES = 1 << 20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the server (the store's come from ``tether.core.Settings``)."""

    database_url: str
    """The store the server reads and keeps its keys in."""
    dev: bool = False
    """No sign-in: every request acts as an admin. Only on a loopback address."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body; a larger one gets 413."""
    body_limits: dict[str, int] = field(default_factory=dict)
    """Other limits by path prefix (``{"/v1/traces": 16 << 20}``), for routers that take
    large bodies."""
    secure_cookies: bool = False
    """Mark the session cookie ``Secure`` (serving behind HTTPS)."""
