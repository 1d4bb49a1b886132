"""The real items (``guards_data/real``) and how they split by source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REAL = Path(__file__).resolve().parents[2] / "guards_data" / "real"

TRAIN_SOURCES = ("bastioncorpus", "bastionprobe", "nullsec-promptinject")
"""Real sources used as training seeds (their DAN-style items excepted)."""
DEV_SOURCES = (
    "agent-injection-bench",
    "hermes-jailbench",
    "inspect-evals/ipi_coding_agent",
    "inspect-evals/agent_threat_bench",
)
"""Real sources held out for evaluation: never seen in training or tuning."""


def load_real() -> list[dict[str, Any]]:
    """Every real item of every source."""
    items = []
    for path in sorted(REAL.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            items.extend(json.loads(line) for line in f if line.strip())
    return items


def real_split(split: str) -> list[dict[str, Any]]:
    """The real items of ``train`` (DAN family dropped) or ``dev`` sources."""
    sources = TRAIN_SOURCES if split == "train" else DEV_SOURCES
    items = [it for it in load_real() if it["source"] in sources]
    if split == "train":
        items = [it for it in items if not it["dan"]]
    return items
