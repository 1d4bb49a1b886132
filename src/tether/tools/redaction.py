"""Keeping an HTTP tool's secrets out of what it returns: header values and the values the
environment put into its URL never reach the model, a trace or an answer, even when the
server echoes them back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

REDACTED = "***"
MIN_SECRET_CHARS = 4
"""Shorter values are not redacted from results: replacing every "on" or "v1" in a response
would garble it, and no credential is that short."""


_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_HTML_SAFE_JSON = {"&": "\\u0026", "<": "\\u003c", ">": "\\u003e"}
"""How Go's ``encoding/json`` writes these characters by default."""


def _forms(value: str) -> set[str]:
    """``value`` as it may appear in a response: as it is; percent-encoded (upper or lower
    case escapes); as a form-decoding server reads a ``+`` it was sent in a query (a space);
    JSON-escaped, also with ``/`` written ``\\/`` (PHP's ``json_encode``) and ``&<>`` written
    ``\\u0026`` (Go's ``encoding/json``)."""
    percent = {quote(value, safe=""), quote_plus(value)}
    percent |= {_PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), p) for p in percent}
    escaped = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    escaped |= {e.replace("/", "\\/") for e in escaped}
    html_safe: set[str] = set()
    for form in escaped:
        for char, escape in _HTML_SAFE_JSON.items():
            form = form.replace(char, escape)
        html_safe.add(form)
    return {value, value.replace("+", " "), *percent, *escaped, *html_safe}


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
