"""Texts no guard may choke on: empty, 10 MB, binary, NUL bytes, lone surrogates, and 100 KB
adversarial strings fed to every recognizer (each gets a verdict, none backtracks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from re import _parser as sre_parse  # sre_parse, deprecated under its old name

import pytest

from tether.guards import GuardsPolicy, GuardStack, PiiDetector, SecretsDetector, pii, secrets

TESTS = Path(__file__).resolve().parent
HANG_DEADLINE_S = 600
"""Not a performance bound (the battery takes seconds): a recognizer that backtracks takes
hours on these strings, and this turns that into a failure instead of a hung test run."""


def test_every_recognizer_survives_adversarial_strings() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", "fakes.adversarial"],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    recognizers = len(pii.RECOGNIZERS) + len(secrets.RECOGNIZERS)
    assert report["scans"] == report["texts"] * (recognizers + 4)
    assert report["findings"] > 0  # the mixed text holds real values


def _unbounded_repeats_nested(pattern: str) -> list[str]:
    """Repeats without an upper bound that sit inside another unbounded repeat: the shape
    that backtracks exponentially in Python's ``re``."""
    problems: list[str] = []

    def walk(items: sre_parse.SubPattern | list, inside_unbounded: bool) -> None:
        for op, arg in items:
            if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT):
                _low, high, body = arg
                unbounded = high == sre_parse.MAXREPEAT
                if unbounded and inside_unbounded:
                    problems.append(str(body))
                walk(body, inside_unbounded or unbounded)
            elif op is sre_parse.SUBPATTERN:
                walk(arg[-1], inside_unbounded)
            elif op is sre_parse.BRANCH:
                for branch in arg[1]:
                    walk(branch, inside_unbounded)
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                walk(arg[1], inside_unbounded)

    walk(sre_parse.parse(pattern), False)
    return problems


@pytest.mark.parametrize(
    "recognizer",
    [*pii.RECOGNIZERS, *secrets.RECOGNIZERS],
    ids=lambda r: r.kind,
)
def test_no_pattern_nests_unbounded_repeats(recognizer: object) -> None:
    pattern = recognizer.pattern("re")  # type: ignore[attr-defined]
    assert _unbounded_repeats_nested(pattern) == []


def test_the_nesting_check_can_fail() -> None:
    assert _unbounded_repeats_nested(r"(?:a+b?)+c") != []
    assert _unbounded_repeats_nested(r"(?:ab{1,9}){1,5}c+") == []


@pytest.fixture(scope="module")
def guards() -> GuardStack:
    policy = GuardsPolicy.model_validate(
        {"guards": [{"guard": "pii", "action": "mask"}, {"guard": "secrets", "action": "mask"}]}
    )
    return GuardStack(policy)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00" * 1000,
        "a\x00b jane@exa\x00mple.com \x00",
        "\ud800",
        "\udfff\ud800 jane@example.com \udc80",
        "\ufeff\u200b\u202e jane@example.com",
        bytes(range(256)).decode("latin-1") * 40,
    ],
    ids=["empty", "nuls", "nul-inside", "surrogate", "surrogates-around", "invisible", "binary"],
)
def test_odd_texts_get_a_verdict(guards: GuardStack, text: str) -> None:
    verdict = guards.check(text, "user")
    assert verdict.errors == ()
    for f in verdict.findings:
        assert 0 <= f.start < f.end <= len(text)
    if verdict.redacted is not None:
        assert len(verdict.redacted) <= len(text) + 40 * len(verdict.findings)


def test_surrogates_stay_where_they_were(guards: GuardStack) -> None:
    text = "\ud800 mail jane@example.com \udc80"
    verdict = guards.check(text, "user")
    assert verdict.redacted == "\ud800 mail <EMAIL_ADDRESS> \udc80"


def test_ten_megabytes(guards: GuardStack) -> None:
    block = (
        "Ticket 4471: Dana (dana@example.org) paid with 4111 1111 1111 1111 from 198.51.100.7. "
        "Nothing else to report; the courier called twice and left a note at reception. " * 4
    )
    repeats = 10_000_000 // len(block) + 1
    text = (block * repeats)[:10_000_000]
    verdict = guards.check(text, "document")
    kinds = [f.kind for f in verdict.findings]
    assert kinds.count("EMAIL_ADDRESS") >= 4 * (repeats - 1)
    assert kinds.count("CREDIT_CARD") == kinds.count("EMAIL_ADDRESS")
    assert verdict.redacted is not None and "dana@" not in verdict.redacted


def test_detectors_scan_binary_and_non_ascii_consistently() -> None:
    key = "AKIA" + "Q3ZJ7XK2P9RT4MWB"
    text = "é" * 1000 + " zoë@exemple.fr " + "\x00" * 10 + "漢" * 1000 + f" {key}"
    pii_found = PiiDetector().scan(text)
    secrets_found = SecretsDetector().scan(text)
    assert [text[f.start : f.end] for f in pii_found] == ["zoë@exemple.fr"]
    assert [text[f.start : f.end] for f in secrets_found] == [key]


def test_threads_share_one_stack(guards: GuardStack) -> None:
    texts = [
        f"order {i}: mail user{i}@example.com, card 4111 1111 1111 1111, key AKIA"
        + "Q3ZJ7XK2P9RT4MW"
        + "ABCDEFGHIJ"[i % 10]
        + " é漢 " * (i % 7)
        for i in range(200)
    ]
    expected = [guards.check(t, "user").redacted for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda t: guards.check(t, "user").redacted, texts))
    assert got == expected
    assert all(r is not None and "@" not in r and "AKIA" not in r for r in got)
