"""Every byte a run leaves behind, read twice: the crash journal while the store cannot take
the records (they wait there), then the SQLite file, its WAL and the journal once the store
has taken them. What a test greps for a value that must never be stored."""

from __future__ import annotations

import os
from pathlib import Path

from tether.trace import close_writers, writer_for


class StoredBytes:
    """A SQLite store whose file is not a database at first: a run's records all stay in the
    crash journal (``journal_bytes``); ``deliver`` then puts a real store in its place, which
    the journal is replayed into (``all_bytes``: the file, its WAL, the journal)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "store"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "tether.db"
        self.path.write_bytes(os.urandom(4096))  # "file is not a database"
        self.url = f"sqlite:///{self.path}"
        self.home = Path(os.environ["TETHER_HOME"])

    def journal_bytes(self) -> bytes:
        """The journal's files as they are now (records are appended before ``span()``
        returns, so a finished run is all there)."""
        journal = self.home / "journal"
        assert journal.is_dir(), "no trace journal was written"
        blob = _read_all(journal)
        assert blob.strip(b"\0"), "the trace journal is empty"
        return blob

    def deliver(self) -> None:
        """A real store in place of the broken file; the journal is written into it."""
        close_writers()  # the writer that could not deliver lets go of its segments
        self.path.unlink()
        writer = writer_for(self.url)
        assert writer.flush(timeout=60), "the journal was not delivered"
        close_writers()

    def all_bytes(self) -> bytes:
        """The store's file, its WAL and shared memory, and the journal."""
        return _read_all(self.folder) + _read_all(self.home)


def _read_all(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def leaked(blob: bytes, *values: str) -> list[str]:
    """The values found in ``blob`` (as UTF-8 or UTF-16 text)."""
    return [
        value for value in values if value.encode() in blob or value.encode("utf-16-le") in blob
    ]
