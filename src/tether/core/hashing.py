"""Content hashing over a canonical JSON form, so equal content always hashes the same."""

from __future__ import annotations

import hashlib
from typing import Any

from tether.core.jsontext import compact_json_encoder

# Built once (json.dumps with options builds an encoder per call): the same text as
# json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).
_canonical = compact_json_encoder(ensure_ascii=False, sort_keys=True)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace."""
    return _canonical(value)


def content_hash(value: Any) -> str:
    """SHA-256 hex digest of the canonical JSON form of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
