"""The injection rules' matches on generated texts, to compare two versions of the rules.

Texts come from the payload generator (``generate.build``: payloads inserted into carriers,
paired negatives, hard negatives), train and dev splits. For each text, every
``(rule, start, end)`` that ``match_rules`` finds is written, one JSON line per text; run it
with the rules before and after a change (``PYTHONPATH`` pointing at each version) and compare
the two files with ``--compare``.

Usage::

    PYTHONPATH=src python scripts/guards/rule_matches.py --texts 400000 --out /tmp/after.jsonl
    python scripts/guards/rule_matches.py --compare /tmp/before.jsonl /tmp/after.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def _texts(count: int, seed: int) -> list[str]:
    import generate

    out: list[str] = []
    # ``build(n)`` gives about 3 n items; train and dev splits alternate.
    round_ = 0
    while len(out) < count:
        n = min(20_000, max(1, (count - len(out)) // 3 + 1))
        items = generate.build(n, dev=round_ % 2 == 1, seed=seed + round_)
        out += [item["text"] for item in items]
        round_ += 1
    return out[:count]


def _write(count: int, seed: int, out: Path) -> None:
    from tether.guards.injection_rules import match_rules

    with out.open("w", encoding="utf-8") as f:
        for text in _texts(count, seed):
            hits = sorted((h.rule, h.start, h.end) for h in match_rules(text, limit=10_000))
            f.write(json.dumps(hits) + "\n")


def _compare(before: Path, after: Path) -> int:
    gained: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    texts = 0
    with before.open(encoding="utf-8") as a, after.open(encoding="utf-8") as b:
        for line_a, line_b in zip(a, b, strict=True):
            texts += 1
            old = {tuple(h) for h in json.loads(line_a)}
            new = {tuple(h) for h in json.loads(line_b)}
            for rule, *_span in old - new:
                lost[rule] += 1
            for rule, *_span in new - old:
                gained[rule] += 1
    print(f"{texts:,} texts; matches lost by rule: {dict(lost)}; gained: {dict(gained)}")
    return 0 if not lost and not gained else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return _compare(*args.compare)
    if args.out is None:
        parser.error("--out or --compare")
    _write(args.texts, args.seed, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
