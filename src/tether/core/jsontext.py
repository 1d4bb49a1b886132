"""Compact JSON text for the trace hot path, from an encoder built once.

``json.dumps`` with options, and ``JSONEncoder.encode`` too, build a new C encoder on every
call (``JSONEncoder.iterencode``): for the small values a trace writes per span (a record's
fields, its attributes) that set-up costs about as much as the encoding itself. The encoders
here are built once and called directly. Their output is exactly ``json.dumps(value,
separators=(",", ":"), ensure_ascii=..., default=str)``, except that a value containing itself
raises ``RecursionError`` instead of ``ValueError`` (no cycle check: its bookkeeping is shared
state, and the encoders are called from several threads).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _stdlib
from typing import Any

JsonText = Callable[[Any], str]

_SAMPLE: Any = {"a": [1, 2.5, None, True, 'é\n"', float("inf")], "b": {"c": object}}


def compact_json_encoder(*, ensure_ascii: bool) -> JsonText:
    """A function giving compact JSON text of a value (``default=str`` for anything JSON has
    no type for); with ``ensure_ascii``, every non-ASCII character escaped."""
    reference = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=ensure_ascii, default=str
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
        c_encoder = make(None, str, escape, None, ":", ",", False, False, True)

        def encode(value: Any) -> str:
            return "".join(c_encoder(value, 0))

        same = encode(_SAMPLE) == reference(_SAMPLE)
    except Exception:  # pragma: no cover - another Python's private signature: the slow path
        return reference
    return encode if same else reference
