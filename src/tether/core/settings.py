"""Process settings, read from the environment (``TETHER_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Settings for one process. Build with :meth:`from_env`."""

    home: Path
    """Directory for local state (the SQLite store, the trace journal); ``TETHER_HOME``,
    default ``./.tether``."""

    database_url: str
    """SQLAlchemy URL of the trace store; ``TETHER_DATABASE_URL``, default SQLite in ``home``."""

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TETHER_HOME", ".tether")).expanduser()
        url = os.environ.get("TETHER_DATABASE_URL") or f"sqlite:///{home / 'tether.db'}"
        return cls(home=home, database_url=url)
