"""Personal data in text: e-mail addresses, phone numbers, payment card numbers, IBANs, IP
addresses, US Social Security and taxpayer numbers.

The recognizers are those of Presidio's pattern recognizers (``EmailRecognizer``,
``PhoneRecognizer``, ``CreditCardRecognizer``, ``IbanRecognizer``, ``IpRecognizer``,
``UsSsnRecognizer``) with the same validations (Luhn, IBAN mod 97, the SSA's issuing rules, a
real top-level domain), plus ITINs, run in one pass of one regular expression
(:mod:`tether.guards.scanner`): some 50-100x faster than Presidio's analyzer on the same text
(``benchmarks/guards_pii.py``). For Presidio itself, with its NLP recognizers (names,
locations) when a spaCy model is installed, see :mod:`tether.guards.presidio`.

Scores: 0.9-1.0 for values with a check digit or a strict format (card, IBAN, e-mail), 0.6-0.7
for formatted phone numbers, SSNs and IP addresses, 0.3-0.4 for bare digit runs that only a
context word ("phone", "ssn" just before) raises past the usual 0.5 threshold.
"""

from __future__ import annotations

from collections.abc import Callable

from tether.guards import checks
from tether.guards.findings import Finding
from tether.guards.scanner import PatternDetector, Recognizer

# Look-arounds shared by the number recognizers: not inside a longer number, word, version
# (1.2.3), id (ORD-123-45-6789) or e-mail address.
_NUM_BEFORE = r"[^A-Za-z0-9_\-.+/@]"
_NUM_AFTER = r"[^A-Za-z0-9_\-@.,/]|[.,/](?:$|[^0-9])"
_PHONE_BEFORE = r"[^A-Za-z0-9_\-.+/@(]"
_SEP = " .\\-\u00a0\u2009\u202f"
"""Separators of a phone number's groups: space, dot, hyphen, no-break and thin spaces (as
French typography writes +33 1 42 68 53 00), spelled as the characters themselves so that both
regular-expression engines read them."""

_VERSION_WORDS = ("version", "release", "firmware", "build", "upgrade", "oid")
_CARD_CONTEXT = ("card", "credit", "visa", "mastercard", "amex", "discover", "cc ", "payment")
_PHONE_CONTEXT = (
    "phone",
    "tel:",
    "tel.",
    "tel ",
    "call",
    "mobile",
    "cell",
    "fax",
    "sms",
    "text me",
    "whatsapp",
    "ring",
)
_SSN_CONTEXT = ("ssn", "social security", "social sec", "itin", "taxpayer", "tax id", "tin ")


def _groups(value: str) -> list[str]:
    """Digit groups of a formatted number (``4111 1111`` -> ``["4111", "1111"]``)."""
    out: list[str] = []
    current = ""
    for c in value:
        if c in checks.DIGITS:
            current += c
        elif current:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _trim_to(
    text: str, found: Finding, ok: Callable[[str], bool], min_groups: int
) -> Finding | None:
    """The longest prefix of ``found`` made of whole digit groups whose digits pass ``ok``
    (``4111 1111 1111 1111 123``: a card number followed by a code)."""
    value = text[found.start : found.end]
    ends = [
        i + 1
        for i, c in enumerate(value)
        if c in checks.DIGITS and (i + 1 == len(value) or value[i + 1] not in checks.DIGITS)
    ]
    for count in range(len(ends), min_groups - 1, -1):
        prefix = value[: ends[count - 1]]
        if ok(checks.digits_only(prefix)):
            return Finding(found.kind, found.start, found.start + len(prefix), found.score)
    return None


