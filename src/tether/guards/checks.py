"""Checks that turn a pattern match into a finding or throw it away: check digits (Luhn for
card numbers, ISO 7064 mod 97-10 for IBANs), the issuing rules of US SSNs and ITINs, address
ranges, Shannon entropy. Pure functions over short strings; each is linear in its input."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
from collections import Counter
from functools import cache
from importlib.resources import files

DIGITS = frozenset("0123456789")


def digits_only(value: str) -> str:
    """The ASCII digits of ``value``, in order."""
    return "".join(c for c in value if c in DIGITS)


def luhn_ok(number: str) -> bool:
    """``number`` (digits only) passes the Luhn check (ISO/IEC 7812 card numbers)."""
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return bool(number) and total % 10 == 0


_CARD_LENGTHS: tuple[tuple[str, range], ...] = (
    # (prefix, lengths): the issuer ranges of ISO/IEC 7812 that card networks publish.
    ("4", range(13, 20)),  # Visa: 13, 16, 19 (and 18/17 for some issuers)
    ("34", range(15, 16)),  # American Express
    ("37", range(15, 16)),
    ("36", range(14, 20)),  # Diners Club International
    ("38", range(14, 20)),
    ("39", range(14, 20)),
    ("30", range(14, 20)),
    ("35", range(16, 20)),  # JCB
    ("51", range(16, 17)),  # Mastercard
    ("52", range(16, 17)),
    ("53", range(16, 17)),
    ("54", range(16, 17)),
    ("55", range(16, 17)),
    ("22", range(16, 17)),  # Mastercard 2-series (2221-2720, refined below)
    ("23", range(16, 17)),
    ("24", range(16, 17)),
    ("25", range(16, 17)),
    ("26", range(16, 17)),
    ("27", range(16, 17)),
    ("6011", range(16, 20)),  # Discover
    ("64", range(16, 20)),
    ("65", range(16, 20)),
    ("62", range(16, 20)),  # UnionPay
    ("50", range(12, 20)),  # Maestro
    ("56", range(12, 20)),
    ("57", range(12, 20)),
    ("58", range(12, 20)),
    ("63", range(12, 20)),
    ("67", range(12, 20)),
)


def card_number_ok(number: str) -> bool:
    """``number`` (digits only) has the length of its issuer's range and a valid Luhn digit,
    and is not one digit repeated."""
    if not 12 <= len(number) <= 19 or len(set(number)) == 1:
        return False
    if number.startswith("2") and not 2221 <= int(number[:4]) <= 2720:
        return False
    known = any(number.startswith(p) and len(number) in lengths for p, lengths in _CARD_LENGTHS)
    return known and luhn_ok(number)


IBAN_LENGTHS: dict[str, int] = {
    # Country code -> IBAN length, from the SWIFT IBAN registry.
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """``iban`` (no separators, upper case) has its country's length and check digits
    (ISO 13616: the number read with A=10 .. Z=35, mod 97, is 1)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for char in rearranged:  # digit by digit: no big integer of 30+ digits is built
        if "0" <= char <= "9":
            remainder = (remainder * 10 + ord(char) - 48) % 97
        elif "A" <= char <= "Z":
            remainder = (remainder * 100 + ord(char) - 55) % 97
        else:
            return False
    return remainder == 1


_SAMPLE_SSNS = frozenset({"123456789", "987654320", "078051120", "219099999"})
"""Numbers printed in examples and on sample cards, never issued."""


def ssn_kind(number: str) -> str | None:
    """``US_SSN`` or ``US_ITIN`` if ``number`` (9 digits) could be one, else ``None``.

    SSNs: the area (first three digits) is never 000, 666 or 900-999, the group (next two)
    never 00, the serial (last four) never 0000. ITINs: area 9xx and group 50-65, 70-88,
    90-92 or 94-99."""
    if len(number) != 9 or len(set(number)) == 1 or number in _SAMPLE_SSNS:
        return None
    area, group, serial = number[:3], number[3:5], number[5:]
    if serial == "0000" or group == "00":
        return None
    if area[0] == "9":
        g = int(group)
        itin = 50 <= g <= 65 or 70 <= g <= 88 or 90 <= g <= 92 or 94 <= g <= 99
        return "US_ITIN" if itin else None
    if area in ("000", "666"):
        return None
    return "US_SSN"


