"""Process settings, read from the environment (``TETHER_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tether.core.errors import TetherError

DEFAULT_MAX_PAYLOAD_CHARS = 65_536
DEFAULT_MAX_DISPLAY_CHARS = 8_000


@dataclass(frozen=True)
class Settings:
    """Settings for one process. Build with :meth:`from_env`."""

    home: Path
    """Directory for local state (the SQLite store, the trace journal); ``TETHER_HOME``,
    default ``./.tether``."""

    database_url: str
    """SQLAlchemy URL of the trace store; ``TETHER_DATABASE_URL``, default SQLite in ``home``."""

    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS
    """Longest run input, output or error stored in a trace; longer text is stored clipped,
    with a marker giving its full size; ``TETHER_MAX_PAYLOAD_CHARS``, default 65,536."""

    max_display_chars: int = DEFAULT_MAX_DISPLAY_CHARS
    """Longest input or output the CLI prints (``--json`` prints what is stored); longer text
    is clipped with the same marker; ``TETHER_MAX_DISPLAY_CHARS``, default 8,000."""

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TETHER_HOME", ".tether")).expanduser()
        url = os.environ.get("TETHER_DATABASE_URL") or f"sqlite:///{home / 'tether.db'}"
        return cls(
            home=home,
            database_url=url,
            max_payload_chars=max_payload_chars_from_env(),
            max_display_chars=_chars_from_env(
                "TETHER_MAX_DISPLAY_CHARS", DEFAULT_MAX_DISPLAY_CHARS
            ),
        )


def max_payload_chars_from_env() -> int:
    """``Settings.from_env().max_payload_chars`` at a fraction of the cost: every run reads it
    when it stores its input and output."""
    return _chars_from_env("TETHER_MAX_PAYLOAD_CHARS", DEFAULT_MAX_PAYLOAD_CHARS)


def _chars_from_env(name: str, default: int) -> int:
    given = os.environ.get(name)
    if not given:
        return default
    raw = given.strip().replace("_", "").replace(",", "")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise TetherError(
            f"{name} must be a whole number of characters (1 or more), got {given!r}",
            hint=f"unset {name} for the default, {default:,}",
        )
    return int(raw)
