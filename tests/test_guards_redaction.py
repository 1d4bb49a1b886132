"""Masking and keyed hashing of what the guards found: labels, stability across runs and
formats, the key kept secret and required."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tether.core import TetherError
from tether.guards import HashKey, PiiDetector, SecretsDetector, redact, redact_each
from tether.guards.findings import Finding
from tether.guards.redaction import HASH_KEY_ENV

KEY = "k3y-for-tests-0123456789abcdef"
TEXT = "Refund jane.doe@example.com on card 4111 1111 1111 1111, she called from +1 212 555 0187."


def test_mask_replaces_each_value_with_its_kind() -> None:
    findings = PiiDetector().scan(TEXT)
    assert redact(TEXT, findings) == (
        "Refund <EMAIL_ADDRESS> on card <CREDIT_CARD>, she called from <PHONE_NUMBER>."
    )


def test_hash_is_stable_and_keyed() -> None:
    findings = PiiDetector().scan(TEXT)
    key = HashKey(KEY)
    once = redact(TEXT, findings, "hash", key=key)
    again = redact(TEXT, PiiDetector().scan(TEXT), "hash", key=HashKey(KEY))
    assert once == again
    assert "jane" not in once and "4111" not in once and "555" not in once
    labels = once.split("<")[1:]
    assert [label.split(":")[0] for label in labels] == [
        "EMAIL_ADDRESS",
        "CREDIT_CARD",
        "PHONE_NUMBER",
    ]
    other = redact(TEXT, findings, "hash", key=HashKey(KEY + "-other"))
    assert other != once  # another key, other labels: nobody without the key can link them


def test_hash_links_the_same_value_written_differently() -> None:
    key = HashKey(KEY)
    pii = PiiDetector()

    def label(text: str) -> str:
        [finding] = [f for f in pii.scan(text) if f.score >= 0.5]
        return key.label(finding.kind, text[finding.start : finding.end])

    assert label("card 4111 1111 1111 1111") == label("card 4111-1111-1111-1111")
    assert label("mail Jane.Doe@Example.com") == label("mail jane.doe@example.com")
    assert label("call (212) 555-0187") == label("call +1 212 555 0187")
    assert label("IBAN DE89 3704 0044 0532 0130 00") == label("IBAN DE89370400440532013000")
    assert label("card 4111 1111 1111 1111") != label("card 5555 5555 5555 4444")


@pytest.mark.parametrize(
    "disguised",
    [
        "card 4111\u200b1111\u200b1111\u200b1111 and sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "card 4111\u00a01111\u00a01111\u00a01111 and "
        "sk-proj-Ab3dEf6hIj9k\u2060Lm2nOp5qRs8tUv1wXy4z",
        "card \uff14\uff11\uff11\uff11 1111 1111 1111 and sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        # Escaped, as JSON written ASCII-only carries them and a verdict's evidence quotes them.
        r"card 4111\u200b1111\u200B1111\u200b1111 and "
        r"sk-proj-Ab3dEf6hIj9k\u2060Lm2nOp5qRs8tUv1wXy4z",
    ],
)
def test_invisible_and_fullwidth_characters_do_not_hide_a_value(disguised: str) -> None:
    """A card or key written with zero-width characters, no-break spaces or fullwidth digits
    inside (what an injected instruction can tell a model to write) reads as the value, yet
    was neither found nor masked."""
    findings = [*PiiDetector().scan(disguised), *SecretsDetector().scan(disguised)]
    assert {f.kind for f in findings} >= {"CREDIT_CARD", "OPENAI_API_KEY"}
    masked = redact(disguised, findings)
    assert masked == "card <CREDIT_CARD> and <OPENAI_API_KEY>"
    key = HashKey(KEY)
    plain = "card 4111 1111 1111 1111"
    [card] = [f for f in findings if f.kind == "CREDIT_CARD"]
    [plain_card] = PiiDetector().scan(plain)
    assert key.label("CREDIT_CARD", disguised[card.start : card.end]) == key.label(
        "CREDIT_CARD", plain[plain_card.start : plain_card.end]
    )
    assert key.label("EMAIL_ADDRESS", "jane\u200b@example.com") == key.label(
        "EMAIL_ADDRESS", "jane@example.com"
    )


def test_hash_label_is_stable_across_processes() -> None:
    code = (
        "from tether.guards import HashKey;"
        f"print(HashKey({KEY!r}).label('EMAIL_ADDRESS', 'jane@example.com'))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert outputs == {HashKey(KEY).label("EMAIL_ADDRESS", "jane@example.com")}
    assert len(outputs.pop()) == len("<EMAIL_ADDRESS:>") + 16


def test_the_key_never_shows() -> None:
    key = HashKey(KEY)
    assert KEY not in repr(key) and KEY not in str(key) and KEY not in f"{key!r} {key}"


def test_a_missing_or_short_key_is_a_clear_error() -> None:
    with pytest.raises(TetherError, match=HASH_KEY_ENV) as missing:
        HashKey.from_env({})
    assert missing.value.hint and "token_hex" in missing.value.hint
    with pytest.raises(TetherError, match="too short"):
        HashKey.from_env({HASH_KEY_ENV: "short"})
    assert HashKey.from_env({HASH_KEY_ENV: KEY}).label("X", "v") == HashKey(KEY).label("X", "v")


def test_overlapping_findings_are_replaced_as_one() -> None:
    text = "value: abcdef-123456 end"
    a = Finding("PASSWORD", 7, 20, 0.8)
    b = Finding("HIGH_ENTROPY_STRING", 14, 20, 0.6)
    assert redact(text, [a, b]) == "value: <PASSWORD> end"
    # Mixed actions on one merged span: masked, the stricter.
    assert redact_each(text, [(a, "hash"), (b, "mask")], key=HashKey(KEY)) == (
        "value: <PASSWORD> end"
    )


def test_secrets_and_pii_redacted_together() -> None:
    text = "user bob@example.com pass postgres://bob:Pa55-w0rd@db.example.com/x"
    findings = PiiDetector().scan(text) + SecretsDetector().scan(text)
    assert redact(text, findings) == (
        "user <EMAIL_ADDRESS> pass postgres://bob:<URL_PASSWORD>@db.example.com/x"
    )


def test_bad_calls() -> None:
    finding = Finding("EMAIL_ADDRESS", 0, 3, 1.0)
    with pytest.raises(ValueError, match="needs a HashKey"):
        redact("abc", [finding], "hash")
    with pytest.raises(ValueError, match="not a redaction"):
        redact("abc", [finding], "block")  # type: ignore[arg-type]
    assert redact("unchanged", []) == "unchanged"


def test_evidence_escaping_invisible_characters_is_still_masked() -> None:
    """A verdict's evidence writes invisible characters as ``\\u200b`` before the run masks
    what it quotes: a card written with zero-width spaces, quoted by a judge's reply, reached
    the trace as '4111\\u200b1111...', which no recognizer read as a card."""
    from tether.controls import PiiGuard
    from tether.controls.guard_base import safe_snippet, text_redactor

    redact_quotes = text_redactor([PiiGuard(action="mask")], None)
    assert redact_quotes is not None
    quoted = safe_snippet("FAIL: it gives the card 4111\u200b1111\u200b1111\u200b1111.")
    assert "\\u200b" in quoted
    assert redact_quotes(quoted) == "FAIL: it gives the card <CREDIT_CARD>."
