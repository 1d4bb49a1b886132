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
    ]
    seen: set[str] = set()
    for part in parts:
        assert not seen & set(part)
        seen |= set(part)
    assert set(ds.DEV_SOURCES) == seen - set(ds.TRAIN_SOURCES)


@pytest.mark.parametrize("part", ["final", "final2", "final3"])
def test_frozen_parts_are_unchanged(part: str) -> None:
    ds = _dataset()
    items = ds.real_split(part)
    assert items, f"no items for {part}"
    sources = {"final": ds.FINAL_SOURCES, "final2": ds.FINAL2_SOURCES, "final3": ds.FINAL3_SOURCES}
    assert {it["source"] for it in items} == set(sources[part])
    assert ds.digest(items) == ds.FROZEN[part]


def test_every_frozen_part_is_tested() -> None:
    assert set(_dataset().FROZEN) == {"final", "final2", "final3"}


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