def nanp_ok(number: str) -> bool:
    """``number`` (10 digits) is a North American number: area code and exchange start
    with 2-9, neither is an N11 service code, and the area code is not N9X (reserved)."""
    if len(number) != 10:
        return False
    area, exchange = number[:3], number[3:6]
    return (
        area[0] >= "2"
        and exchange[0] >= "2"
        and area[1:] != "11"
        and exchange[1:] != "11"
        and area[1] != "9"
        and len(set(number)) > 2
    )


_CALLING_CODES = (
    # ITU-T E.164 country codes in use (1 is NANP, 7 Russia/Kazakhstan).
    """
    1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61
    62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98 211 212 213 216 218 220 221 222 223 224
    225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246
    248 249 250 251 252 253 254 255 256 257 258 260 261 262 263 264 265 266 267 268 269 290
    291 297 298 299 350 351 352 353 354 355 356 357 358 359 370 371 372 373 374 375 376 377
    378 379 380 381 382 383 385 386 387 389 420 421 423 500 501 502 503 504 505 506 507 508
    509 590 591 592 593 594 595 596 597 598 599 670 672 673 674 675 676 677 678 679 680 681
    682 683 685 686 687 688 689 690 691 692 850 852 853 855 856 880 886 960 961 962 963 964
    965 966 967 968 970 971 972 973 974 975 976 977 992 993 994 995 996 998
    """
)
COUNTRY_CALLING_CODES = frozenset(_CALLING_CODES.split())


def e164_ok(digits: str) -> bool:
    """``digits`` (after the ``+``) is a plausible international number: a known country
    code, 8 to 15 digits in all (ITU-T E.164), and a NANP number when the code is 1."""
    if not 8 <= len(digits) <= 15:
        return False
    if digits[0] == "1":
        return len(digits) == 11 and nanp_ok(digits[1:])
    return any(digits[:n] in COUNTRY_CALLING_CODES for n in (1, 2, 3)) and len(set(digits)) > 2


def ipv4_ok(address: str) -> bool:
    """Four dotted decimal octets of at most 255, without leading zeros (which some parsers
    read as octal: ``010.1.1.1`` is more likely a version or a date than an address)."""
    parts = address.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    )


def ipv6_ok(address: str) -> bool:
    """An IPv6 address Python's ``ipaddress`` accepts (zone id allowed), other than ``::``."""
    host = address.split("%", 1)[0]
    if host == "::" or host.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


@cache
def top_level_domains() -> frozenset[str]:
    """Every top-level domain (``tlds.txt``, from the Public Suffix List)."""
    text = files("tether.guards").joinpath("tlds.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def domain_ok(domain: str) -> bool:
    """``domain``'s last label is a top-level domain (``example.com``, ``münchen.de``, not
    ``build.local`` or ``2x.png``)."""
    tld = domain.rstrip(".").rsplit(".", 1)[-1].lower()
    return tld in top_level_domains()


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _b64decode(value: str) -> bytes | None:
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def jwt_header_ok(segment: str) -> bool:
    """The first segment of a JWT decodes (base64url) to a JSON object with ``alg`` or
    ``typ``."""
    raw = _b64decode(segment)
    if raw is None or len(raw) > 4096:
        return False
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(header, dict) and ("alg" in header or "typ" in header)


def basic_credentials_ok(value: str) -> bool:
    """``value`` decodes (base64) to printable ``user:password`` text."""
    raw = _b64decode(value)
    if raw is None:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return ":" in text and text.isprintable() and len(text) >= 3
