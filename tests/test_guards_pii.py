"""The PII guard on real-looking text: each recognizer's true positives and the hard negatives
next to them (a 16-digit number failing Luhn, an order id shaped like an SSN), on both regular
expression engines (RE2, and Python's ``re`` where RE2 cannot be installed)."""

from __future__ import annotations

import itertools

import pytest

from tether.guards.findings import Finding
from tether.guards.pii import PII_KINDS, PiiDetector

THRESHOLD = 0.5


@pytest.fixture(scope="module", params=["re2", "re"])
def pii(request: pytest.FixtureRequest) -> PiiDetector:
    return PiiDetector(engine=request.param)


def found(detector: PiiDetector, text: str, threshold: float = THRESHOLD) -> list[tuple[str, str]]:
    """(kind, value) of every finding at or over ``threshold``."""
    return [(f.kind, text[f.start : f.end]) for f in detector.scan(text) if f.score >= threshold]


TRUE_POSITIVES = [
    # (kind, the value as it must be found, the text around it)
    ("EMAIL_ADDRESS", "jane.doe+orders@example.co.uk", "Please reply to {} before Friday."),
    ("EMAIL_ADDRESS", "Zoë.Müller@beispiel.de", "Write to {} about the invoice."),
    ("EMAIL_ADDRESS", "o'brien@example.ie", "contact: {}"),
    ("EMAIL_ADDRESS", "sales@example.com", '<a href="mailto:{}">sales</a>'),
    ("EMAIL_ADDRESS", "ann.lee@example.com", "Email:{}."),
    ("EMAIL_ADDRESS", "jane_doe-99@sub.mail.example.org", "({})"),
    ("EMAIL_ADDRESS", "user@xn--mnchen-3ya.de", "{} is the punycode form"),
    ("PHONE_NUMBER", "+1-212-555-0187", "Call {} after 9am."),
    ("PHONE_NUMBER", "+33 1 42 68 53 00", "Our Paris office: {}."),
    ("PHONE_NUMBER", "+33\xa01\xa042\xa068\xa053\xa000", "Tel. {} (no-break spaces)"),
    ("PHONE_NUMBER", "+49 (0)30 901820", "mobile {}"),
    ("PHONE_NUMBER", "(212) 555-0187", "You can reach me at {} or by mail."),
    ("PHONE_NUMBER", "212.555.0187", "phone {}"),
    ("PHONE_NUMBER", "2125550187", "call me at {} tonight"),
    ("PHONE_NUMBER", "020 7946 0958", "Mobile: {}"),
    ("CREDIT_CARD", "4111 1111 1111 1111", "The card is {}, expiry 12/27."),
    ("CREDIT_CARD", "5555-5555-5555-4444", "mastercard {}"),
    ("CREDIT_CARD", "378282246310005", "amex {} on file"),
    ("CREDIT_CARD", "4111 1111 1111 1111", "visa: {} cvv 123"),
    ("CREDIT_CARD", "4111111111111111", "{}"),
    ("IBAN_CODE", "DE89 3704 0044 0532 0130 00", "Wire it to {} please."),
    ("IBAN_CODE", "FR14 2004 1010 0505 0001 3M02 606", "IBAN: {}"),
    ("IBAN_CODE", "NL91ABNA0417164300", "{}"),
    ("IBAN_CODE", "GB82 WEST 1234 5698 7654 32", "{} SORT"),
    ("IP_ADDRESS", "203.0.113.45", "The request came from {}:8080 at noon."),
    ("IP_ADDRESS", "10.0.0.0/8", "allow {} only"),
    ("IP_ADDRESS", "2001:db8::8a2e:370:7334", "host {} answered"),
    ("IP_ADDRESS", "::ffff:192.0.2.1", "mapped {} address"),
    ("US_SSN", "536-22-8841", "My SSN is {}."),
    ("US_SSN", "536 22 8841", "ssn: {}"),
    ("US_SSN", "536228841", "SSN {} (no dashes)"),
    ("US_ITIN", "912-70-1234", "ITIN {} for the tax form"),
]


@pytest.mark.parametrize(("kind", "value", "around"), TRUE_POSITIVES)
def test_finds_each_kind(pii: PiiDetector, kind: str, value: str, around: str) -> None:
    assert (kind, value) in found(pii, around.format(value))


