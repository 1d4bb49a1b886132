"""Lazy re-exports for package ``__init__`` modules.

A package re-exports its public names from private modules; importing them all eagerly made
every ``tether`` command (``--help`` included) load SQLAlchemy, Alembic and httpx first, about
a second of start-up. With :func:`lazy_exports` a name's module is imported the first time the
name is looked up, so the public API stays the same and each command pays only for what it
uses. Packages still import the names under ``TYPE_CHECKING`` so type checkers see them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is
    ``namespace``: ``exports`` maps a module (absolute, or relative with a leading dot) to the
    names it provides."""
    package = namespace["__name__"]
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *namespace})

    return __getattr__, __dir__
