"""The synthetic injection dataset: payloads inserted into benign carriers, with paired negatives.

Each item: ``{"id", "split", "channel", "label", "text", "span", "meta"}`` where ``span`` is the
``[start, end)`` of the payload in ``text`` (``None`` for a negative). Every carrier that gets a
payload is also emitted without it (the paired negative), and hard-negative sentences are
inserted into carriers the same way payloads are, so that "something was inserted" is not a
signal. ``split`` is ``train`` or ``dev``; the two never share a carrier source, a payload
phrasing or a hard-negative sentence.

Real items from the training-side sources (``dataset.TRAIN_SOURCES``) are used as seeds: they
are inserted into carriers like the generated payloads.

Usage (writes nothing by default; the training and eval scripts call ``build``)::

    python scripts/guards/generate.py --out /tmp/synthetic.jsonl [--n 4000]
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

import benign
import benign_rich
import carriers
from payloads import DEV_GOALS, make_payload, obfuscate

Item = dict[str, Any]
CHANNELS = ("user", "tool_output", "document")


def _insert(carrier: str, payload: str, rng: random.Random) -> tuple[str, tuple[int, int]]:
    """``payload`` inserted at a random line or sentence boundary of ``carrier``."""
    cuts = [0, len(carrier)]
    for i, ch in enumerate(carrier):
        if ch == "\n" or (ch == " " and i > 0 and carrier[i - 1] in ".!?:;"):
            cuts.append(i + 1)
    at = rng.choice(cuts)
    sep_l = "" if at == 0 else rng.choice([" ", "\n", "\n\n"])
    sep_r = "" if at == len(carrier) else rng.choice([" ", "\n", "\n\n"])
    text = carrier[:at] + sep_l + payload + sep_r + carrier[at:]
    start = at + len(sep_l)
    return text, (start, start + len(payload))


def _json_insert(
    rng: random.Random, payload: str, doc_line: str
) -> tuple[str, str, tuple[int, int]]:
    """A JSON tool result with ``payload`` as (part of) one string field, and the same without."""
    mark = "@@PAYLOAD@@"
    base = benign.record(rng, doc_line)
    obj = json.loads(base)
    strings: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and len(v) > 20:
                    strings.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(obj)
    if not strings:
        obj["note"] = mark
    else:
        holder, key = rng.choice(strings)
        holder[key] = holder[key] + " " + mark if rng.random() < 0.7 else mark
    indent = rng.choice([None, 2])
    with_mark = json.dumps(obj, ensure_ascii=False, indent=indent)
    escaped = json.dumps(payload, ensure_ascii=False)[1:-1]
    at = with_mark.index(mark)
    text = with_mark.replace(mark, escaped)
    clean = json.dumps(json.loads(base), ensure_ascii=False, indent=indent)
    return text, clean, (at, at + len(escaped))


class CarrierPool:
    """Benign carriers of one split."""

    def __init__(self, dev: bool) -> None:
        texts = carriers.dependency_carriers() if dev else carriers.stdlib_carriers()
        self.dev = dev
        self.docs = [c.text for c in texts if c.kind == "doc"]
        self.code = [c.text for c in texts if c.kind == "code"]
        extra = carriers.readme_carriers(dev) + ([] if dev else carriers.pydoc_carriers())
        self.readmes = [c.text for c in extra] or self.docs

    def document(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.25:
            return rng.choice(self.docs)
        if r < 0.4:
            return rng.choice(self.readmes)
        if r < 0.45:
            return benign.policy_doc(rng)
        if r < 0.5:
            return benign.memory_entry(rng)
        if r < 0.55:
            return benign.email(rng)
        return benign_rich.document(rng, self.dev)[0]

    def tool_output(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.2:
            return rng.choice(self.code)
        if r < 0.3:
            return benign.email(rng)
        if r < 0.42:
            return benign.record(rng, rng.choice(self.docs).split("\n", 1)[0])
        if r < 0.5:
            return rng.choice(self.docs if rng.random() < 0.5 else self.readmes)
        return benign_rich.tool_output(rng, self.dev)[0]

    def user(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.15:
            return benign.short_request(rng)
        if r < 0.45:
            return benign.user_request(
                rng,
                rng.choice(self.docs)[:1500],
                rng.choice(self.docs)[:800],
                rng.choice(self.code)[:1500],
            )
        return benign_rich.user_task(rng, self.dev)

    def coding(self, rng: random.Random, channel: str) -> tuple[str, bool]:
        """A carrier a coding agent reads, and whether it is code or config (where text is
        put in comments)."""
        if channel == "document":
            if rng.random() < 0.6:
                return benign_rich.readme(rng, self.dev), False
            return rng.choice(self.readmes), False
        r = rng.random()
        if r < 0.25:
            return rng.choice(self.code), True
        if r < 0.45:
            return benign_rich.code_file(rng, self.dev), True
        if r < 0.6:
            return benign_rich.config_file(rng, self.dev), True
        if r < 0.8:
            return benign_rich.issue(rng, self.dev), False
        if r < 0.9:
            return benign_rich.code_review(rng, self.dev), False
        return benign_rich.ticket(rng, self.dev), False


def _as_comment(text: str, rng: random.Random) -> str:
    """``text`` as a comment of a code or config file (most of the time)."""
    if rng.random() < 0.3:
        return text
    mark = rng.choice(["# ", "// ", "-- "])
    return "\n".join(mark + line for line in text.split("\n"))


def _hard_negative(rng: random.Random, dev: bool) -> str:
    r = rng.random()
    if r < 0.55:
        return benign.hard_negative(rng, dev)
    if r < 0.85:
        return benign_rich.dev_hard_negative(rng, dev)
    return benign_rich.security_doc(rng, dev)


def _payload(rng: random.Random, dev: bool, seeds: list[str]) -> tuple[str, dict[str, str]]:
    if seeds and rng.random() < 0.2:
        return rng.choice(seeds), {
            "goal": "seed",
            "technique": "seed",
            "lang": "?",
            "obfuscation": "none",
        }
    text, meta = make_payload(rng, dev)
    text, how = obfuscate(text, rng)
    meta["obfuscation"] = how
    return text, meta


def build(n: int, dev: bool, seed: int, seeds: list[str] | None = None) -> list[Item]:
    """``n`` carriers with a payload, each with its paired negative, plus ``n // 2`` carriers
    with a hard negative inserted and ``n // 4`` plain carriers."""
    rng = random.Random(seed)
    pool = CarrierPool(dev)
    split = "dev" if dev else "train"
    seeds = seeds or []
    items: list[Item] = []

    def add(
        channel: str, label: int, text: str, span: tuple[int, int] | None, meta: dict[str, str]
    ) -> None:
        items.append(
            {
                "id": f"syn-{split}-{len(items):06d}",
                "split": split,
                "channel": channel,
                "label": label,
                "text": text,
                "span": list(span) if span else None,
                "meta": meta,
            }
        )

    for _ in range(n):
        channel = rng.choice(CHANNELS)
        payload, meta = _payload(rng, dev, seeds)
        if channel == "user" and rng.random() < 0.5:
            add(channel, 1, payload, (0, len(payload)), meta)
            add(channel, 0, pool.user(rng), None, {"carrier": "user"})
            continue
        if meta["technique"] == "dev_task" or (meta["goal"] in DEV_GOALS and rng.random() < 0.5):
            carrier, is_code = pool.coding(rng, channel)
            if is_code:
                payload = _as_comment(payload, rng)
            text, span = _insert(carrier, payload, rng)
            clean = carrier
        elif channel == "tool_output" and rng.random() < 0.3:
            text, clean, span = _json_insert(rng, payload, rng.choice(pool.docs)[:80])
        else:
            carrier = getattr(pool, channel)(rng)
            text, span = _insert(carrier, payload, rng)
            clean = carrier
        add(channel, 1, text, span, meta)
        add(channel, 0, clean, None, {"carrier": channel})
    for _ in range(n // 2):
        channel = rng.choice(CHANNELS)
        sentence = _hard_negative(rng, dev)
        if channel == "user" and rng.random() < 0.5:
            add(channel, 0, sentence, None, {"carrier": "hard_negative"})
            continue
        if channel != "user" and rng.random() < 0.4:
            carrier, is_code = pool.coding(rng, channel)
            if is_code:
                sentence = _as_comment(sentence, rng)
        else:
            carrier = getattr(pool, channel)(rng)
        text, _span = _insert(carrier, sentence, rng)
        add(channel, 0, text, None, {"carrier": "hard_negative_inserted"})
    # Coding carriers as they are (paired only with themselves): most of what a coding agent
    # reads holds no attack.
    for _ in range(n // 4):
        channel = rng.choice(("tool_output", "document"))
        add(channel, 0, pool.coding(rng, channel)[0], None, {"carrier": "coding"})
    for _ in range(n // 4):
        channel = rng.choice(CHANNELS)
        add(channel, 0, getattr(pool, channel)(rng), None, {"carrier": "plain"})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--dev", action="store_true")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    with open(args.out, "w", encoding="utf-8") as f:
        for item in build(args.n, args.dev, args.seed):
            f.write(json.dumps(item, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
