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
    read_timeout_s: float = 30.0
    """How long a client has to send the next part of a request's body the server waits for
    (408 past it); ``tether serve --read-timeout`` also gives it this long for the headers."""
    public_origin: str | None = None
    """The origin (``https://tether.example.com``) browsers reach the server at, when a
    reverse proxy in front of it rewrites ``Host``: pages of that origin may send forms and
    cookie-signed changes (see ``auth.check_origin``), as pages of the ``Host`` may."""


def public_origin(url: str) -> str:
    """The origin of a public URL (``--public-url``, ``TETHER_PUBLIC_URL``): scheme and host
    with its port, lower-cased. Raises ``ValueError`` saying what is wrong."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the public URL must be http(s)://HOST[:PORT], got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the public URL has an invalid port: {url!r}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    shown = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme}://{shown}".lower()
