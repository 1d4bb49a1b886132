"""Replacing what a detector found: masking (``<EMAIL_ADDRESS>``) or keyed hashing
(``<EMAIL_ADDRESS:5f0c2a9e41d7b3c8>``).

A hash is HMAC-SHA256 under a secret key, of the value in a canonical form (an e-mail address
in lower case, a card or phone number as its digits), cut to 16 hex digits: the same value
gives the same label in every run and on every machine that shares the key, so a customer's
trail can be followed across traces without the traces holding the value; without the key,
nobody can check a guess (a plain hash of a 9-digit SSN falls to a billion tries).

The key comes from ``TETHER_GUARD_HASH_KEY`` (at least 16 characters; ``python -c "import
secrets; print(secrets.token_hex(32))"`` makes one). Asking for ``hash`` without it is an error
when the policy loads, not a silent fallback: a key generated on the spot would differ between
machines and replicas and break the linking it exists for, and one stored beside the traces
would sit next to what it protects. The key is never logged, printed or put in a trace.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Literal

from tether.core import TetherError
from tether.guards import checks
from tether.guards.findings import Finding, merge_spans
from tether.guards.scanner import fold_for_scan

RedactAction = Literal["mask", "hash"]
HASH_KEY_ENV = "TETHER_GUARD_HASH_KEY"
MIN_KEY_CHARS = 16
HASH_HEX_DIGITS = 16
"""Hex digits of a hash label kept (64 bits: collisions are negligible for linking)."""

_DIGIT_KINDS = frozenset({"CREDIT_CARD", "US_SSN", "US_ITIN"})


class HashKey:
    """The secret key of ``hash`` labels. Its ``repr`` never shows the key."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_KEY_CHARS:
            raise TetherError(
                f"the guard hash key is too short ({len(raw)} bytes; at least {MIN_KEY_CHARS})",
                hint='make one with: python -c "import secrets; print(secrets.token_hex(32))"',
            )
        self._key = raw

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HashKey:
        """The key in ``TETHER_GUARD_HASH_KEY``; a clear error if it is unset or short."""
        env = os.environ if environ is None else environ
        value = env.get(HASH_KEY_ENV, "")
        if not value.strip():
            raise TetherError(
                f"the guard action 'hash' needs a secret key in {HASH_KEY_ENV}",
                hint=f"set {HASH_KEY_ENV} to a random string of at least {MIN_KEY_CHARS} "
                "characters, the same on every machine whose traces should link (python -c "
                '"import secrets; print(secrets.token_hex(32))"), or use action: mask',
            )
        return cls(value.strip())

    def label(self, kind: str, value: str) -> str:
        """``<KIND:hex>`` for ``value``: the same for the same key, kind and canonical value."""
        message = f"{kind}\x00{canonical_value(kind, value)}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return f"<{kind}:{digest[:HASH_HEX_DIGITS]}>"

    def __repr__(self) -> str:
        return "HashKey(***)"

    __str__ = __repr__


def canonical_value(kind: str, value: str) -> str:
    """``value`` as its owner would recognize it whatever the formatting: numbers as digits
    (a North American phone number without its leading 1), e-mail addresses in lower case,
    IBANs without spaces in upper case; fullwidth forms and invisible characters, which
    a reader does not tell apart from the plain value, as that value."""
    value = fold_for_scan(value)[0]
    if kind in _DIGIT_KINDS:
        return checks.digits_only(value)
    if kind == "PHONE_NUMBER":
        digits = checks.digits_only(value)
        return digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
    if kind == "EMAIL_ADDRESS":
        return value.lower()
    if kind == "IBAN_CODE":
        return value.replace(" ", "").replace("-", "").upper()
    return value


def redact(
    text: str,
    findings: Iterable[Finding],
    action: RedactAction = "mask",
    *,
    key: HashKey | None = None,
) -> str:
    """``text`` with every finding replaced by its label: ``<KIND>`` (mask) or ``<KIND:hex>``
    (hash, which needs ``key``). Overlapping findings are replaced as one."""
    return redact_each(text, [(f, action) for f in findings], key=key)


def redact_each(
    text: str,
    findings: Iterable[tuple[Finding, RedactAction]],
    *,
    key: HashKey | None = None,
) -> str:
    """``text`` with each finding replaced as its own action says. Where findings with
    different actions overlap, the merged span is masked (the stricter of the two)."""
    items = sorted(findings, key=lambda item: (item[0].start, -item[0].end))
    for _, action in items:
        if action not in ("mask", "hash"):
            raise ValueError(f"{action!r} is not a redaction (mask or hash)")
        if action == "hash" and key is None:
            raise ValueError("the hash action needs a HashKey")
    # One sweep in text order: overlapping findings merge into one span labelled with the
    # most confident finding's kind (see merge_spans), hashed only if all of them asked so.
    merged: list[tuple[Finding, bool]] = []
    for finding, action in items:
        hashed = action == "hash"
        if merged and finding.start < merged[-1][0].end:
            last, last_hashed = merged[-1]
            best = merge_spans((last, finding))[0]
            merged[-1] = (best, last_hashed and hashed)
        else:
            merged.append((finding, hashed))
    pieces: list[str] = []
    end = 0
    for span, hashed in merged:
        pieces.append(text[end : span.start])
        value = text[span.start : span.end]
        pieces.append(key.label(span.kind, value) if hashed and key else f"<{span.kind}>")
        end = span.end
    pieces.append(text[end:])
    return "".join(pieces)
