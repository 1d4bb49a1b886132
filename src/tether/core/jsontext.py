"""Compact JSON for the trace hot path: a record's fields and attributes, once per record.

Two encoders, one contract: compact JSON, anything JSON has no type for as its ``str()``,
always valid UTF-8 (a lone surrogate, which user text can hold, becomes U+FFFD).

- :func:`json_bytes` / :func:`json_text` use ``orjson`` (several times faster than the
  standard library on span attributes, the largest per-span cost of a traced run), and fall
  back to the standard library for what orjson refuses: lone surrogates, integers beyond 64
  bits, nesting deeper than 254 levels. Unlike ``json.dumps``, NaN and infinities are written
  as ``null`` (JSON has no such numbers) on the orjson path, and an ``Enum`` as its value.
  Of a dict (attributes) they never fail: a value that cannot be written (one containing
  itself, nested past the recursion limit, whose ``str()`` raises) becomes a note saying so.
- :func:`compact_json_encoder` is the standard library's encoder, built once: ``json.dumps``
  and ``JSONEncoder.encode`` build a new C encoder on every call, which for small values costs
  about as much as the encoding. Its text is exactly ``json.dumps(value, separators=(",", ":"),
  ensure_ascii=..., default=str)``, except that a value containing itself raises
  ``RecursionError`` instead of ``ValueError`` (no cycle check: its bookkeeping is shared
  state, and the encoders are called from several threads).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _stdlib
from typing import Any

from tether.core.text import scrub_surrogates

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; the standard library still works
    orjson = None  # type: ignore[assignment]

JsonText = Callable[[Any], str]

_SAMPLE: Any = {"b": {"c": object, "a": 1}, "a": [1, 2.5, None, True, 'é\n"', float("inf")]}


def compact_json_encoder(
    *, ensure_ascii: bool, sort_keys: bool = False, separators: tuple[str, str] = (",", ":")
) -> JsonText:
    """A function giving compact JSON text of a value (``default=str`` for anything JSON has
    no type for); with ``ensure_ascii``, every non-ASCII character escaped; with
    ``sort_keys``, the keys of every object in order; ``separators`` as ``json.dumps`` takes
    them (``(", ", ": ")`` for its default spacing)."""
    reference = json.JSONEncoder(
        separators=separators, ensure_ascii=ensure_ascii, default=str, sort_keys=sort_keys
    ).encode
    make = getattr(_stdlib, "c_make_encoder", None)
    escape = getattr(
        _stdlib, "c_encode_basestring_ascii" if ensure_ascii else "c_encode_basestring", None
    )
    if make is None or escape is None:  # pragma: no cover - a Python without the C accelerator
        return reference
    try:
        # The arguments ``JSONEncoder.iterencode`` passes: markers (None: no cycle check),
        # default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan.
        item, key = separators
        c_encoder = make(None, str, escape, None, key, item, sort_keys, False, True)

        def encode(value: Any) -> str:
            return "".join(c_encoder(value, 0))

        same = encode(_SAMPLE) == reference(_SAMPLE)
    except Exception:  # pragma: no cover - another Python's private signature: the slow path
        return reference
    return encode if same else reference


_encode_utf8 = compact_json_encoder(ensure_ascii=False)


def _stdlib_text(value: Any) -> str:
    try:
        text = _encode_utf8(value)
    except Exception:
        if not isinstance(value, dict):
            raise
        # Attributes holding a value that cannot be written (one containing itself, nested
        # past the recursion limit, whose str() fails): that value is replaced by a note, so
        # one bad metadata entry neither fails a run nor loses its trace.
        text = _encode_utf8({str(k): _writable(v) for k, v in value.items()})
    # A lone surrogate (only in a string, so inside a JSON string literal) becomes U+FFFD:
    # escaped, it would come back on reading and break every UTF-8 output it is shown on.
    return text if text.isascii() else scrub_surrogates(text)


def _writable(value: Any) -> Any:
    try:
        _encode_utf8(value)
    except Exception as exc:
        return f"<not serializable: {type(value).__name__}: {type(exc).__name__}>"
    return value


if orjson is not None:
    # Dataclasses and datetimes go to ``default`` (``str``), as with the standard library.
    _OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
    _OPTIONS |= orjson.OPT_PASSTHROUGH_DATETIME
    JSON_OPTIONS = _OPTIONS
    """The orjson options of ``json_bytes`` (with ``default=str``), for callers that
    serialize several values in one call the same way."""
    _dumps = orjson.dumps
    _Refused = orjson.JSONEncodeError

    def json_bytes(value: Any) -> bytes:
        """Compact JSON of ``value`` as UTF-8 bytes (see the module's docstring)."""
        try:
            return _dumps(value, default=str, option=_OPTIONS)
        except _Refused:
            return _stdlib_text(value).encode()

    def json_text(value: Any) -> str:
        """Compact JSON of ``value`` as text (see the module's docstring)."""
        try:
            return _dumps(value, default=str, option=_OPTIONS).decode()
        except _Refused:
            return _stdlib_text(value)

else:  # pragma: no cover - orjson is a dependency
    JSON_OPTIONS = 0

    def json_bytes(value: Any) -> bytes:
        """Compact JSON of ``value`` as UTF-8 bytes (see the module's docstring)."""
        return _stdlib_text(value).encode()

    json_text = _stdlib_text