HARD_NEGATIVES = [
    # 16 digits shaped like a card, failing the Luhn check.
    "Reference 4111 1111 1111 1112 is not a card.",
    "numbers 1234567812345678 and 4111111111111112",
    # A card number inside a longer digit run or id is not a card.
    "tracking 94111111111111111123 and SKU-4111111111111111",
    # Shaped like SSNs, but never issued: area 000, 666, 9xx-not-ITIN; group 00; serial 0000.
    "Order 666-12-3456, ticket 000-12-3456, badge 900-11-2222, ref 123-00-4567, lot 123-45-0000",
    # The SSA's published sample numbers.
    "the sample card shows 078-05-1120 and 219-09-9999",
    # Part of a longer dash-joined id.
    "order ORD-123-45-6789 and case 536-22-8841-A",
    # Mixed separators.
    "code 536-22.8841",
    # IBAN shapes with a wrong check digit, or an unknown country.
    "DE88 3704 0044 0532 0130 00 and XX89 3704 0044 0532 0130 00",
    # Not e-mail addresses: no real top-level domain, or a URL's user and password.
    "icon@2x.png, build@host.local, deploy@staging, npm i @scope/pkg@1.2.3",
    "postgres://app:s3cret@db.example.com/orders",
    # Not IP addresses: octets over 255, a dotted version in a longer run, leading zeros.
    "256.1.1.1 and 1.2.3.4.5 and 010.001.002.003",
    # Not IPv6: times, MAC addresses, C++ scopes.
    "at 12:30:45, MAC 00:1A:2B:3C:4D:5E, std::vector",
    # Not phone numbers: dates, prices, durations, ISBNs.
    "on 2024-11-03 for $1,249.99 in 14:32:10; ISBN 978-3-16-148410-0",
    # NANP numbers need a valid area code and exchange.
    "(123) 456-7890 and 212-111-4567",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives(pii: PiiDetector, text: str) -> None:
    assert found(pii, text) == []


def test_context_words_raise_weak_findings(pii: PiiDetector) -> None:
    # A bare 9-digit number is an SSN only when the text says so.
    assert found(pii, "The parcel weighs 536228841 grams") == []
    assert found(pii, "social security number: 536228841") == [("US_SSN", "536228841")]
    # A version number looks like an IP address; the word "version" lowers it.
    assert found(pii, "firmware version 10.4.0.2 is out") == []
    assert found(pii, "ping 10.4.0.2 now") == [("IP_ADDRESS", "10.4.0.2")]


def test_findings_are_ordered_spans_without_overlap(pii: PiiDetector) -> None:
    text = (
        "Hi, I'm Dana (dana@example.org, +1 415 555 0132). Card 5555 5555 5555 4444, "
        "IBAN GB82WEST12345698765432, SSN 536-22-8841, from 198.51.100.7."
    )
    findings = pii.scan(text)
    kinds = [f.kind for f in findings if f.score >= THRESHOLD]
    assert kinds == [
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
    ]
    for a, b in itertools.pairwise(findings):
        assert a.end <= b.start
    assert all(isinstance(f, Finding) and 0 < f.score <= 1 for f in findings)


def test_adjacent_values_are_all_found(pii: PiiDetector) -> None:
    text = "a@example.com,b@example.com;203.0.113.1,203.0.113.2"
    assert found(pii, text) == [
        ("EMAIL_ADDRESS", "a@example.com"),
        ("EMAIL_ADDRESS", "b@example.com"),
        ("IP_ADDRESS", "203.0.113.1"),
        ("IP_ADDRESS", "203.0.113.2"),
    ]


def test_offsets_are_character_offsets_in_non_ascii_text(pii: PiiDetector) -> None:
    text = "Grüße aus Köln — 日本語のテキスト — écrivez à zoë@exemple.fr ou au +33 1 42 68 53 00"
    result = found(pii, text)
    assert result == [("EMAIL_ADDRESS", "zoë@exemple.fr"), ("PHONE_NUMBER", "+33 1 42 68 53 00")]


def test_kinds_narrow_what_is_reported() -> None:
    text = "jane@example.com, 4111 1111 1111 1111"
    only_cards = PiiDetector(kinds=["CREDIT_CARD"])
    assert [f.kind for f in only_cards.scan(text)] == ["CREDIT_CARD"]
    with pytest.raises(ValueError, match="unknown PII kind"):
        PiiDetector(kinds=["PASSPORT"])


def test_detection_scores_by_its_most_confident_finding(pii: PiiDetector) -> None:
    detection = pii.detect("card 4111 1111 1111 1111 and ping 203.0.113.9")
    assert detection.guard == "pii"
    assert detection.score == max(f.score for f in detection.findings)
    assert detection.kinds == ("CREDIT_CARD", "IP_ADDRESS")
    assert pii.detect("nothing to see here").score == 0.0


def test_engines_agree_on_a_mixed_text() -> None:
    text = " ".join(a.format(v) for _, v, a in TRUE_POSITIVES) + " " + " ".join(HARD_NEGATIVES)
    assert PiiDetector(engine="re2").scan(text) == PiiDetector(engine="re").scan(text)
    assert set(PII_KINDS) == {kind for kind, _, _ in TRUE_POSITIVES}
