"""The held-out evaluation parts stay as frozen: disjoint sources, unchanged items.

Reads ``guards_data/real`` only to hash it (no text is printed); the evaluation itself is
``benchmarks/eval_guards.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dataset() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dataset", ROOT / "scripts/guards/dataset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parts_share_no_source() -> None:
    ds = _dataset()
    parts = [
        ds.TRAIN_SOURCES,
        ds.TUNE_SOURCES,
        ds.FINAL_SOURCES,
        ds.FINAL2_SOURCES,
        ds.FINAL3_SOURCES,
        ds.FINAL4_SOURCES,
    ]
    seen: set[str] = set()
    for part in parts:
        assert not seen & set(part)
        seen |= set(part)
    assert set(ds.DEV_SOURCES) == seen - set(ds.TRAIN_SOURCES)


@pytest.mark.parametrize("part", ["final", "final2", "final3", "final4"])
def test_frozen_parts_are_unchanged(part: str) -> None:
    ds = _dataset()
    items = ds.real_split(part)
    assert items, f"no items for {part}"
    sources = {
        "final": ds.FINAL_SOURCES,
        "final2": ds.FINAL2_SOURCES,
        "final3": ds.FINAL3_SOURCES,
        "final4": ds.FINAL4_SOURCES,
    }
    assert {it["source"] for it in items} == set(sources[part])
    assert ds.digest(items) == ds.FROZEN[part]


def test_every_frozen_part_is_tested() -> None:
    assert set(_dataset().FROZEN) == {"final", "final2", "final3", "final4"}


def test_a_changed_item_changes_the_digest() -> None:
    ds = _dataset()
    items = ds.real_split("final2")
    changed = [dict(items[0], text=items[0]["text"] + " "), *items[1:]]
    assert ds.digest(changed) != ds.FROZEN["final2"]


def test_real_benign_text_never_comes_from_a_held_out_or_reserved_package() -> None:
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "scripts/guards"))
    try:
        rb = importlib.import_module("real_benign")
    finally:
        sys.path.remove(str(ROOT / "scripts/guards"))
    ds = _dataset()
    held_out = {s.split("/")[0] for s in ds.DEV_SOURCES}
    reserved = {"garak", "agentdojo", "spikee", "pyrit", "langkit", "nemoguardrails"}
    assert held_out | reserved | {"tether"} <= rb.EXCLUDED
    texts = rb.python_texts(per_package=2, total=40)
    assert texts, "no installed package gave a text"
    for t in texts:
        package = t.origin.split("/")[0].removeprefix("pypi:")
        assert package not in rb.EXCLUDED
        assert t.channel in ("tool_output", "document") and t.license
        assert len(t.text) <= rb.MAX_CHARS


def test_real_benign_reads_only_the_start_of_huge_or_compressed_files(tmp_path: Path) -> None:
    # A 64 MiB changelog (gzipped to a few KB) and a file that is not UTF-8: the first gives
    # MAX_CHARS characters without being read whole, the second is skipped, a package without
    # a license in its copyright file is skipped.
    import gzip
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "scripts/guards"))
    try:
        rb = importlib.import_module("real_benign")
    finally:
        sys.path.remove(str(ROOT / "scripts/guards"))
    pkg = tmp_path / "somepkg"
    pkg.mkdir()
    (pkg / "copyright").write_text("Files: *\nLicense: MIT\n")
    with gzip.open(pkg / "changelog.gz", "wb") as f:
        line = b"somepkg (1.0) unstable; urgency=low\n  * Fixed a bug in the parser.\n"
        for _ in range((64 << 20) // len(line)):
            f.write(line)
    (pkg / "README").write_bytes(b"\xff\xfe not utf-8 " * 100)
    unlicensed = tmp_path / "nolicense"
    unlicensed.mkdir()
    (unlicensed / "copyright").write_text("no license field here\n")
    (unlicensed / "README").write_text("A readme of a package with no license. " * 20)
    texts = rb.debian_texts(root=tmp_path)
    assert [t.origin for t in texts] == ["debian:somepkg/changelog.gz"]
    assert len(texts[0].text) == rb.MAX_CHARS
    assert texts[0].license == "MIT" and texts[0].channel == "document"


def _agent_files() -> ModuleType:
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "scripts/guards"))
    try:
        return importlib.import_module("agent_files")
    finally:
        sys.path.remove(str(ROOT / "scripts/guards"))


def test_agent_files_for_training_never_come_from_the_fourth_final_part() -> None:
    af = _agent_files()
    assert not set(af.TRAIN_PACKAGES) & set(af.FINAL4_PACKAGES)
    assert all(af.held_out(n) for n in af.FINAL4_PACKAGES)
    assert not any(af.held_out(n) for n in af.TRAIN_PACKAGES)
    ds = _dataset()
    items = ds.real_split("final4")
    packages = {it["id"].split(":", 1)[1].split("==")[0] for it in items if "==" in it["id"]}
    assert packages <= set(af.FINAL4_PACKAGES) and packages


def test_agent_files_are_read_from_an_sdist_by_path(tmp_path: Path) -> None:
    # An sdist (as pip downloads it) with agent files, other files, a license and PKG-INFO:
    # agent files are found by path wherever they sit, a CI workflow only if it names an
    # agent, tiny files and non-UTF-8 ones are skipped, a long one is cut at MAX_CHARS, and a
    # package whose metadata names no permissive license gives nothing.
    import io
    import tarfile

    af = _agent_files()

    def sdist(name: str, license_line: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        files = {
            "PKG-INFO": f"Metadata-Version: 2.4\nName: {name}\n{license_line}\n\nlong text",
            "AGENTS.md": "Run `make test` before you commit. " * 20,
            "sub/dir/CLAUDE.md": "x" * 50,
            ".github/workflows/claude-review.yml": "on: pull_request\n" * 30,
            ".github/workflows/main.yml": "on: push\n" * 40,
            ".cursor/rules/style.mdc": "Prefer small functions. " * 500,
            "docs/agents.md": "The Agent class runs a loop. " * 20,
            "README.md": "# pkg\n" + "A package. " * 40,
            "LICENSE": "MIT License ...",
            "bad/AGENTS.md": "\udcff",
        }
        with tarfile.open(folder / f"{name}-1.0.tar.gz", "w:gz") as t:
            for rel, text in files.items():
                data = text.encode("utf-8", "surrogateescape")
                info = tarfile.TarInfo(f"{name}-1.0/{rel}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))

    sdist("okpkg", "License-Expression: MIT")
    sdist("closed", "License: Proprietary")
    found = af.read({"okpkg": "1.0", "closed": "1.0"}, tmp_path)
    assert [(f.package, f.path) for f in found] == [
        ("okpkg", ".cursor/rules/style.mdc"),
        ("okpkg", ".github/workflows/claude-review.yml"),
        ("okpkg", "AGENTS.md"),
    ]
    assert len(found[0].text) == af.MAX_CHARS and found[0].license == "MIT"
    with_repo = af.read({"okpkg": "1.0"}, tmp_path, repo_files=2)
    extra = [f.path for f in with_repo if not af.agent_file(f.path)]
    assert len(extra) == 2 and "LICENSE" not in extra
    assert "MIT" in af.license_texts({"okpkg": "1.0"}, tmp_path)
