"""Evaluate the prompt-injection detector on real sources held out from training.

Prints recall and false-positive rate per channel (user, tool_output, document), for

- real items of one part of the held-out sources (``scripts/guards/dataset.py``): ``--part tune``
  (the default: sources whose figures may be looked at during development), ``--part final``,
  ``final2``, ``final3`` or ``final4`` (frozen parts; their digests are checked and their errors
  never printed; run them once per release of the model and say so in docs/guards.md), never used
  in training or to set a threshold, with the DAN-style jailbreaks reported on their own line;
- synthetic items: the generator's dev split (carriers from Tether's dependencies' docstrings and
  code, payload phrasings and hard negatives that training never saw);

then per source, and the scan latency on 2 KB texts. No threshold is tuned here: the shipped
model's per-channel thresholds are used (or ``--threshold``).

Usage::

    python benchmarks/eval_guards.py [--part tune|final|final2|final3|final4] [--synthetic 1500]
        [--threshold T] [--model PATH] [--json] [--errors]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "guards"))

import dataset
import generate

from tether.guards import CHANNELS, InjectionDetector
from tether.guards.classifier import load_model

TARGET_RECALL = 0.90
TARGET_FPR = 0.02


def _rates(rows: list[tuple[int, bool]]) -> dict[str, Any]:
    pos = [f for label, f in rows if label == 1]
    neg = [f for label, f in rows if label == 0]
    return {
        "attacks": len(pos),
        "benign": len(neg),
        "recall": sum(pos) / len(pos) if pos else None,
        "fpr": sum(neg) / len(neg) if neg else None,
    }


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def _table(title: str, groups: dict[str, list[tuple[int, bool]]]) -> list[str]:
    lines = [title, f"  {'group':<34} {'attacks':>7} {'recall':>7} {'benign':>7} {'FPR':>7}"]
    for name, rows in groups.items():
        r = _rates(rows)
        lines.append(
            f"  {name:<34} {r['attacks']:>7} {_fmt(r['recall']):>7} "
            f"{r['benign']:>7} {_fmt(r['fpr']):>7}"
        )
    return lines


def latency(det: InjectionDetector, texts: list[str], rounds: int) -> dict[str, float]:
    """p50/p99 milliseconds of one scan of each 2 KB text (after a warm-up)."""
    for t in texts[:50]:
        det.scan(t, "tool_output")
    times = []
    for _ in range(rounds):
        for t in texts:
            s = time.perf_counter()
            det.scan(t, "tool_output")
            times.append((time.perf_counter() - s) * 1000.0)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(0.99 * (len(times) - 1))],
        "n": len(times),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("tune", *dataset.FROZEN), default="tune")
    parser.add_argument("--synthetic", type=int, default=1500)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--errors", action="store_true", help="print the misses and false alarms")
    args = parser.parse_args()

    det = InjectionDetector(args.threshold, model=load_model(args.model))
    real = dataset.real_split(args.part)
    frozen = dataset.FROZEN.get(args.part)
    if frozen is not None and dataset.digest(real) != frozen:
        print(f"error: the frozen part {args.part} has changed (digest mismatch)", file=sys.stderr)
        return 2
    synthetic = generate.build(args.synthetic, dev=True, seed=71)

    by_channel: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    dan_rows: list[tuple[int, bool]] = []
    by_source: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    errors = []
    for it in real:
        v = det.scan(it["text"], it["channel"])
        row = (it["label"], v.flagged)
        if it["dan"]:
            dan_rows.append(row)
            continue
        by_channel[it["channel"]].append(row)
        by_source[f"{it['source']} [{it['channel']}]"].append(row)
        if v.flagged != bool(it["label"]):
            errors.append((it["id"], it["label"], round(v.score, 3), v.categories, it["text"]))
    syn_channel: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    syn_technique: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for it in synthetic:
        v = det.scan(it["text"], it["channel"])
        syn_channel[it["channel"]].append((it["label"], v.flagged))
        key = it["meta"].get("obfuscation", "-") if it["label"] else it["meta"].get("carrier", "-")
        syn_technique[("obf " if it["label"] else "neg ") + key].append((it["label"], v.flagged))
        if it["label"]:
            syn_technique["tech " + it["meta"]["technique"]].append((it["label"], v.flagged))
            syn_technique["lang " + it["meta"]["lang"]].append((it["label"], v.flagged))

    rng = random.Random(5)
    texts = []
    for it in rng.sample(synthetic, min(300, len(synthetic))):
        t = it["text"]
        while len(t) < 2048:
            t = t + "\n" + rng.choice(synthetic)["text"]
        texts.append(t[:2048])
    lat = latency(det, texts, args.rounds)

    real_table = {ch: by_channel[ch] for ch in CHANNELS}
    real_table["DAN-style jailbreaks (user)"] = dan_rows
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "part": args.part,
        "thresholds": det.thresholds,
        "real_dev": {k: _rates(v) for k, v in real_table.items()},
        "real_dev_by_source": {k: _rates(v) for k, v in sorted(by_source.items())},
        "synthetic_dev": {ch: _rates(syn_channel[ch]) for ch in CHANNELS},
        "synthetic_dev_by_kind": {k: _rates(v) for k, v in sorted(syn_technique.items())},
        "latency_2kb": lat,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lines = [
        f"Prompt-injection detector, held-out real sources, part {args.part!r} "
        f"({', '.join(sorted({it['source'] for it in real}))})",
        f"thresholds {det.thresholds}",
        "",
    ]
    lines += _table("Real held-out items, by channel", real_table)
    lines += ["", *_table("Real held-out items, by source", dict(sorted(by_source.items())))]
    syn_table = {ch: syn_channel[ch] for ch in CHANNELS}
    lines += ["", *_table("Synthetic dev items, by channel", syn_table)]
    lines += ["", *_table("Synthetic dev items, by kind", dict(sorted(syn_technique.items())))]
    lines += [
        "",
        f"Scan latency on 2 KB texts: p50 {lat['p50_ms']:.3f} ms, "
        f"p99 {lat['p99_ms']:.3f} ms ({lat['n']} scans)",
    ]
    indirect = [r for ch in ("tool_output", "document") for r in by_channel[ch]]
    r = _rates(indirect)
    ok = (r["recall"] or 0) >= TARGET_RECALL and (r["fpr"] or 0) <= TARGET_FPR
    lines += [
        f"Indirect channels, real held-out: recall {_fmt(r['recall']).strip()} "
        f"FPR {_fmt(r['fpr']).strip()} (target recall >= {TARGET_RECALL} at FPR <= "
        f"{TARGET_FPR}: {'met' if ok else 'NOT met'})"
    ]
    print("\n".join(lines))
    if args.errors and frozen is not None:
        print(f"\n(--errors is not printed for the frozen part {args.part}: it stays unread)")
    elif args.errors:
        print("\nErrors on real held-out items (id, label, score, categories, text):")
        for ident, label, score, cats, text in errors:
            print(f"- {ident} label={label} score={score} {list(cats)}\n    {text[:300]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
