"""Benign carrier texts, read from what every Tether install already has on disk.

Nothing here is downloaded or committed: the texts are read at generation time with ``ast``
(no module is imported) from

- the Python standard library (PSF-2.0): docstrings and function sources (training side);
- Tether's runtime dependencies in the venv (pydantic, SQLAlchemy, Alembic, Mako, markdown-it:
  MIT; click, httpx: BSD-3-Clause; Pygments: BSD-2-Clause): docstrings and sources (dev side).

The two sides never share a source, so the dev split's benign documents are held out by source.
"""

from __future__ import annotations

import ast
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DEV_PACKAGES = (
    "pydantic",
    "sqlalchemy",
    "alembic",
    "click",
    "httpx",
    "mako",
    "markdown_it",
    "pygments",
)
DEV_LICENSES = {
    "pydantic": "MIT",
    "sqlalchemy": "MIT",
    "alembic": "MIT",
    "mako": "MIT",
    "markdown_it": "MIT",
    "click": "BSD-3-Clause",
    "httpx": "BSD-3-Clause",
    "pygments": "BSD-2-Clause",
}


@dataclass(frozen=True, slots=True)
class Carrier:
    """One benign text."""

    text: str
    """The text."""
    kind: str
    """``doc`` (a docstring) or ``code`` (a function's source)."""
    origin: str
    """Where it was read: ``stdlib:json/decoder.py`` and the like."""


def _texts(path: Path, label: str, min_doc: int, max_len: int) -> list[Carrier]:
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out: list[Carrier] = []
    lines = source.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node)
        if doc and min_doc <= len(doc) <= max_len:
            out.append(Carrier(doc, "doc", label))
        if isinstance(node, ast.FunctionDef) and node.end_lineno:
            body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            if 300 <= len(body) <= max_len:
                out.append(Carrier(body, "code", label))
    return out


def stdlib_carriers(min_doc: int = 160, max_len: int = 6000) -> list[Carrier]:
    """Docstrings and function sources of the standard library (no tests, no idlelib)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[Carrier] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("test", "idlelib", "lib2to3", "site-packages", "ensurepip")) or (
            "/test" in rel
        ):
            continue
        out.extend(_texts(path, f"stdlib:{rel}", min_doc, max_len))
    return out


def dependency_carriers(min_doc: int = 160, max_len: int = 6000) -> list[Carrier]:
    """Docstrings and function sources of Tether's permissively licensed dependencies."""
    root = Path(sysconfig.get_paths()["purelib"])
    out: list[Carrier] = []
    for package in DEV_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if "/tests/" in rel or "/testing/" in rel:
                continue
            out.extend(_texts(path, f"{package}:{rel}", min_doc, max_len))
    return out


PERMISSIVE = ("MIT", "BSD", "Apache", "PSF", "ISC", "Python Software Foundation")
"""License names whose packages' READMEs may be read as carriers (training only; nothing of
them is shipped or committed, only the learned weights)."""


def _license_of(meta: object) -> str:
    get = getattr(meta, "get", None)
    get_all = getattr(meta, "get_all", None)
    if get is None or get_all is None:
        return ""
    lic = get("License-Expression") or get("License") or ""
    classifiers = [c for c in (get_all("Classifier") or []) if c.startswith("License ::")]
    return " ".join([str(lic)[:80], *classifiers])


def _pieces(text: str, max_len: int = 3000) -> list[str]:
    """A long text cut at blank lines into pieces of at most ``max_len`` characters."""
    out: list[str] = []
    cur = ""
    for para in text.split("\n\n"):
        if len(cur) + len(para) + 2 > max_len and cur:
            out.append(cur)
            cur = ""
        cur = (cur + "\n\n" + para) if cur else para[:max_len]
    if cur:
        out.append(cur)
    return [p for p in out if len(p) >= 200]


def readme_carriers(dev: bool) -> list[Carrier]:
    """Sections of the READMEs (package descriptions) of the permissively licensed
    distributions installed beside Tether, a fifth of the packages (by name hash) for the dev
    split. Tether's own README (it shows attacks) and the dev-side docstring packages are left
    out."""
    import importlib.metadata as md
    import zlib

    out: list[Carrier] = []
    seen: set[str] = set()
    dists = sorted(md.distributions(), key=lambda d: (d.metadata.get("Name") or "").lower())
    for dist in dists:
        meta = dist.metadata
        name = (meta.get("Name") or "").lower().replace("_", "-")
        if not name or name in seen or name == "tether" or name.replace("-", "_") in DEV_PACKAGES:
            continue
        seen.add(name)
        if not any(p in _license_of(meta) for p in PERMISSIVE):
            continue
        if (zlib.crc32(name.encode()) % 5 == 0) != dev:
            continue
        desc = meta.get("Description") or meta.get_payload() or ""  # type: ignore[attr-defined]
        for piece in _pieces(str(desc)):
            out.append(Carrier(piece, "doc", f"readme:{name}"))
    return out


def pydoc_carriers() -> list[Carrier]:
    """The Python documentation's topic texts shipped with the interpreter (``pydoc_data``,
    PSF-2.0), cut into pieces: training side only."""
    from pydoc_data.topics import topics

    return [
        Carrier(piece, "doc", f"pydoc:{key}")
        for key in sorted(topics)
        for piece in _pieces(topics[key])
    ]
