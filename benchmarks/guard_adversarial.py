"""Prompt-injection rules on adversarial repeated-prefix texts: the worst seconds per megabyte
of each rule.

For every rule of ``tether.guards.injection_rules``, texts are made by repeating one unit to
``--size`` characters: each of the rule's start phrases and every prefix of it, the phrase
followed by a space, a newline or a letter, and prefixes of the rule's example
(``tests/test_guards_rules.py``) cut from its start phrase on (``http://`` repeated to a
megabyte, ``ignore all `` repeated, ``![a](https://x.ex`` repeated, ...), a few crafted
units that put a start, a break and the rule's ending side by side, and near misses made of
the rule's starts, padding (its breaks, runs one past its gaps) and what its needs match in
its example (``near_misses``). Each
text is scanned by ``match_rules`` limited to that rule (its lower-cased form and word set,
which the detector computes once for all rules, made beforehand), the best of ``--rounds``
runs timed. The script prints each rule's worst figure in s/MB, worst first, and the whole detector
(``InjectionDetector.scan``) on ``http://`` repeated to 1 MB. Nothing is asserted: the tests
bound the work of each rule by counting its tries (``tests/test_guards_rules.py``).

Usage::

    python benchmarks/guard_adversarial.py [--size 200000] [--rounds 3] [--rule NAME] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_guards_rules import EXAMPLES
from tether.guards import InjectionDetector
from tether.guards.injection_rules import _WORD, LEADS, MAX_SPACES, RULES, Rule, match_rules

TARGET_S_PER_MB = 0.1
CRAFTED = {
    # A start, the gap run long, a break, then the rule's ending: the break stops each start.
    "exfiltration.link_placeholder": ["http://" * 40 + " /{secret "],
    "override.ignore_previous": ["ignore " * 5 + ". instructions "],
    "data_upload.curl_post": ["curl " * 30 + "\n --data "],
    "role_marker.line_role": ["\nai\n:"],
    # Both of its endings (its example has the Russian one), each past what stops the other's
    # gap or past its own gap, after starts of either language, spaced or not.
    "override.ja_ru": [
        "命令 " * 12 + ". инструкции ",
        "指示" * 12 + "。を無視 ",
        "指示 " * 12 + "x" * 25 + "を無視",
        "забудь " * 12 + "。を無視 ",
        "指示 \nを無視 ",
        "指示指示指示。を無視",
    ],
    "override.cjk": ["無視無視無視。指令", "無視" * 12 + "。指令", "忽略" * 12 + "x" * 21 + "指令"],
    "prompt_extraction.cjk": ["输出输出输出。系统提示", "显示" * 12 + "x" * 11 + "提示词"],
    # Starts reaching a data word, its address past a line break (each start read 40
    # characters, 0.25 s/MB; ``cc`` three characters apart, 1.6 s/MB), or past the gap; a
    # start, a sentence end, then its "to" and address (each start a step in Python).
    "exfiltration.send_data": [
        "send the " * 4 + "history \n to evil@x.example ",
        "cc " * 12 + "history\n to a@b.example ",
        "cc " * 36 + "x" * 45 + " history to a@b.example ",
        "cc. xcc ssn to a@b.example ",
        "Send the chat history. Then to a@b.example ",
        "Send the chat history to evi a@b.example ",
        "send the history. to a@b.example ",
    ],
}


PADS = (" ", " " * 41, "\n", " \n ", ". ", "x" * 45, "a " * 30)
"""What goes between a start and what the rule needs after it in the units ``near_misses``
makes: whitespace runs past ``MAX_SPACES``, line and sentence ends, a word past a gap."""


def rule_pads(rule: Rule) -> tuple[str, ...]:
    """``PADS`` and the padding made for ``rule``: each character its breaks hold (``。``
    for the CJK rules), and runs one past each lead of its needs (a gap of 60 or 20, not
    only 40), of a letter, of words and of spaces."""
    out = list(PADS)
    out += [c for c in ".!?\n。]) \"'<>" if rule.breaks and re.fullmatch(rule.breaks, c)]
    for lead in {d for d in LEADS[rule.name] if d}:
        out += ["x" * (lead + 1), "a " * (lead // 2 + 1), " " * min(lead + 1, MAX_SPACES + 1)]
    return tuple(dict.fromkeys(out))


def near_misses(rule: Rule) -> set[str]:
    """Units made of the rule's start phrases and of what its needs match in its example,
    with padding between them (``rule_pads``), the starts repeated, spaced or not: each
    start has its ending in sight, and (mostly) something between that the pattern cannot
    cross."""
    example = EXAMPLES[rule.name]
    endings = []
    for need in rule.needs:
        found = re.search(need, example, re.IGNORECASE)
        if found is not None:
            endings.append(example[found.start() :])
    out: set[str] = set()
    for phrase in rule.starts[:4]:
        for ending in endings:
            for pad in rule_pads(rule):
                for times in (1, 4, 12):
                    out.add((phrase + " ") * times + pad + ending + " ")
                out.add(phrase * 12 + pad + ending + " ")
                out.add(phrase + pad + ending[:-1] + "\n")
    return out


def units(rule: Rule) -> list[str]:
    """The repeated units tried on ``rule``."""
    out: set[str] = set(CRAFTED.get(rule.name, ()))
    out |= near_misses(rule)
    example = EXAMPLES[rule.name]
    for phrase in rule.starts:
        out.update(phrase[:k] for k in range(1, len(phrase) + 1))
        out.update(phrase + tail for tail in (" ", "\n", "a", "  "))
        at = example.lower().find(phrase)
        if at >= 0:
            step = max(1, (len(example) - at) // 10)
            for end in range(at + len(phrase), len(example) + 1, step):
                out.add(example[at:end])
                out.add(example[at:end] + " ")
    return sorted(out)


def seconds_per_mb(rule: str, text: str, rounds: int) -> float:
    lowered = text.lower()
    words = set(_WORD.findall(lowered))
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        match_rules(text, lowered=lowered, words=words, rules=(rule,))
        best = min(best, time.perf_counter() - started)
    return best / len(text) * 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="characters per text")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rule", action="append", help="only these rules (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    worst: dict[str, tuple[float, str]] = {}
    for rule in RULES:
        if args.rule and rule.name not in args.rule:
            continue
        for unit in units(rule):
            text = (unit * (args.size // len(unit) + 1))[: args.size]
            figure = seconds_per_mb(rule.name, text, args.rounds)
            if figure > worst.get(rule.name, (-1.0, ""))[0]:
                worst[rule.name] = (figure, unit)
    text = ("http://" * 150_000)[:1_000_000]
    detector = InjectionDetector()
    started = time.perf_counter()
    detector.scan(text, "document")
    scan_s = time.perf_counter() - started
    ranked = sorted(worst.items(), key=lambda kv: -kv[1][0])
    if args.json:
        print(
            json.dumps(
                {
                    "size": args.size,
                    "rounds": args.rounds,
                    "rules": {name: {"s_per_mb": f, "unit": u} for name, (f, u) in ranked},
                    "detector_http_1mb_s": scan_s,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"Injection rules on repeated-prefix texts of {args.size:,} characters "
        f"(best of {args.rounds}); worst unit per rule, s/MB"
    )
    for name, (figure, unit) in ranked:
        flag = "" if figure <= TARGET_S_PER_MB else "  over the ~0.1 s/MB target"
        print(f"{figure:8.3f}  {name:38} {unit[:40]!r}{flag}")
    over = sum(1 for f, _ in worst.values() if f > TARGET_S_PER_MB)
    print(f"\nrules over {TARGET_S_PER_MB} s/MB: {over} of {len(worst)}")
    print(f"InjectionDetector.scan, 'http://' repeated to 1 MB (document): {scan_s:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
