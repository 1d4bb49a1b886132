"""How text from a run is shown on a terminal, and kept exact in JSON."""

from __future__ import annotations

import json

from tether.cli.terminal import escape, json_safe, visible


def test_controls_are_shown_as_escapes_and_the_rest_is_untouched() -> None:
    assert visible("plain text, 世界, tab\tand\nnewline") == "plain text, 世界, tab\tand\nnewline"
    assert visible("\x1b[2J\x07\x00\r\x7f\x9b") == "\\x1b[2J\\x07\\x00\\x0d\\x7f\\x9b"
    assert visible("abc\u202edcba") == "abc\\u202edcba"  # a right-to-left override
    assert visible("id-\udcff\udcfe") == "id-\\xff\\xfe"  # bytes that were not UTF-8
    assert escape("[bold]\x1b[31m") == "\\[bold]\\x1b[31m"


def test_json_stays_exact_with_nothing_raw_for_a_terminal() -> None:
    value = {"text": "\x1b]0;t\x07 \x9b2J \x7f \u2028 \udcff 世界"}
    encoded = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(encoded) == value
    assert all(c == "\n" or (c >= " " and not "\x7f" <= c <= "\x9f") for c in encoded)
    assert "世界" in encoded


def test_characters_that_hide_text_from_a_reader_are_shown() -> None:
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "rm -rf")  # Unicode tags: invisible ASCII
    text = f"ok\u200b{hidden}\ufeff\u2060done"
    shown = visible(text)
    assert shown.startswith("ok\\u200b\\U000e0072") and shown.endswith("\\ufeff\\u2060done")
    assert all(ord(c) < 0x80 for c in shown)
    # Joiners that emoji sequences and scripts need are left as they are.
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u0645\u200c\u06cc"
    assert visible(family) == family
