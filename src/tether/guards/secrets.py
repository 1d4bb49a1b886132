"""Credentials in text: API keys of the common providers, private-key blocks, JWTs, bearer and
basic credentials, passwords in connection strings, assignments and ``curl -u user:password``,
high-entropy tokens.

The detectors follow those of Yelp's ``detect-secrets`` (Apache-2.0): the same providers'
token formats, its keyword detector's idea (a value after ``password =`` or ``api_key:``), its
entropy limits (4.5 bits per character for base64, 3 for hex), reimplemented as recognizers of
one pass (:mod:`tether.guards.scanner`) rather than a dependency: detect-secrets reads line by
line, plugin by plugin (2.6 / 4.3 ms p50/p99 on 2 KB here, against the 2 ms budget of the whole
guard stack), and its keyword patterns backtrack on long lines.

A finding spans the secret itself: the token after ``Bearer``, the password in
``postgres://user:password@host``, the value after ``api_key =``; the rest stays readable.
"""

from __future__ import annotations

import math
import re
from functools import cache

from tether.guards import checks
from tether.guards.findings import Finding
from tether.guards.scanner import PatternDetector, PatternScanner, Recognizer

_TOKEN_BEFORE = r"[^A-Za-z0-9_\-]"
_TOKEN_AFTER = r"[^A-Za-z0-9_\-]"
_ALNUM_BEFORE = r"[^A-Za-z0-9]"
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_PLACEHOLDERS = """password passwd pass secret changeme change_me example redacted hidden none
    null undefined your_password yourpassword mypassword xxx xxxx xxxxx xxxxxx xxxxxxxx todo
    test dummy placeholder"""
_PLACEHOLDER_WORDS = frozenset(_PLACEHOLDERS.split())
BASE64_ENTROPY = 4.5
"""detect-secrets' limit for base64 strings, in bits per character."""
HEX_ENTROPY = 3.0
"""detect-secrets' limit for hex strings."""
MAX_ENTROPY_CHARS = 512
"""Longest token the entropy check considers."""


def _is_placeholder(value: str) -> bool:
    """``${DB_PASSWORD}``, ``<password>``, ``{{ secret }}``, ``%(pw)s``, ``****``, ``xxx``:
    a template, not a secret."""
    v = value.strip("\"'`")
    if not v or v.lower() in _PLACEHOLDER_WORDS:
        return True
    if v[0] in "$<{%[" or v.endswith(("}", ">", ")s")):
        return True
    return len(set(v)) == 1 or set(v) <= set("*.•x")