def _check_card(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    separators = {c for c in value if c not in checks.DIGITS}
    if len(separators) > 1:
        return None
    groups = _groups(value)
    if separators and (len(groups[0]) != 4 or any(len(g) > 6 for g in groups)):
        return None
    if not separators:
        return found if checks.card_number_ok(value) else None
    return _trim_to(text, found, checks.card_number_ok, 3)


def _check_iban(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    length = checks.IBAN_LENGTHS.get(value[:2])
    if length is None:
        return None
    kept = 0
    for i, c in enumerate(value):
        if c not in " -":
            kept += 1
            if kept == length:
                end = i + 1
                break
    else:
        return None
    rest = value[end : end + 2]
    # The cut must fall between groups: "DE89 3704 0044 0532 0130 00 ABC" keeps the IBAN.
    if rest and rest[0] not in " -":
        return None
    iban = value[:end].replace(" ", "").replace("-", "")
    if not checks.iban_ok(iban):
        return None
    return Finding(found.kind, found.start, found.start + end, found.score)


def _check_ssn(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    if len({c for c in value if c not in checks.DIGITS}) > 1:
        return None  # 123-45.6789: mixed separators
    kind = checks.ssn_kind(checks.digits_only(value))
    if kind is None:
        return None
    return found if kind == found.kind else Finding(kind, found.start, found.end, found.score)


def _check_e164(text: str, found: Finding) -> Finding | None:
    return _trim_to(text, found, checks.e164_ok, 1)


def _check_nanp(text: str, found: Finding) -> Finding | None:
    digits = checks.digits_only(text[found.start : found.end])
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    return found if checks.nanp_ok(digits) else None


def _check_national(text: str, found: Finding) -> Finding | None:
    digits = checks.digits_only(text[found.start : found.end])
    return found if 9 <= len(digits) <= 11 and len(set(digits)) > 2 else None


def _check_ipv4(text: str, found: Finding) -> Finding | None:
    address = text[found.start : found.end].split("/", 1)[0]
    return found if checks.ipv4_ok(address) else None


def _check_ipv6(text: str, found: Finding) -> Finding | None:
    address = text[found.start : found.end].split("/", 1)[0]
    return found if checks.ipv6_ok(address) else None


_URL_LOOKBACK = 256


def _check_email(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    local, _, domain = value.partition("@")
    stripped = local.lstrip(".+-%'")
    if not stripped or len(stripped) > 64 or stripped.endswith(".") or ".." in stripped:
        return None
    start = found.start + len(local) - len(stripped)
    labels = domain.split(".")
    if any(not 0 < len(label) < 64 or label[0] == "-" or label[-1] == "-" for label in labels):
        return None
    if not checks.domain_ok(domain):
        return None
    # ``user:password@host`` in a URL is a credential (the secrets guard's), not an address.
    before = text[max(0, start - _URL_LOOKBACK) : start]
    token = before[max(before.rfind(" "), before.rfind("\n"), before.rfind("\t")) + 1 :]
    if before.endswith(":") and "://" in token:
        return None
    return Finding(found.kind, start, found.end, found.score)


RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        "CREDIT_CARD",
        r"[2-6][0-9]{3}(?:[ \-]?[0-9]){8,18}",
        0.9,
        before=_NUM_BEFORE,
        after=_NUM_AFTER,
        check=_check_card,
        context=_CARD_CONTEXT,
        context_boost=0.1,
    ),
    Recognizer(
        "IBAN_CODE",
        r"[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,34}",
        0.9,
        before="[^A-Za-z0-9]",
        after="[^A-Za-z0-9]",
        check=_check_iban,
        context=("iban", "bank", "account", "transfer", "sepa"),
        context_boost=0.1,
    ),
    Recognizer(
        "US_SSN",
        r"[0-9]{3}[ \-.][0-9]{2}[ \-.][0-9]{4}",
        0.6,
        before=_NUM_BEFORE,
        after=_NUM_AFTER,
        check=_check_ssn,
        context=_SSN_CONTEXT,
    ),
    Recognizer(
        "PHONE_NUMBER",
        r"\+[1-9](?:[" + _SEP + r"]?\(?[0-9]{1,6}\)?){1,8}",
        0.7,
        before="[^A-Za-z0-9_+]",
        after="[^A-Za-z0-9_@0-9.,/]|[.,/](?:$|[^0-9])",
        check=_check_e164,
        context=_PHONE_CONTEXT,
    ),
    Recognizer(
        "PHONE_NUMBER",
        r"(?:1[ .\-]?)?(?:\([2-9][0-9]{2}\)[ .\-]?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-]"
        r"[0-9]{4}",
        0.7,
        before=_PHONE_BEFORE,
        after=_NUM_AFTER,
        check=_check_nanp,
        context=_PHONE_CONTEXT,
    ),
    Recognizer(
        "PHONE_NUMBER",
        r"0[1-9][0-9]{1,4}[" + _SEP + r"/][0-9]{3,4}[" + _SEP + r"]?[0-9]{2,4}",
        0.4,
        before=_PHONE_BEFORE,
        after=_NUM_AFTER,
        check=_check_national,
        context=_PHONE_CONTEXT,
    ),
    Recognizer(
        "IP_ADDRESS",
        r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?:/[0-9]{1,2})?",
        0.6,
        before="[^A-Za-z0-9_.:]",
        after="[^A-Za-z0-9_.]|\\.(?:$|[^0-9])",
        check=_check_ipv4,
        against=_VERSION_WORDS,
    ),
    Recognizer(
        "IP_ADDRESS",
        r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{0,35}(?:\.[0-9]{1,3}){0,3}"
        r"(?:%[0-9A-Za-z]{1,15})?(?:/[0-9]{1,3})?",
        0.6,
        before="[^A-Za-z0-9_:.]",
        after="[^A-Za-z0-9_:.]|\\.(?:$|[^0-9])",
        check=_check_ipv6,
    ),
    Recognizer(
        "EMAIL_ADDRESS",
        r"[A-Za-z0-9._%+'\-{U}]{1,64}@[A-Za-z0-9\-{U}]{1,63}(?:\.[A-Za-z0-9\-{U}]{1,63}){1,10}",
        0.9,
        before="[^A-Za-z0-9_%+'\\-{U}]",
        after="[^A-Za-z0-9_\\-{U}]|\\.(?:$|[^A-Za-z0-9{U}])",
        check=_check_email,
        context=("email", "e-mail", "mail"),
        context_boost=0.1,
    ),
    # Last, so that a 9- or 10-digit run that is part of something else is taken by that.
    Recognizer(
        "US_SSN",
        r"[0-9]{9}",
        0.05,
        before=_NUM_BEFORE,
        after=_NUM_AFTER,
        check=_check_ssn,
        context=_SSN_CONTEXT,
        context_boost=0.6,
    ),
    Recognizer(
        "PHONE_NUMBER",
        r"1?[2-9][0-9]{9}",
        0.3,
        before=_NUM_BEFORE,
        after=_NUM_AFTER,
        check=_check_nanp,
        context=_PHONE_CONTEXT,
    ),
)
"""The built-in PII recognizers, in priority order."""

PII_KINDS: tuple[str, ...] = (
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "US_ITIN",
    "PHONE_NUMBER",
    "IP_ADDRESS",
    "EMAIL_ADDRESS",
)
"""Every kind the PII detector reports."""


class PiiDetector(PatternDetector):
    """Finds personal data in one pass over a text (see the module's docstring)."""

    name = "pii"
    what = "PII"
    all_kinds = PII_KINDS
    recognizers = RECOGNIZERS
