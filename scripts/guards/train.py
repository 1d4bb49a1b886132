"""Train the injection classifier and its combiner; write the shipped model file.

The training documents (synthetic items from ``generate.build`` on the training carriers and
phrasings, plus the real items of the training sources) are shuffled and cut in three:
stage 1 (70%): a logistic regression over chunk features (``tether.guards.classifier``);
stage 2 (15%): the combiner, a logistic regression over [stage-1 max chunk logit, rule
categories, hidden, encoded, channel, rule category x indirect channel, log(1 + chunks)];
validation (15%): per-channel thresholds for a false-positive rate of ``--target-fpr``, on the
detector's final scores. The held-out sources (``dataset.DEV_SOURCES``) are never read here.
That is the shipped model's recipe (the defaults). Two options were tried on 2026-11-24 and
not shipped (docs/guards.md, "Candidates that were not shipped"):

``--real-benign validation|stages``: real benign tool outputs and documents read from the
installed packages (``real_benign``: source, config and documentation files, Debian's READMEs
and changelogs) join the validation part, where the target false-positive rate must hold on
them as on the synthetic negatives; with ``stages``, by package, half of them are negatives of
stage 1 and a fifth of stage 2, and only the packages stages 1 and 2 never saw set thresholds;
``--decisive``: rules of the attack-word categories that fire on at most
``--decisive-benign-rate`` of the training side's benign texts flag a tool output or document
on their own (thresholds at most ``MAX_THRESHOLD``, below a decisive hit's score);
``--stages-from MODEL`` keeps a model file's classifier and combiner and measures only the
decisive rules and the thresholds;
``--agent-files CACHE`` (candidate C, 2026-11-24): real files written for coding agents
(``agent_files.TRAIN_PACKAGES``: ``AGENTS.md``, ``CLAUDE.md``, Cursor rules), by package
stage-1 negatives each beside ``--planted`` copies with a generated payload inserted, or
validation negatives.

Needs scikit-learn (``pip install -e '.[guards-train]'``)::

    python scripts/guards/train.py [--n 6000] [--features 30000] [--out PATH]
        [--real-benign off|validation|stages] [--decisive] [--stages-from MODEL]
        [--agent-files CACHE [--planted 3]]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import agent_files
import generate
import numpy as np
import real_benign
from dataset import real_split
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

from tether.guards.classifier import TOKEN, Model, chunk_bounds, chunk_features, load_model
from tether.guards.injection import (
    CHANNELS,
    DECISIVE_CHANNELS,
    DECISIVE_SCORE,
    InjectionDetector,
)
from tether.guards.injection_rules import ATTACK_WORD_CATEGORIES, CATEGORIES, RULES
from tether.guards.normalize import normalize

DERIVED = frozenset(
    {
        "base64",
        "hex",
        "url",
        "tag_chars",
        "html_comment",
        "hidden_html",
        "attribute",
        "markdown_alt",
        "markdown_title",
        "markdown_comment",
    }
)
SAME_LENGTH = frozenset({"rot13", "leetspeak"})
# Thresholds stay below the score of a decisive hit, so a decisive rule flags on its own.
MAX_THRESHOLD = 0.9
assert MAX_THRESHOLD < DECISIVE_SCORE


def decisive_rules(
    hits: list[tuple[set[str], int]], max_benign_rate: float, min_attacks: int
) -> list[str]:
    """Rules of the attack-word categories that are precise on the training side: they fire on
    at most ``max_benign_rate`` of the benign texts (hard negatives and real files included)
    and on at least ``min_attacks`` attacks. ``hits``: (rules that fired, label) per text."""
    n_benign = sum(1 for _, label in hits if label == 0)
    out = []
    for rule in RULES:
        if rule.category not in ATTACK_WORD_CATEGORIES:
            continue
        fp = sum(1 for fired, label in hits if label == 0 and rule.name in fired)
        tp = sum(1 for fired, label in hits if label == 1 and rule.name in fired)
        if tp >= min_attacks and fp <= max_benign_rate * n_benign:
            out.append(rule.name)
        print(f"    rule {rule.name}: {tp} attacks, {fp} benign", file=sys.stderr)
    return sorted(out)


def threshold_at(negatives: list[float], target_fpr: float) -> float:
    """The lowest threshold that flags at most ``target_fpr`` of ``negatives`` (0.5 at least)."""
    neg = sorted(negatives, reverse=True)
    k = int(target_fpr * len(neg))
    return max(0.5, float(neg[k]) + 1e-4) if neg and k < len(neg) else 0.5


def chunk_examples(item: dict[str, Any]) -> list[tuple[list[str], int, str]]:
    """(chunk tokens, label, channel) of every view of one document (ambiguous chunks left out)."""
    text, label, channel = item["text"], item["label"], item["channel"]
    span = item.get("span")
    norm = normalize(text)
    out: list[tuple[list[str], int, str]] = []
    for view in norm.views:
        lowered = view.text.lower()
        found = [(m.group(0), m.start(), m.end()) for m in TOKEN.finditer(lowered)]
        tokens = [t for t, _, _ in found]
        bounds = chunk_bounds(len(tokens))
        if label == 0:
            out.extend((tokens[s:e], 0, channel) for s, e in bounds)
            # Short benign windows too: attacks are often short, and without these the model
            # learns "short" as a sign of attack.
            rng = random.Random(zlib.crc32(view.text[:64].encode("utf-8", "replace")))
            for _ in range(2 if len(tokens) > 12 else 0):
                n = rng.randint(4, 40)
                s0 = rng.randrange(0, max(1, len(tokens) - n))
                out.append((tokens[s0 : s0 + n], 0, channel))
            continue
        if span is None or (view.origin in DERIVED and view.start < span[1] and view.end > span[0]):
            # The whole view is (part of) the payload.
            if view.origin == "text" or view.origin in DERIVED:
                out.extend((tokens[s:e], 1, channel) for s, e in bounds)
            continue
        exact = (view.origin == "text" and norm.offsets_exact) or view.origin in SAME_LENGTH
        if not exact:
            continue
        inside = [span[0] <= a and b <= span[1] for _, a, b in found]
        n_payload = sum(inside)
        for s, e in bounds:
            k = sum(inside[s:e])
            if k == 0:
                if view.origin == "text":
                    out.append((tokens[s:e], 0, channel))
            elif k >= min(n_payload, 8) or k >= 0.5 * (e - s):
                out.append((tokens[s:e], 1, channel))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--features", type=int, default=30000)
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument(
        "--out",
        default=str(
            Path(__file__).resolve().parents[2] / "src/tether/guards/injection_model.json.gz"
        ),
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--C2", type=float, default=1.0, help="the combiner's C")
    parser.add_argument(
        "--decisive-benign-rate",
        type=float,
        default=0.001,
        help="with --decisive: a rule is decisive if it fires on at most this share of benign "
        "training texts",
    )
    parser.add_argument(
        "--stages-from",
        default=None,
        help="take the classifier and the combiner from this model file (measure only the "
        "decisive rules and the thresholds)",
    )
    parser.add_argument(
        "--real-benign",
        choices=("off", "validation", "stages"),
        default="off",
        help="real benign files of the installed packages: not read (the shipped model), "
        "for the thresholds only, or also as negatives of stages 1 and 2 (by package)",
    )
    parser.add_argument(
        "--decisive",
        action="store_true",
        help="measure decisive rules (a hit flags a tool output or document on its own)",
    )
    parser.add_argument(
        "--real-benign-scale", type=int, default=1, help="how many real benign texts (x the caps)"
    )
    parser.add_argument(
        "--agent-files",
        type=Path,
        default=None,
        metavar="CACHE",
        help="real agent-addressed repository files (agent_files.py; sdists cached in CACHE): "
        "by package, stage-1 negatives each beside planted copies, or validation negatives",
    )
    parser.add_argument(
        "--planted", type=int, default=3, help="with --agent-files: planted copies of each file"
    )
    args = parser.parse_args()
    t0 = time.time()
    real = real_split("train")
    seeds = [it["text"] for it in real if it["label"] == 1]
    synthetic = generate.build(args.n, dev=False, seed=args.seed, seeds=seeds)
    docs = synthetic + [dict(it, span=None) for it in real]
    rng = random.Random(args.seed)
    rng.shuffle(docs)
    cut1, cut2 = int(0.7 * len(docs)), int(0.85 * len(docs))
    # stage 1 (the classifier), stage 2 (the combiner), validation (the thresholds): three
    # disjoint parts of the training side; no held-out source is read.
    stage1, stage2, validation = docs[:cut1], docs[cut1:cut2], docs[cut2:]
    # Real benign tool outputs and documents (installed files, never a held-out source). With
    # --real-benign stages, by package, half are negatives of stage 1, a fifth of stage 2,
    # and the rest (packages the classifier never saw) join the validation part that sets the
    # thresholds; with --real-benign validation they all join it. The shipped classifier,
    # trained on synthetic carriers only, scores a quarter to a third of such files at 0.9 or
    # more, which no threshold can undo (docs/guards.md).
    real_texts = real_benign.texts(args.real_benign_scale) if args.real_benign != "off" else []
    real_neg = []
    for t in real_texts:
        d = {"text": t.text, "channel": t.channel, "label": 0, "span": None}
        part = zlib.crc32(t.origin.split("/")[0].encode()) % 10
        if args.real_benign == "stages" and part < 5:
            stage1.append(d)
        elif args.real_benign == "stages" and part < 7:
            stage2.append(d)
        else:
            real_neg.append(d)
    if real_texts:
        print(f"real benign texts: {len(real_texts)}, {time.time() - t0:.0f}s", file=sys.stderr)
    # Real files written for coding agents (AGENTS.md, CLAUDE.md, CI prompts...), never of a
    # held-out package: by package, seven tenths are stage-1 negatives, each beside
    # ``--planted`` copies of itself with a generated payload inserted (the paired positives
    # of the synthetic carriers), so the classifier learns the planted instruction rather than
    # the file type; the rest are validation negatives (thresholds), held out by package.
    agent_texts = (
        agent_files.read(agent_files.TRAIN_PACKAGES, args.agent_files) if args.agent_files else []
    )
    n_planted = 0
    prng = random.Random(args.seed + 1)
    for f in agent_texts:
        d = {"text": f.text, "channel": "tool_output", "label": 0, "span": None}
        if zlib.crc32(f.package.encode()) % 10 < 7:
            stage1.append(d)
            for _ in range(args.planted):
                payload, _meta = generate._payload(prng, False, seeds)
                text, span = generate._insert(f.text, payload, prng)
                stage1.append({"text": text, "channel": "tool_output", "label": 1, "span": span})
                n_planted += 1
        else:
            real_neg.append(d)
    if agent_texts:
        print(
            f"agent files: {len(agent_texts)} of {len({f.package for f in agent_texts})} "
            f"packages, {n_planted} planted copies",
            file=sys.stderr,
        )
    print(f"{len(docs)} documents ({len(real)} real), {time.time() - t0:.0f}s", file=sys.stderr)

    fired: list[tuple[set[str], int]] = []
    if args.stages_from:
        # Stages 1 and 2 as a model file has them (the shipped classifier and combiner): only
        # the decisive rules and the thresholds are measured again. The file's weights came
        # from the same pipeline, but its README carriers depend on the venv it ran in.
        model = load_model(args.stages_from)
        combiner = model.meta["combiner"]
        weights = model.weights
        trained = dict(model.meta.get("trained") or {})
        stages = dict(trained.get("stages_from") or trained)  # the run that fit the stages
        n_chunks = int(stages.get("chunks", 0))
        det = InjectionDetector(
            model=Model(model.weights, model.bias, model.channel_bias, {"combiner": combiner})
        )
        for d in stage2:
            v = det.scan(d["text"], d["channel"])
            fired.append(({e.name for e in v.evidence if e.kind == "rule"}, d["label"]))
        print(f"stages 1 and 2 from {args.stages_from}", file=sys.stderr)
    else:
        examples = [ex for d in stage1 for ex in chunk_examples(d)]
        feats = [chunk_features(tokens) for tokens, _, _ in examples]
        y = np.array([label for _, label, _ in examples])
        print(f"{len(examples)} chunks, {y.sum()} positive", file=sys.stderr)
        # Keep the features seen in at least 3 chunks, then the strongest after a first fit.
        df: dict[str, int] = {}
        for f in feats:
            for k in f:
                df[k] = df.get(k, 0) + 1
        vocab = {k: i for i, k in enumerate(sorted(k for k, v in df.items() if v >= 3))}
        n_ch = len(CHANNELS)

        def matrix(
            rows: list[dict[str, float]], channels: list[str], vocab: dict[str, int]
        ) -> csr_matrix:
            data, ind, ptr = [], [], [0]
            for f, ch in zip(rows, channels, strict=True):
                for k, v in f.items():
                    j = vocab.get(k)
                    if j is not None:
                        ind.append(j)
                        data.append(v)
                ind.append(len(vocab) + CHANNELS.index(ch))
                data.append(1.0)
                ptr.append(len(ind))
            return csr_matrix((data, ind, ptr), shape=(len(rows), len(vocab) + n_ch))

        channels = [ch for _, _, ch in examples]
        X = matrix(feats, channels, vocab)
        clf = LogisticRegression(
            C=args.C, max_iter=2000, class_weight="balanced", solver="liblinear"
        )
        clf.fit(X, y)
        coef = clf.coef_[0]
        names = sorted(vocab, key=lambda k: -abs(coef[vocab[k]]))[: args.features]
        vocab = {k: i for i, k in enumerate(sorted(names))}
        X = matrix(feats, channels, vocab)
        clf = LogisticRegression(
            C=args.C, max_iter=2000, class_weight="balanced", solver="liblinear"
        )
        clf.fit(X, y)
        coef = clf.coef_[0]
        weights = {k: round(float(coef[i]), 4) for k, i in vocab.items() if abs(coef[i]) >= 1e-3}
        channel_bias = {ch: round(float(coef[len(vocab) + i]), 4) for i, ch in enumerate(CHANNELS)}
        model = Model(weights, round(float(clf.intercept_[0]), 4), channel_bias)
        print(f"stage 1: {len(weights)} weights, {time.time() - t0:.0f}s", file=sys.stderr)

        # Stage 2 on held-out training documents: what the detector sees, combined.
        det = InjectionDetector(model=model)
        pair_names = [f"{ch}:{c}" for ch in ("tool_output", "document") for c in CATEGORIES]

        def features(d: dict[str, Any]) -> list[float]:
            v = det.scan(d["text"], d["channel"])
            fired.append(({e.name for e in v.evidence if e.kind == "rule"}, d["label"]))
            clf_logit = (
                max(
                    math.log(max(e.score, 1e-9) / max(1 - e.score, 1e-9))
                    for e in v.evidence
                    if e.kind == "classifier"
                )
                if any(e.kind == "classifier" for e in v.evidence)
                else -10.0
            )
            cats = set(v.categories)
            return (
                [clf_logit]
                + [float(c in cats) for c in CATEGORIES]
                + [float("hidden_content" in cats), float("encoded_content" in cats)]
                + [float(d["channel"] == c) for c in CHANNELS]
                + [
                    float(p.split(":")[1] in cats and d["channel"] == p.split(":")[0])
                    for p in pair_names
                ]
                + [
                    math.log1p(
                        len(chunk_bounds(len(TOKEN.findall(normalize(d["text"]).text.lower()))))
                    )
                ]
            )

        X2 = np.array([features(d) for d in stage2])
        y2 = np.array([d["label"] for d in stage2])
        comb = LogisticRegression(C=args.C2, max_iter=5000)
        comb.fit(X2, y2)
        w = comb.coef_[0]
        k0 = 3 + len(CATEGORIES) + len(CHANNELS)
        combiner = {
            "bias": round(float(comb.intercept_[0]), 4),
            "clf": round(float(w[0]), 4),
            "categories": {c: round(float(w[1 + i]), 4) for i, c in enumerate(CATEGORIES)},
            "hidden": round(float(w[1 + len(CATEGORIES)]), 4),
            "encoded": round(float(w[2 + len(CATEGORIES)]), 4),
            "channel": {
                c: round(float(w[3 + len(CATEGORIES) + i]), 4) for i, c in enumerate(CHANNELS)
            },
            "pairs": {p: round(float(w[k0 + i]), 4) for i, p in enumerate(pair_names)},
            "length": round(float(w[k0 + len(pair_names)]), 4),
        }
        print(f"stage 2: {len(stage2)} documents, {time.time() - t0:.0f}s", file=sys.stderr)
        n_chunks = len(examples)
        stages = {}

    # Decisive rules, measured on every document of the training side and every real benign
    # text (the rules learn nothing, so the more benign text they are tried on the better).
    extra: dict[str, Any] = {}
    if args.decisive:
        for d in stage1 + validation + real_neg:
            v = det.scan(d["text"], d["channel"])
            fired.append(({e.name for e in v.evidence if e.kind == "rule"}, d["label"]))
        decisive = decisive_rules(fired, args.decisive_benign_rate, min_attacks=3)
        print(f"decisive rules: {decisive}, {time.time() - t0:.0f}s", file=sys.stderr)
        extra = {"decisive_rules": decisive, "decisive_channels": list(DECISIVE_CHANNELS)}
    cap = MAX_THRESHOLD if args.decisive else 0.95

    # Thresholds on the validation part and the real benign texts, scored by the detector
    # exactly as shipped (the strong-category floors and the decisive rules included): the
    # target false-positive rate holds on the synthetic negatives and on the real ones alike.
    model.meta = {"combiner": combiner, "thresholds": dict.fromkeys(CHANNELS, 0.5), **extra}
    det = InjectionDetector(model=model)
    scored = [
        (det.scan(d["text"], d["channel"]).score, d["label"], d["channel"]) for d in validation
    ]
    real_scored = [(det.scan(d["text"], d["channel"]).score, d["channel"]) for d in real_neg]
    thresholds = {}
    for ch in CHANNELS:
        neg = [p for p, lab, c in scored if lab == 0 and c == ch]
        rneg = [p for p, c in real_scored if c == ch]
        t = max(threshold_at(neg, args.target_fpr), threshold_at(rneg, args.target_fpr))
        thresholds[ch] = round(min(t, cap), 4)
        pos = [p for p, lab, c in scored if lab == 1 and c == ch]
        rec = sum(p >= thresholds[ch] for p in pos) / max(len(pos), 1)
        fpr = sum(p >= thresholds[ch] for p in neg) / max(len(neg), 1)
        rfpr = sum(p >= thresholds[ch] for p in rneg) / max(len(rneg), 1)
        print(
            f"  {ch}: threshold {thresholds[ch]}, validation recall {rec:.3f} FPR {fpr:.3f} "
            f"({len(pos)} pos, {len(neg)} neg)"
            + (f"; real benign FPR {rfpr:.3f} ({len(rneg)})" if real_texts else ""),
            file=sys.stderr,
        )
    model.meta = {
        "combiner": combiner,
        "thresholds": thresholds,
        **extra,
        "trained": {
            "documents": len(docs),
            "chunks": n_chunks,
            **({"stages_from": stages} if args.stages_from else {}),
            "synthetic": len(synthetic),
            "real_train_items": len(real),
            "C": args.C,
            "C2": args.C2,
            "target_fpr": args.target_fpr,
            **({"decisive_benign_rate": args.decisive_benign_rate} if args.decisive else {}),
            **(
                {
                    "real_benign": args.real_benign,
                    "real_benign_scale": args.real_benign_scale,
                    "real_benign_texts": {
                        ch: sum(1 for d in real_neg if d["channel"] == ch)
                        for ch in DECISIVE_CHANNELS
                    },
                }
                if real_texts
                else {}
            ),
            **({"agent_files": len(agent_texts), "planted": n_planted} if agent_texts else {}),
            "features": len(weights),
            "seed": args.seed,
        },
    }
    raw = json.dumps(
        model.to_json(), ensure_ascii=False, sort_keys=True, separators=(",", ":")
    ).encode()
    with open(args.out, "wb") as f:
        f.write(gzip.compress(raw, mtime=0))
    print(f"wrote {args.out} ({len(raw) // 1024} KB raw), {time.time() - t0:.0f}s", file=sys.stderr)
    print(json.dumps(combiner, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
