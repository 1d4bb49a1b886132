"""Real benign indirect text, read at training time from what is installed on the machine.

The false alarms that matter are on the real tool outputs of coding agents (source files,
READMEs, configuration) and on real documents. Nothing here is downloaded, committed or
shipped: the texts are read from disk when the model is trained, and only the thresholds they
help set end up in the model file. Two kinds, each with its license recorded:

- **installed Python distributions** (site-packages of the training venv): the source, config
  and documentation files each distribution lists in its ``RECORD``, for distributions whose
  metadata names a permissive license (``carriers.PERMISSIVE``). Only the training side's
  distributions: not Tether, not the dev-side carrier packages (``carriers.DEV_PACKAGES``), not
  the fifth whose READMEs are dev-side carriers, and never a package that is a source of a
  held-out part or reserved for independent evaluation;
- **Debian's documentation** (``/usr/share/doc/<package>``): READMEs, NEWS and changelogs,
  plain or gzipped, with the license named in the package's ``copyright`` file (DEP-5
  ``License:`` fields); packages whose copyright file names none are skipped.

The choice is deterministic (sorted paths, a CRC-32 of each path, caps per package and in all),
so a machine with the same packages gives the same texts. ``manifest()`` lists what was read,
by package, with its license.
"""

from __future__ import annotations

import gzip
import importlib.metadata as md
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import agent_files
import carriers
import dataset

MAX_CHARS = 8000
"""A file is taken from its start, up to this many characters (what a read tool returns)."""
MIN_CHARS = 200
CODE_SUFFIXES = (".py", ".pyi", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".json", ".sh")
PROSE_SUFFIXES = (".md", ".rst", ".txt")
DEBIAN_DOC = Path("/usr/share/doc")
DEBIAN_NAMES = re.compile(r"^(?:readme|news|changes|changelog|faq|todo|authors|usage)", re.I)
SKIP_FILES = re.compile(r"(?:^|/)(?:RECORD|LICEN[CS]E|COPYING|NOTICE|METADATA|WHEEL)", re.I)

_SOURCE_PACKAGES = {s.split("/")[0] for s in dataset.DEV_SOURCES}
EXCLUDED = frozenset(
    {
        "tether",
        *_SOURCE_PACKAGES,
        *agent_files.FINAL4_PACKAGES,
        "garak",
        "agentdojo",
        "spikee",
        "pyrit",
        "langkit",
        "nemoguardrails",
    }
)
"""Distributions never read: Tether (its docs show attacks), every source of a held-out part
(the fourth's sdist packages included) and the packages reserved for independent evaluation."""


@dataclass(frozen=True, slots=True)
class Text:
    """One real benign text."""

    text: str
    channel: str
    """``tool_output`` (a file a tool read) or ``document``."""
    origin: str
    """``pypi:<distribution>/<path>`` or ``debian:<package>/<file>``."""
    license: str


