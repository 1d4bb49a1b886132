"""Text hygiene at the boundaries where outside text enters a run."""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")

SECRET_PARAM = re.compile(
    r"(?i)(?<![^?&;])((?:[\w.-]*[_.-]|ssl)?(?:api[_-]?key|key|token|secret|password|passwd|pwd|"
    r"signature|sig|auth|authorization|credentials?)=)[^&;#]*"
)
"""A query parameter of a URL whose value looks secret (``api_key``, ``token``, ``sig``,
``password``, libpq's ``sslpassword``...): group 1 is its name and ``=``."""


def hide_secret_params(text: str, mask: str = "***") -> str:
    """``text`` (a URL's query, or a whole URL) with the values of ``SECRET_PARAM``
    parameters replaced by ``mask``."""
    return SECRET_PARAM.sub(lambda m: m.group(1) + mask, text)


def scrub_surrogates(text: str) -> str:
    """``text`` with lone surrogates (which ``json.loads`` can produce from ``"\\udc00"``, and
    which UTF-8 cannot encode) replaced by U+FFFD; unchanged, and cheap, in the usual case."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


_CLIPPED = re.compile(r"… \[clipped: ([0-9,]+) characters in all\]\Z")


def clip_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` characters and
    a marker with the full size (``… [clipped: 52,428,800 characters in all]``). Text clipped
    before (a stored output clipped again for the terminal) keeps the size it first had."""
    if len(text) <= limit:
        return text
    total = len(text)
    earlier = _CLIPPED.search(text, max(len(text) - 64, 0))
    if earlier:
        total = int(earlier.group(1).replace(",", ""))
    return f"{text[:limit]}… [clipped: {total:,} characters in all]"


def one_line(text: str) -> str:
    """``text`` (free text from outside: a key's name, a user agent) as it can be shown on one
    line: stripped, each control character (a newline included) as U+FFFD."""
    text = text.strip()
    if text.isprintable():
        return text
    return "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in text)


def clip_between_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a space, tab or line break (nothing
    when it has none there): a quote cut inside a value (half a key) would no longer look
    like what a masking guard masks, and the trace would keep that half."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
    return text[:space] if space > 0 else ""


# C0 controls but tab and newline, DEL, C1 controls (U+009B is a one-character CSI), lone
# surrogates (undecodable bytes of a path or an argument), and the invisible characters that
# reorder or break a line (bidirectional overrides, as in "Trojan Source", and U+2028/2029), and
# the ones that hide text from a reader: zero-width space, word joiner and invisible operators,
# the byte-order mark, and Unicode tag characters (U+E0000-E007F, used to smuggle instructions
# past a reader in "ASCII smuggling"). ZWJ and ZWNJ stay: emoji sequences and scripts use them.
_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u061c\u180e\u200b\u200e\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f"
)
_UNSAFE_CHAR = re.compile(f"[{_UNSAFE}]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by Python's surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: object) -> str:
    """``text`` with control characters (but tab and newline) and the invisible characters
    that reorder or hide text shown as ``\\x1b``-style escapes; unchanged, and cheap, in the
    usual case. For text from a run shown to a person: the CLI's output
    (``tether.cli.terminal``), the UI's pages (``tether.server.ui.render``)."""
    s = str(text)
    if s.isprintable() and s.isascii():
        return s
    return _UNSAFE_CHAR.sub(_shown, s)
