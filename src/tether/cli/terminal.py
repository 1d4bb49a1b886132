"""Text from a run, made safe to print on an operator's terminal.

Inputs, model output, tool results and error messages are outside text: an escape sequence in
one of them, printed raw, would retitle the terminal (``ESC ] 0 ;``), clear it (``ESC [ 2 J``),
write to the clipboard (OSC 52) or plant a hyperlink (OSC 8). Everything the CLI prints from a
run goes through :func:`visible` (or :func:`escape`, which also escapes rich markup), which
shows control characters as ``\\x1b``-style escapes instead. JSON output keeps the exact text;
:func:`json_safe` escapes the characters JSON itself leaves raw.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import IO, Any

import click

from tether.core.text import visible as visible  # re-exported: the CLI imports it here

_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def one_line(text: object) -> str:
    """``text`` as :func:`visible`, with newline and tab shown as ``\\n`` and ``\\t`` too: for
    a free-text value (a name, a reason) inside a row, where a newline would print a line that
    reads as another row."""
    return visible(text).replace("\n", "\\n").replace("\t", "\\t")


def escape(text: object) -> str:
    """``text`` to embed in rich markup: control characters shown (:func:`visible`) and rich
    markup escaped (``rich.markup.escape``)."""
    from rich.markup import escape as escape_markup  # rich loads on first print, not for --help

    return escape_markup(visible(text))


def json_safe(encoded: str) -> str:
    """JSON text (``ensure_ascii=False``) with the characters JSON leaves raw but a terminal
    obeys (DEL, C1 controls) or cannot encode (lone surrogates) as ``\\u`` escapes. They can
    only occur inside strings, so the JSON decodes to the same values."""
    if encoded.isascii():
        return encoded
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


class PlainStyle:
    """Bold and colour for text printed with ``click.echo`` instead of rich (a tenth to a
    fifth of ``tether validate``'s start-up is importing rich), applied when rich would.

    Rich's rules for a stream: ``TTY_COMPATIBLE=1``/``0`` says whether it is a terminal, else
    ``FORCE_COLOR`` (set: a terminal unless empty), else ``isatty()``; a terminal whose
    ``TERM`` is ``dumb`` or ``unknown`` gets no styles; ``NO_COLOR`` (not empty) drops colours
    but keeps bold. The escape codes are the ones rich writes for these styles."""

    def __init__(self, stream: IO[str]) -> None:
        environ = os.environ
        compatible = environ.get("TTY_COMPATIBLE", "")
        force_color = environ.get("FORCE_COLOR")
        if compatible in ("0", "1"):
            terminal = compatible == "1"
        elif force_color is not None:
            terminal = force_color != ""
        else:
            try:
                terminal = stream.isatty()
            except ValueError:  # a closed stream
                terminal = False
        self.enabled = terminal and environ.get("TERM", "").lower() not in ("dumb", "unknown")
        """Whether to write escape codes at all (``click.echo(..., color=enabled)``)."""
        self._colour = self.enabled and environ.get("NO_COLOR", "") == ""

    def __call__(self, text: str, *, fg: str | None = None, bold: bool = False) -> str:
        fg = fg if self._colour else None
        bold = bold and self.enabled
        return click.style(text, fg=fg, bold=bold or None) if fg or bold else text


class LazyConsole:
    """A rich ``Console`` made on first use: importing rich costs about as much as the rest of
    the CLI, and ``tether --help`` prints nothing through it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            self._console = _console_class()(**self._options)
        return getattr(self._console, name)


@cache
def _console_class() -> type[Any]:
    from rich.console import Console

    class PipeAwareConsole(Console):
        """Rich ends the process with status 1 when the reader of stdout goes away; for the
        CLI that is a normal end (``tether traces show ID | head -1``), which ``main`` makes
        quiet, with status 0."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return PipeAwareConsole
