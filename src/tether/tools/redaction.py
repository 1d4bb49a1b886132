"""Keeping an HTTP tool's secrets out of what it returns: header values and the values the
environment put into its URL never reach the model, a trace or an answer, even when the
server echoes them back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

REDACTED = "***"
MIN_SECRET_CHARS = 4
"""Shorter values are not redacted from results: replacing every "on" or "v1" in a response
would garble it, and no credential is that short."""


def _forms(value: str) -> set[str]:
    """``value`` as it may appear in a response: as it is, percent-encoded, JSON-escaped."""
    return {
        value,
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def is_bare_origin(url: str) -> bool:
    """``scheme://host[:port][/]``: a base URL that carries no credential in its user
    info, path or query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        bool(parts.scheme and parts.hostname)
        and "@" not in parts.netloc
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


def userinfo(url: str) -> list[str]:
    """The user name and password in ``url``, if it has them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    return [p for p in (parts.username, parts.password) if p]


def credential_parts(header_value: str) -> list[str]:
    """The words of a header value long enough to be a credential on their own (the token
    of ``Bearer <token>``), since a server may echo the token without its scheme."""
    return [word for word in header_value.split() if len(word) >= 8]


class Redactor:
    """Replaces every form of the given secrets with ``***``."""

    def __init__(self, secrets: Iterable[str], *, min_chars: int = MIN_SECRET_CHARS) -> None:
        forms = {f for s in secrets if len(s) >= min_chars for f in _forms(s) if f}
        # Longest first, so a secret that contains another is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        """``text`` without the secrets."""
        for form in self._forms:
            text = text.replace(form, REDACTED)
        return text
