"""PII and secrets guards: Tether's one-pass detectors against Presidio's analyzer and
detect-secrets' detectors, on the same 2 KB and 20 KB texts, in one process.

Contenders (each call timed alone, wall clock and the thread's CPU time: on a shared machine
the wall p99 is mostly other processes taking the CPU, the CPU p99 what the code costs):

  tether pii        ``PiiDetector().scan(text)``: e-mail, phone, card (Luhn), IBAN (mod 97),
                    IP, US SSN/ITIN in one RE2 pass.
  tether secrets    ``SecretsDetector().scan(text)``: provider keys, private keys, JWTs,
                    bearer/basic credentials, connection-string passwords, entropy.
  tether stack      ``GuardStack().check(text, "user")``: both, plus the verdict and the
                    masked text (the default policy): what a guarded agent pays per text.
  tether re         the stack on Python's ``re`` instead of RE2 (the fallback engine).
  tether injection  ``InjectionDetector().scan(text, "user")``: normalization, rules and the
                    classifier (the prompt-injection guard's engine).
  tether full stack the injection scan and the stack on the same text: the whole input guard
                    stack of issue 13 (injection + PII + secrets), whose p99 target is 2 ms.
  presidio          Presidio's ``AnalyzerEngine`` configured offline as the ``presidio`` guard
                    does it: ``NoOpNlpEngine``, the predefined pattern recognizers, tldextract
                    on its bundled suffix list; ``analyze(text, language="en")``.
  detect-secrets    every default plugin's ``analyze_line`` on every line of the text, with
                    verification off (it would call the providers' APIs).
  presidio+ds       the two baselines on the same text: what Tether's stack replaces.
  tether stack, alone   the stack again, in rounds of its own: interleaved with Presidio and
                    spaCy, each of its calls starts with CPU caches full of theirs.

Texts are made here from templates (support tickets, e-mails, logs, config snippets) with
values in them, seeded, so every run measures the same texts. The process cannot open network
connections (``socket.connect`` raises): nothing may be fetched. Rounds interleave the
contenders; before timing, each contender runs on every text (warm-up, and its findings are
counted for the comparison table). Nothing is asserted about time: the figures are printed,
with the ratio of Tether's stack to the two baselines.

Usage::

    python benchmarks/guards_pii.py [--texts 40] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

TARGET_P99_MS = 2.0  # issue 13: the whole input guard stack, p99 on 2 KB


def _no_network(*_: object, **__: object) -> None:
    raise RuntimeError("benchmarks/guards_pii.py: network access attempted")


socket.socket.connect = _no_network  # type: ignore[assignment,method-assign]
socket.create_connection = _no_network  # type: ignore[assignment]

FIRST = ["Dana", "Luis", "Aiko", "Marta", "Tomasz", "Zoë", "Olu", "Priya", "Sven", "Chloé"]
LAST = ["Okafor", "Müller", "Tanaka", "García", "Nowak", "Dubois", "Singh", "Berg", "Rossi"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "beispiel.de", "exemple.fr"]
CARDS = ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"]
IBANS = ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "NL91 ABNA 0417 1643 00"]
PHONES = ["+1 (415) 555-0132", "+44 20 7946 0958", "(212) 555-0187", "+33 1 42 68 53 00"]
FILLER = [
    "Hi team, following up on yesterday's call: the vendor confirmed the new pricing applies "
    "from January, but only for annual contracts. Could someone from finance check whether our "
    "current agreement renews before or after that date? I'd rather not lock in the old rate.",
    "To reset the router, hold the button on the back for ten seconds until the light blinks "
    "orange, then wait about two minutes. If the light stays red, unplug it, wait thirty seconds "
    "and plug it back in; most connection problems clear up after that.",
    "Thanks for getting back to us so quickly. We have looked into the order history and can "
    "see that the parcel left our warehouse on Tuesday; the carrier's tracking shows it reached "
    "the regional hub yesterday afternoon, which usually means delivery within two business days.",
    "Our returns policy allows 30 days from delivery for unused items in their original "
    "packaging. Refunds go back to the original payment method within 5-7 business days of the "
    "item arriving at our returns centre; shipping costs are refunded only for faulty items.",
    "2026-11-23T09:14:03Z INFO worker-3 job=reindex batch=412 took=1834ms rows=50000 ok\n"
    "2026-11-23T09:14:05Z WARN worker-1 retry=2 upstream=inventory status=503 backoff=400ms\n",
    "Release 4.12.0 (build 20261120.3) fixes the export timeout, upgrades the PDF renderer to "
    "v2.8.1 and adds Spanish and Polish translations. See section 3.2 of the admin guide.",
    "The meeting moved to Thursday at 14:30 in room 4-112; the agenda covers Q4 capacity, the "
    "on-call rota, and the migration plan for the billing database (about 2.3 TB).",
]


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


def _paragraph(rng: random.Random) -> str:
    """Mostly ordinary text; one paragraph in four carries personal data or a credential."""
    if rng.random() < 0.75:
        return rng.choice(FILLER)
    name, email = _person(rng)
    order, day, amount = rng.randrange(10**5, 10**6), rng.randrange(1, 28), rng.randrange(20, 900)
    kind = rng.randrange(4)
    if kind == 0:
        return (
            f"Customer {name} ({email}) called from {rng.choice(PHONES)} about order #{order}; "
            f"she paid with card {rng.choice(CARDS)} on 2026-11-{day:02d} and asks for a "
            f"refund of ${amount}.99."
        )
    if kind == 1:
        return (
            f"Please wire the deposit to IBAN {rng.choice(IBANS)} and send the receipt to "
            f"{email}. My SSN for the tax form is 536-22-{rng.randrange(1000, 9999)}."
        )
    if kind == 2:
        token = "ghp_" + "".join(rng.choice("abcdefghijkLMNOPQRS0123456789") for _ in range(36))
        password = f"Pa55-{rng.randrange(99)}"
        return (
            f"Deploy notes: DATABASE_URL=postgres://app:{password}@db.internal:5432/app, "
            f"GITHUB_TOKEN={token}, region eu-west-1, host 10.20.{rng.randrange(255)}.7."
        )
    token = "".join(rng.choice("AbCdEf0123456789") for _ in range(40))
    return f"Authorization: Bearer {token}\nX-Request-Id: {rng.randrange(16**8):08x}"


def make_texts(count: int, size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 2 for p in parts) < size:
            parts.append(_paragraph(rng))
        text = "\n\n".join(parts)[:size]
        texts.append(text[: text.rfind(" ")] if " " in text else text)
    return texts


def _contenders() -> tuple[dict[str, Callable[[str], Any]], list[str]]:
    from tether.guards import GuardStack, InjectionDetector, PiiDetector, SecretsDetector
    from tether.guards.registry import guard_types

    pii, secrets, stack = PiiDetector(), SecretsDetector(), GuardStack()
    for warmable in (pii, secrets, stack):
        warmable.warm()
    injection = InjectionDetector()

    def full_stack(text: str) -> Any:
        return injection.scan(text, "user"), stack.check(text, "user")

    re_pii, re_secrets = PiiDetector(engine="re"), SecretsDetector(engine="re")

    def re_stack(text: str) -> Any:
        return re_pii.scan(text) + re_secrets.scan(text)

    contenders: dict[str, Callable[[str], Any]] = {
        "tether pii": pii.scan,
        "tether secrets": secrets.scan,
        "tether stack": lambda text: stack.check(text, "user"),
        "tether re": re_stack,
        "tether injection": lambda text: injection.scan(text, "user"),
        "tether full stack": full_stack,
    }
    missing = []
    try:
        from tether.guards.presidio import presidio_analyzer

        analyzer = presidio_analyzer()
        contenders["presidio"] = lambda text: analyzer.analyze(text=text, language="en")
    except Exception as exc:  # the dev venv has no Presidio: say so, measure the rest
        missing.append(f"presidio ({type(exc).__name__}: {exc})")
    assert "presidio" in guard_types()
    try:
        from detect_secrets.settings import default_settings, get_settings

        with default_settings():
            settings = get_settings()
            settings.disable_filters(
                "detect_secrets.filters.common.is_ignored_due_to_verification_policies"
            )
            from detect_secrets.settings import get_plugins

            plugins = get_plugins()

        def detect_secrets(text: str) -> list[Any]:
            found: list[Any] = []
            for number, line in enumerate(text.splitlines(), 1):
                for plugin in plugins:
                    found.extend(plugin.analyze_line("bench.txt", line, number))
            return found

        contenders["detect-secrets"] = detect_secrets
        if "presidio" in contenders:
            presidio = contenders["presidio"]
            contenders["presidio+ds"] = lambda text: (presidio(text), detect_secrets(text))
    except ImportError as exc:
        missing.append(f"detect-secrets ({exc})")
    return contenders, missing


def _kinds(name: str, result: Any) -> Counter[str]:
    """Findings per kind, for the table that shows both sides find the same things."""
    if name in ("tether pii", "tether secrets"):
        return Counter(f.kind for f in result if f.score >= 0.5)
    if name == "presidio":
        return Counter(r.entity_type for r in result if r.score >= 0.5)
    if name == "detect-secrets":
        return Counter(s.type for s in result)
    return Counter()


def measure(
    contenders: dict[str, Callable[[str], Any]], texts: list[str], rounds: int
) -> tuple[dict[str, list[int]], dict[str, list[int]], dict[str, Counter[str]]]:
    """Wall and CPU time per call, per contender, and the findings per kind."""
    kinds: dict[str, Counter[str]] = {}
    for name, run in contenders.items():
        counts: Counter[str] = Counter()
        for text in texts:
            counts += _kinds(name, run(text))
        kinds[name] = counts
    wall: dict[str, list[int]] = {name: [] for name in contenders}
    cpu: dict[str, list[int]] = {name: [] for name in contenders}
    order = list(contenders)
    for r in range(rounds):
        gc.collect()
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for text in texts:
            for name in rotated:
                run = contenders[name]
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                run(text)
                t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    # The stacks again with nothing between their calls: interleaved with Presidio and spaCy,
    # each of their calls starts with CPU caches full of theirs.
    for name in ("tether stack", "tether full stack"):
        alone = f"{name}, alone"
        wall[alone], cpu[alone] = [], []
        run = contenders[name]
        for _ in range(rounds):
            gc.collect()
            for text in texts:
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                run(text)
                t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                wall[alone].append(t1 - t0)
                cpu[alone].append(c1 - c0)
    return wall, cpu, kinds


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=40, help="texts per size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    contenders, missing = _contenders()
    load = os.getloadavg()
    report: dict[str, Any] = {"missing": missing, "sizes": {}, "load_before": load}
    for size, seed in ((2_000, 2), (20_000, 20)):
        texts = make_texts(args.texts, size, seed)
        wall, cpu, kinds = measure(contenders, texts, args.rounds)
        rows = {
            name: {
                "p50_ms": _pct(v, 0.5),
                "p99_ms": _pct(v, 0.99),
                "mean_ms": statistics.fmean(v) / 1e6,
                "cpu_p50_ms": _pct(cpu[name], 0.5),
                "cpu_p99_ms": _pct(cpu[name], 0.99),
                "calls": len(v),
            }
            for name, v in wall.items()
        }
        report["sizes"][size] = {"rows": rows, "kinds": {k: dict(c) for k, c in kinds.items()}}
    report["load_after"] = os.getloadavg()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    for note in missing:
        print(f"not measured (install with `make bench`): {note}")
    before, after = report["load_before"], report["load_after"]
    print(
        f"load average (1/5/15 min): {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} before, "
        f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} after"
    )
    for size, data in report["sizes"].items():
        rows = data["rows"]
        print(f"\n{size // 1000} KB texts ({args.texts} texts x {args.rounds} rounds)")
        print(f"{'':<20} {'wall time':^29} {'CPU time':^19}")
        print(
            f"{'contender':<20} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} "
            f"{'p50 ms':>9} {'p99 ms':>9}"
        )
        for name, row in rows.items():
            print(
                f"{name:<20} {row['p50_ms']:9.3f} {row['p99_ms']:9.3f} {row['mean_ms']:9.3f} "
                f"{row['cpu_p50_ms']:9.3f} {row['cpu_p99_ms']:9.3f}"
            )
        stack = rows["tether stack"]
        if "presidio+ds" in rows:
            base = rows["presidio+ds"]
            p50 = stack["p50_ms"] / base["p50_ms"]
            p99 = stack["p99_ms"] / base["p99_ms"]
            print(
                f"tether stack / (presidio + detect-secrets): p50 x{p50:.4f}, p99 x{p99:.4f} "
                f"({1 / p50:.0f}x / {1 / p99:.0f}x faster)"
            )
        if size == 2_000:
            for name in ("tether full stack", "tether full stack, alone"):
                for clock, key in (("wall", "p99_ms"), ("CPU", "cpu_p99_ms")):
                    met = "within" if rows[name][key] <= TARGET_P99_MS else "OVER"
                    print(
                        f"{name}, {clock} p99 {rows[name][key]:.3f} ms: {met} the 2 ms target "
                        "of the whole input stack (injection + PII + secrets)"
                    )
        print("findings per kind (score >= 0.5; detect-secrets: all):")
        for name, counts in data["kinds"].items():
            if counts:
                print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
