"""Adversarial texts for the guards' recognizers: 100 KB of what makes a backtracking regular
expression slow (a prefix repeated without its completion, a long run of a pattern's
characters with no valid end, separators in every position), and a runner that feeds each
one to each recognizer alone and to the whole detectors, on both engines.

Run as ``python -m fakes.adversarial`` (from ``tests/``); it prints one JSON line with what it
scanned and exits 0. ``tests/test_guards_bad_input.py`` runs it in a child process with a
deadline, so that a recognizer that backtracks fails the test instead of hanging it."""

from __future__ import annotations

import json
import random
import sys

SIZE = 100_000


def _fill(unit: str, tail: str = "") -> str:
    return (unit * (SIZE // max(1, len(unit)) + 1))[: SIZE - len(tail)] + tail


def adversarial_texts() -> dict[str, str]:
    rng = random.Random(7)
    binary = bytes(rng.randrange(256) for _ in range(SIZE)).decode("latin-1")
    return {
        "letters": _fill("a"),
        "digits": _fill("1"),
        "digits-spaces": _fill("1 "),
        "digits-dashes": _fill("1-"),
        "digits-dots": _fill("1."),
        "octets": _fill("255."),
        "plus-digits": _fill("+1 "),
        "parens": _fill("(1"),
        "card-groups": _fill("4111 "),
        "iban-head": _fill("DE89 "),
        "iban-run": "DE89" + _fill("A"),
        "at-signs": _fill("a@"),
        "local-dots": _fill("a.") + "@",
        "domain-dots": "a@" + _fill("a."),
        "colons": _fill(":"),
        "hex-colons": _fill("f:"),
        "digit-colons": _fill("1:"),
        "sk": _fill("sk-"),
        "sk-ant": _fill("sk-ant-api03-"),
        "sk-long": "sk-" + _fill("a"),
        "akia": _fill("AKIA"),
        "ghp": _fill("ghp_"),
        "xoxb": _fill("xoxb-1-"),
        "pem-headers": _fill("-----BEGIN PRIVATE KEY-----"),
        "pem-open": "-----BEGIN RSA PRIVATE KEY-----\n" + _fill("QUJD\n"),
        "dashes": _fill("-"),
        "eyj": _fill("eyJ"),
        "eyj-long": "eyJ" + _fill("a", "."),
        "eyj-dots": _fill("eyJhbGciOi."),
        "password": _fill("password="),
        "password-open": "password = '" + _fill("x"),
        "bearer": _fill("bearer "),
        "bearer-long": "Bearer " + _fill("a"),
        "basic-long": "Basic " + _fill("QUJD"),
        "schemes": _fill("postgres://"),
        "userinfo": _fill("a://b:"),
        "userinfo-long": "a://" + _fill("b", ":"),
        "entropy-run": _fill("Zx8Qm2Lp9Rt4Vw7Ny3Kb"),
        "path": _fill("ab/"),
        "accountkey": _fill("AccountKey="),
        "nbsp-digits": _fill("1\u00a0"),
        "non-ascii": _fill("é漢"),
        "nul": _fill("\x00"),
        "binary": binary,
        "surrogates": _fill("\ud800a"),
        "mixed": _fill("jane@example.com 4111 1111 1111 1111 sk-proj-abc 10.0.0.1 "),
    }


def main() -> None:
    from tether.guards import PiiDetector, SecretsDetector, pii, secrets
    from tether.guards.scanner import PatternScanner

    texts = adversarial_texts()
    scans = 0
    findings = 0
    # Each recognizer alone on RE2 (what runs); the whole detectors, which hold every
    # recognizer, on both engines (Python's re is the fallback where RE2 cannot be installed).
    for recognizer in (*pii.RECOGNIZERS, *secrets.RECOGNIZERS):
        scanner = PatternScanner([recognizer], "re2")
        for text in texts.values():
            findings += len(scanner.scan(text))
            scans += 1
    for engine in ("re2", "re"):
        for detector in (PiiDetector(engine=engine), SecretsDetector(engine=engine)):  # type: ignore[arg-type]
            for text in texts.values():
                for f in detector.scan(text):
                    assert 0 <= f.start < f.end <= len(text), f
                    findings += 1
                scans += 1
    json.dump({"texts": len(texts), "scans": scans, "findings": findings}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