def _check_openai(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    if "T3BlbkFJ" in value:  # base64 of "OpenAI", in every key OpenAI issues
        return Finding(found.kind, found.start, found.end, 1.0)
    body = value.rsplit("-", 1)[-1] if value.count("-") > 1 else value[3:]
    has_digit = any(c.isdigit() for c in body)
    has_alpha = any(c.isalpha() for c in body)
    return found if len(value) >= 40 and has_digit and has_alpha else None


def _check_mixed(text: str, found: Finding) -> Finding | None:
    """A token with upper- and lower-case letters (and so not a word or an id)."""
    value = text[found.start : found.end]
    return found if any(c.isupper() for c in value) and any(c.islower() for c in value) else None


def _check_stripe(text: str, found: Finding) -> Finding | None:
    live = "_live_" in text[found.start : found.start + 8]
    return found if live else Finding(found.kind, found.start, found.end, 0.8)


def _check_jwt(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    if not checks.jwt_header_ok(value.split(".", 1)[0]):
        return None
    signed = not value.endswith(".")
    return found if signed else Finding(found.kind, found.start, found.end, 0.8)


def _check_basic(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    return found if checks.basic_credentials_ok(value) else None


def _check_placeholder(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    return None if _is_placeholder(value) else _known_token(value, found)


def _known_token(value: str, found: Finding) -> Finding:
    """``found`` with the kind of the known token it is, if it is one (a GitHub token as a
    URL's password or after ``api_key =``)."""
    for inner in _specific().scan(value):
        if inner.start == 0 and inner.end == len(value):
            return Finding(inner.kind, found.start, found.end, max(inner.score, found.score))
    return found


_COMMAND_SEPARATORS = "\n;|&"
_CURL = re.compile(r"(?<![A-Za-z0-9_])curl(?:\.exe)?(?=[\s\"'])", re.IGNORECASE)


def _check_curl_user(text: str, found: Finding) -> Finding | None:
    """The password of ``-u user:password`` (``--user``, ``-U``, ``--proxy-user``) only in a
    ``curl`` command: the command the flag is in (from a line's start, ``;``, ``|`` or ``&``)
    names ``curl`` before it. Other tools' ``-u`` takes a user or a uid (``docker run -u
    1000:1000``, ``sudo -u postgres``)."""
    begin = max(text.rfind(c, 0, found.start) for c in _COMMAND_SEPARATORS) + 1
    if _CURL.search(text, begin, found.start) is None:
        return None
    return _check_placeholder(text, found)


def _check_assignment(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end]
    if _is_placeholder(value) or len(value) < 4:
        return None
    if value.startswith("-----BEGIN"):
        # '"private_key": "-----BEGIN PRIVATE KEY-----\n..."': the key block, found from its
        # own start, is the secret (the value up to the space was only its first word).
        return None
    quoted = found.start > 0 and text[found.start - 1] in "\"'`"
    mixed = any(not c.isalpha() for c in value) and any(c.isalpha() for c in value)
    if not (quoted or mixed):
        # "password: reset it from the link": an unquoted word is likely prose.
        return Finding(found.kind, found.start, found.end, 0.3)
    return _known_token(value, found)


def _check_entropy(text: str, found: Finding) -> Finding | None:
    value = text[found.start : found.end].rstrip("=")
    if len(value) > MAX_ENTROPY_CHARS:
        return None  # a blob (an image, an archive), not a credential
    letters = any(c.isalpha() for c in value)
    digits = any(c.isdigit() for c in value)
    if not (letters and digits):
        return None
    if set(value) <= _HEX_CHARS:
        if len(value) < 32 or checks.shannon_entropy(value) <= HEX_ENTROPY:
            return None
        # Hex: hashes and ids (a git commit, a checksum) far outnumber hex secrets in text.
        return Finding("HIGH_ENTROPY_STRING", found.start, found.end, 0.4)
    upper = any(c.isupper() for c in value)
    lower = any(c.islower() for c in value)
    if not (upper and lower) or not set(value) <= _B64_CHARS:
        return None
    if value.count("/") > 2 and checks.shannon_entropy(value.replace("/", "")) < BASE64_ENTROPY:
        return None  # a path
    limit = min(BASE64_ENTROPY, 0.9 * math.log2(len(value)))
    if checks.shannon_entropy(value) <= limit:
        return None
    return Finding("HIGH_ENTROPY_STRING", found.start, found.end, 0.6)


_KEYWORDS = (
    r"(?i:password|passwd|passphrase|pwd|secret|client_?secret|api_?key|apikey|"
    r"access_?token|auth_?token|refresh_?token|private_?key|secret_?key|token)"
)

_SPECIFIC_RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        "PRIVATE_KEY",
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        # The body: base64 and PEM headers; a dash only in runs shorter than the END line's;
        # backslashes, for a key inside a JSON or YAML string ("...KEY-----\nMIIE...").
        r"(?:[A-Za-z0-9+/=\s:,\\]|-{1,4}[A-Za-z0-9+/=\s:,\\])*"
        r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
        1.0,
    ),
    Recognizer(
        "ANTHROPIC_API_KEY",
        r"sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_\-]{32,300}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "OPENAI_API_KEY",
        r"sk-(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_\-]{20,300}",
        0.9,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
        check=_check_openai,
    ),
    Recognizer(
        "AWS_ACCESS_KEY_ID",
        r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
        1.0,
        before=_ALNUM_BEFORE,
        after=_ALNUM_BEFORE,
    ),
    Recognizer(
        "AWS_SECRET_ACCESS_KEY",
        r"[A-Za-z0-9/+]{40}",
        1.0,
        before=_ALNUM_BEFORE,
        lead=r"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"'\]]{0,2}[ \t]{0,8}"
        r"(?::=|=>|[:=])[ \t]{0,8}[\"']?",
        after="[^A-Za-z0-9/+]",
    ),
    Recognizer(
        "GITHUB_TOKEN",
        r"gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "GITLAB_TOKEN",
        r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_\-]{20,64}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "SLACK_TOKEN",
        r"(?:xox[abposre]|xapp)-[0-9]{1,20}-[A-Za-z0-9\-]{8,250}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "SLACK_WEBHOOK",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{20,160}",
        1.0,
    ),
    Recognizer(
        "STRIPE_KEY",
        r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,247}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
        check=_check_stripe,
    ),
    Recognizer(
        "STRIPE_WEBHOOK_SECRET",
        r"whsec_[A-Za-z0-9+/]{24,80}",
        1.0,
        before=_TOKEN_BEFORE,
        after="[^A-Za-z0-9+/]",
    ),
    Recognizer(
        "GOOGLE_API_KEY",
        r"AIza[0-9A-Za-z_\-]{35}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "SENDGRID_API_KEY",
        r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer("NPM_TOKEN", r"npm_[A-Za-z0-9]{36}", 1.0, before=_TOKEN_BEFORE, after=_TOKEN_AFTER),
    Recognizer(
        "PYPI_TOKEN",
        r"pypi-AgE[A-Za-z0-9_\-]{50,}",
        1.0,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "HUGGINGFACE_TOKEN",
        r"hf_[A-Za-z0-9]{30,40}",
        0.9,
        before=_TOKEN_BEFORE,
        after=_TOKEN_AFTER,
        check=_check_mixed,
    ),
    Recognizer(
        "TWILIO_KEY",
        r"(?:AC|SK)[0-9a-f]{32}",
        0.8,
        before=_ALNUM_BEFORE,
        after=_ALNUM_BEFORE,
    ),
    Recognizer(
        "MAILCHIMP_API_KEY",
        r"[0-9a-f]{32}-us[0-9]{1,2}",
        0.9,
        before=_ALNUM_BEFORE,
        after=_ALNUM_BEFORE,
    ),
    Recognizer(
        "TELEGRAM_BOT_TOKEN",
        r"[0-9]{8,10}:AA[0-9A-Za-z_\-]{33}",
        0.9,
        before="[^0-9]",
        after=_TOKEN_AFTER,
    ),
    Recognizer(
        "AZURE_STORAGE_KEY",
        r"[A-Za-z0-9+/]{86}==",
        1.0,
        lead="(?i:AccountKey)=",
    ),
    Recognizer(
        "JWT",
        r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{2,}\.(?:[A-Za-z0-9_\-]{8,})?",
        0.95,
        before=_TOKEN_BEFORE,
        after="[^A-Za-z0-9_\\-.]",
        check=_check_jwt,
    ),
)
"""Tokens whose format says what they are."""


@cache
def _specific() -> PatternScanner:
    """The recognizers of known token formats alone, for values found after a keyword."""
    return PatternScanner(_SPECIFIC_RECOGNIZERS)


RECOGNIZERS: tuple[Recognizer, ...] = (
    *_SPECIFIC_RECOGNIZERS,
    Recognizer(
        "URL_PASSWORD",
        # An "@" may stand in the user name and the password (not percent-encoded, as
        # drivers accept): the password runs to the last "@" before the host.
        r"[^\s/]{1,256}",
        0.95,
        before="[^A-Za-z0-9+.\\-]",
        lead=r"[A-Za-z][A-Za-z0-9+.\-]{1,30}://[^\s:/]{0,128}:",
        after="@",
        at_end=False,
        check=_check_placeholder,
    ),
    Recognizer(
        "CURL_PASSWORD",
        # curl -u user:password (also --user, -U and --proxy-user, with a space or "="):
        # the finding is the password, the user stays readable.
        r"[^\s\"']{1,256}",
        0.9,
        before="[ \t]",
        lead=r"(?:-u|--user|-U|--proxy-user)(?:[ \t]{1,8}|=)[\"']?[^\s:\"'/@]{0,128}:",
        after="[\\s\"']",
        check=_check_curl_user,
    ),
    Recognizer(
        "BEARER_TOKEN",
        r"[A-Za-z0-9\-._~+/]{16,}=*",
        0.9,
        before="[^A-Za-z]",
        lead=r"(?i:bearer)[ \t]{1,8}",
        after="[^A-Za-z0-9\\-._~+/=]",
        check=_check_placeholder,
    ),
    Recognizer(
        "BASIC_AUTH",
        r"[A-Za-z0-9+/]{8,}={0,2}",
        0.9,
        before="[^A-Za-z]",
        lead=r"(?i:basic)[ \t]{1,8}",
        after="[^A-Za-z0-9+/=]",
        check=_check_basic,
    ),
    Recognizer(
        "PASSWORD",
        r"[^\s\"'`,;]{1,256}",
        0.8,
        before=_ALNUM_BEFORE,
        lead=_KEYWORDS + r"[A-Za-z0-9_]{0,20}[\"'\]]{0,2}[ \t]{0,8}(?::=|=>|[:=])[ \t]{0,8}[\"'`]?",
        after="[\\s\"'`,;]",
        check=_check_assignment,
    ),
    Recognizer(
        "HIGH_ENTROPY_STRING",
        r"[A-Za-z0-9][A-Za-z0-9+/_\-]{19,511}={0,2}",
        0.6,
        before="[^A-Za-z0-9+/_\\-=.]",
        after="[^A-Za-z0-9+/_\\-=]",
        check=_check_entropy,
    ),
)
"""The built-in secret recognizers, in priority order."""

SECRET_KINDS: tuple[str, ...] = (*dict.fromkeys(r.kind for r in RECOGNIZERS),)
"""Every kind the secrets detector reports."""


class SecretsDetector(PatternDetector):
    """Finds credentials in one pass over a text (see the module's docstring)."""

    name = "secrets"
    what = "secret"
    all_kinds = SECRET_KINDS
    recognizers = RECOGNIZERS