def _hash(s: str) -> int:
    return zlib.crc32(s.encode("utf-8", "replace"))


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def python_texts(per_package: int = 30, total: int = 1500) -> list[Text]:
    """Files of the training side's permissively licensed installed distributions."""
    out: list[Text] = []
    seen: set[str] = set()
    dists = sorted(md.distributions(), key=lambda d: _norm(d.metadata.get("Name") or ""))
    dev = {_norm(p) for p in carriers.DEV_PACKAGES} | {"markdown-it-py"}
    for dist in dists:
        name = _norm(dist.metadata.get("Name") or "")
        if not name or name in seen or name in EXCLUDED or name in dev:
            continue
        seen.add(name)
        lic = carriers._license_of(dist.metadata)
        if not any(p in lic for p in carriers.PERMISSIVE):
            continue
        meta = dist.metadata
        short = (meta.get("License-Expression") or "").strip() or " / ".join(
            c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if "License ::" in c
        )
        if zlib.crc32(name.encode()) % 5 == 0:  # the dev fifth (carriers.readme_carriers)
            continue
        files = sorted(
            str(f)
            for f in dist.files or []
            if str(f).endswith(CODE_SUFFIXES + PROSE_SUFFIXES)
            and not SKIP_FILES.search(str(f))
            and ".dist-info/" not in str(f)
            and "__pycache__" not in str(f)
        )
        files.sort(key=lambda f: (_hash(f), f))
        taken = 0
        for rel in files:
            if taken >= per_package:
                break
            path = Path(str(dist.locate_file(rel)))
            try:
                with path.open(encoding="utf-8") as f:
                    text = f.read(MAX_CHARS)  # a huge file is never read whole
            except (OSError, UnicodeDecodeError):
                continue
            if len(text.strip()) < MIN_CHARS:
                continue
            if rel.endswith(CODE_SUFFIXES):
                channel = "tool_output"
            else:
                channel = "tool_output" if _hash(rel) % 2 else "document"
            out.append(Text(text, channel, f"pypi:{name}/{rel}", short or lic[:60]))
            taken += 1
    out.sort(key=lambda t: (_hash(t.origin), t.origin))
    return sorted(out[:total], key=lambda t: t.origin)


def _debian_license(pkg_dir: Path) -> str:
    try:
        text = (pkg_dir / "copyright").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    names = []
    for m in re.finditer(r"^License:\s*(\S[^\n]*)$", text, re.M):
        name = m.group(1).strip()
        if name not in names:
            names.append(name)
    return ", ".join(names[:4])


def debian_texts(per_package: int = 3, total: int = 800, root: Path = DEBIAN_DOC) -> list[Text]:
    """READMEs, NEWS and changelogs of the Debian packages installed here (documents)."""
    out: list[Text] = []
    if not root.is_dir():
        return out
    for pkg_dir in sorted(root.iterdir()):
        if not pkg_dir.is_dir() or pkg_dir.is_symlink() or _norm(pkg_dir.name) in EXCLUDED:
            continue
        lic = _debian_license(pkg_dir)
        if not lic:
            continue
        files = sorted(
            p.name for p in pkg_dir.iterdir() if p.is_file() and DEBIAN_NAMES.match(p.name)
        )
        files.sort(key=lambda f: (_hash(f"{pkg_dir.name}/{f}"), f))
        taken = 0
        for fname in files:
            if taken >= per_package:
                break
            path = pkg_dir / fname
            opener = gzip.open if fname.endswith(".gz") else open
            try:
                # At most MAX_CHARS characters: a huge (or gzip-bomb) file is never read whole.
                with opener(path, "rt", encoding="utf-8") as f:
                    text = f.read(MAX_CHARS)
            except (OSError, UnicodeDecodeError, EOFError):
                continue
            if len(text.strip()) < MIN_CHARS:
                continue
            out.append(Text(text, "document", f"debian:{pkg_dir.name}/{fname}", lic))
            taken += 1
    out.sort(key=lambda t: (_hash(t.origin), t.origin))
    return sorted(out[:total], key=lambda t: t.origin)


def texts(scale: int = 1) -> list[Text]:
    """Every real benign text used on the training side (``scale`` times the default caps)."""
    return python_texts(30 * scale, 1500 * scale) + debian_texts(3 * scale, 800 * scale)


def manifest(items: list[Text]) -> dict[str, dict[str, object]]:
    """Package -> license, channel counts (what was read, for the record)."""
    out: dict[str, dict[str, object]] = {}
    for t in items:
        pkg = t.origin.split("/")[0]
        entry = out.setdefault(pkg, {"license": t.license, "tool_output": 0, "document": 0})
        entry[t.channel] = int(entry[t.channel]) + 1  # type: ignore[call-overload]
    return dict(sorted(out.items()))


if __name__ == "__main__":
    import json
    import sys

    found = texts()
    json.dump(manifest(found), sys.stdout, indent=1)
    print(f"\n{len(found)} texts", file=sys.stderr)
