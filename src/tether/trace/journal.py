"""Crash journal of the batching writer.

Every record the writer accepts is appended to a local file before it is queued: once
``span()`` returns, the record is in the kernel's page cache and survives the process being
killed (``kill -9``, the OOM killer, a segfault). It is not fsynced on every record, so
those do not survive the machine losing power; ``Journal.sync`` makes what it holds so far
durable, for the rare record that must (a resumed run about to run an approved call).

The journal is a folder of segments per store, each a memory-mapped file of 1 MiB (or one
record, if larger). The segments filled between two passes of the writer thread are deleted
once all of their records are in the store. Each live segment is
locked (``flock``) by its writer, so a segment that is not locked belongs to a process that is
gone: the next writer opened on the same store replays it before anything else (all of a dead
writer's segments, in order, by one process). Replay skips
records already in the store (the process may have died between the commit and the delete),
so a record is written once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import mmap
import operator
import os
import secrets
import time
import types
import typing
from collections.abc import Generator
from pathlib import Path
from typing import Any

from tether.core.jsontext import JSON_OPTIONS, json_bytes
from tether.store import (
    AuditRecord,
    CheckpointRecord,
    EventRecord,
    RunRecord,
    SpanRecord,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; the journal is off there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("tether.trace")

JOURNAL_VERSION = 1
RUN_START, SPAN, EVENT, CHECKPOINT, RUN_END, AUDIT = range(6)
Record = RunRecord | SpanRecord | EventRecord | CheckpointRecord | AuditRecord
Item = tuple[int, Record]

_CLASSES: dict[int, type[Any]] = {
    RUN_START: RunRecord,
    SPAN: SpanRecord,
    EVENT: EventRecord,
    CHECKPOINT: CheckpointRecord,
    RUN_END: RunRecord,
    AUDIT: AuditRecord,
}
# Attributes go last on each line, as JSON text of their own (see ``encode``).
_FIELDS = {
    op: tuple(f.name for f in dataclasses.fields(cls) if f.name != "attributes")
    for op, cls in _CLASSES.items()
}
_HEADER = (
    json.dumps({"tether_journal": JOURNAL_VERSION, "fields": _FIELDS}, separators=(",", ":")) + "\n"
).encode()
_SUFFIX = ".journal"
_CREATING = ".creating"
"""A segment being created, not locked yet: never replayed (it holds no record)."""
_STALE_CREATING_S = 60.0
_REPLAYING = ".replaying"
"""The mark of a process replaying a journal folder into its store (see ``replay_mark``)."""
_REPLAYS_BEGUN = "replays.count"
"""How many replays of a journal folder have begun (see ``replays_begun``)."""
_COUNT_DIGITS = 20
SEGMENT_BYTES = 1 << 20


def journal_dir(home: Path, store: str) -> Path:
    """The journal folder of one store, named by a hash of its identity (see
    ``tether.store.store_identity``: no user or password, so a run made with a wrong password
    or before a password change is delivered once the URL is right)."""
    return home / "journal" / hashlib.sha256(store.encode()).hexdigest()[:16]


_IDENTITY_FILE = "store.json"
_IDENTITY_MAX_BYTES = 64 * 1024
"""More than a store's name ever takes: a bigger file is not ours, and is not read whole."""


def _read_identity_text(path: Path) -> str:
    with path.open("rb") as file:
        data = file.read(_IDENTITY_MAX_BYTES + 1)
    if len(data) > _IDENTITY_MAX_BYTES:
        raise ValueError(f"{path} is larger than {_IDENTITY_MAX_BYTES} bytes")
    return data.decode()


def write_identity(directory: Path, identity: str) -> None:
    """Name the store in its journal folder (credential-free), so that records left for a
    store nobody opens any more can be pointed at."""
    path = directory / _IDENTITY_FILE
    text = json.dumps({"tether_journal": JOURNAL_VERSION, "store": identity}) + "\n"
    try:
        if _read_identity_text(path) == text:
            return
    except (OSError, ValueError):
        pass
    temporary = directory / f".{_IDENTITY_FILE}.{os.getpid()}-{secrets.token_hex(4)}"
    temporary.write_text(text)
    os.replace(temporary, path)  # whole or not at all, even with writers racing


def read_identity(directory: Path) -> str | None:
    """The store a journal folder belongs to; None for a folder of an older Tether."""
    try:
        store = json.loads(_read_identity_text(directory / _IDENTITY_FILE)).get("store")
    except (OSError, ValueError, AttributeError):
        return None
    return store if isinstance(store, str) else None


try:
    import orjson as _orjson

    # As ``json_bytes`` writes each part (see ``tether.core.jsontext``), and the newline.
    _LINE_OPTIONS = JSON_OPTIONS | _orjson.OPT_APPEND_NEWLINE
except ImportError:  # pragma: no cover - a dependency
    _orjson = None  # type: ignore[assignment]

# A record's fields in journal order, read in one call (C) rather than one getattr each.
_HEAD = {op: operator.attrgetter(*names) for op, names in _FIELDS.items()}


def encode(op: int, record: Record) -> tuple[bytes, str | None]:
    """The journal line of a record, and its attributes serialized as the store keeps them
    (so the store need not serialize them again). A line is ``[op, [fields...], attributes]``,
    valid UTF-8 (a lone surrogate in user text is replaced, as the store would)."""
    head = json_bytes(_HEAD[op](record))
    attributes = getattr(record, "attributes", None)
    if attributes is None:
        return b"[%d,%b,null]\n" % (op, head), None
    text = json_bytes(attributes)
    return b"[%d,%b,%b]\n" % (op, head, text), text.decode()


def encode_line(op: int, record: Record) -> bytes:
    """The journal line of a record, as :func:`encode` gives it, in one serialization: what
    the run path pays per record. (The store then serializes the attributes again, on the
    writer's thread.)"""
    if _orjson is not None:
        try:
            return _orjson.dumps(
                [op, _HEAD[op](record), getattr(record, "attributes", None)],
                default=str,
                option=_LINE_OPTIONS,
            )
        except _orjson.JSONEncodeError:  # what orjson refuses: the careful path
            pass
    return encode(op, record)[0]


class Segment:
    """One journal file, open, locked and memory-mapped by this process until discarded.

    Records are copied into a shared mapping of the file rather than written with
    ``write(2)``: the bytes are in the kernel's page cache as soon as the copy is done (so
    they survive the process), and the copy does not release the GIL, which would let the
    writer thread take it for a whole switch interval on every record.
    """

    def __init__(self, path: Path, fd: int, size: int = 0) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.map = mmap.mmap(fd, size) if size else None  # none: a dead writer's, to replay
        self.pos = 0
        self.records = 0

    def write(self, data: bytes) -> None:
        assert self.map is not None
        end = self.pos + len(data)
        self.map[self.pos : end] = data
        self.pos = end

    def sync(self) -> None:
        """Write the segment's pages to disk (``msync`` and ``fsync``): what it holds then
        survives a power cut too."""
        if self.map is not None:
            self.map.flush()
        if self.fd >= 0:
            os.fsync(self.fd)

    def fits(self, data: bytes) -> bool:
        return self.pos + len(data) <= self.size

    def discard(self) -> None:
        """Delete the file: its records are in the store. Unlink before closing, so no other
        process can take the lock of a file that is about to disappear."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self._close()

    def release(self) -> None:
        """Close the file but keep it: its records are not in the store yet, and the next
        writer opened on this store replays them."""
        try:
            if self.map is not None and self.fd >= 0:
                self.map.close()
                os.ftruncate(self.fd, self.pos)  # drop the unused, zero-filled tail
        finally:
            self._close()

    def forget(self) -> None:
        """In a child forked from this segment's writer: close the child's copies of the
        mapping and the descriptor, leaving the file, its size and its lock (which the
        parent's descriptor keeps held) to the parent."""
        self._close()

    def _close(self) -> None:
        """Once only: a closed descriptor's number may already belong to another file."""
        if self.map is not None:
            self.map.close()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def writer_of(segment: Segment) -> str:
    """The id of the writer that made a segment (``<pid>-<random>``, from its file name)."""
    return segment.path.name.rsplit("-", 1)[0]


class Journal:
    """The segments of one writer. Not thread-safe: the writer calls it under its lock."""

    def __init__(
        self, directory: Path, segment_bytes: int = SEGMENT_BYTES, *, identity: str | None = None
    ) -> None:
        if fcntl is None:  # pragma: no cover
            raise OSError("the trace journal needs flock (not available on this platform)")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if identity is not None:
            write_identity(directory, identity)
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.writer_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._seq = 0
        self._full: list[Segment] = []
        self.current = self._open_segment(0)

    def _open_segment(self, need: int) -> Segment:
        """A new segment, created and locked under a name ``orphaned_segments`` never looks
        at, then renamed: between its creation and its lock another process would see an
        unlocked segment (one a dead writer left) and take it from this live writer."""
        segment = self.spare(need)
        try:
            self._publish(segment)
        except OSError:
            self.drop_spare(segment)
            raise
        return segment

    def spare(self, need: int = 0) -> Segment:
        """A segment made ready (created, locked, its blocks reserved, its header written) but
        not yet in the journal: :meth:`rotate` takes it. Making one touches no state of the
        journal, so the writer makes it without its lock, and ``rotate`` under the lock is a
        rename. Not published, it is never replayed; :meth:`drop_spare` if unused."""
        creating = self.directory / f"{self.writer_id}-{secrets.token_hex(4)}{_CREATING}"
        size = max(self.segment_bytes, len(_HEADER) + need)
        # 0600: trace payloads hold user content.
        fd = os.open(creating, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        segment = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Reserve the blocks now: a full disk is an OSError here, not a SIGBUS later
            # when a page of the mapping is first written.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # pragma: no cover - macOS
                os.ftruncate(fd, size)
            segment = Segment(creating, fd, size)
            segment.write(_HEADER)
        except OSError:
            if segment is not None and segment.map is not None:
                segment.map.close()
            os.close(fd)
            creating.unlink(missing_ok=True)
            raise
        return segment

    def _publish(self, segment: Segment) -> None:
        """Give a spare its place in the journal's order (the next sequence number): the
        lock goes with the file."""
        seq = self._seq + 1
        path = self.directory / f"{self.writer_id}-{seq:08d}{_SUFFIX}"
        os.rename(segment.path, path)
        self._seq, segment.path = seq, path

    @staticmethod
    def drop_spare(segment: Segment) -> None:
        """Delete a spare that was not taken."""
        with contextlib.suppress(OSError):
            segment.discard()

    def append(self, line: bytes, *, fresh: bool = False) -> None:
        """Copy a record's line into the journal; ``fresh``: into a new segment (the current
        one failed)."""
        if fresh or not self.current.fits(line):
            segment = self._open_segment(len(line))  # first: if it fails, nothing has moved
            self._full.append(self.current)
            self.current = segment
        self.current.write(line)
        self.current.records += 1

    def sync(self) -> None:
        """Make every record appended so far survive a power cut, not only the process dying:
        the live segments' pages and the folder (their names) go to disk. Costs a few
        milliseconds: for the rare record that must outlive the machine (see
        ``BatchingWriter.sync``), never on every record."""
        from tether.store.db import fsync_path  # (SQLAlchemy: not on the import path here)

        for segment in [*self._full, self.current]:
            segment.sync()
        fsync_path(self.directory, directory=True)

    def rotate(self, spare: Segment | None = None) -> list[Segment]:
        """Start a new segment (``spare``, if given and still usable) and hand back those
        written so far."""
        fresh = None
        if spare is not None:
            try:
                self._publish(spare)
                fresh = spare
            except OSError:  # gone meanwhile (a stale-file sweep): make one the slow way
                self.drop_spare(spare)
        if fresh is None:
            fresh = self._open_segment(0)
        taken = [*self._full, self.current]
        self._full, self.current = [], fresh
        return taken

    def detach(self) -> list[Segment]:
        """Hand back every segment, and stop: the journal is not used after this."""
        taken = [*self._full, self.current]
        self._full = []
        return taken

    def close(self) -> None:
        """Delete the segments left empty, keep the others for replay."""
        for segment in [*self._full, self.current]:
            if segment.records:
                segment.release()
            else:
                segment.discard()
        self._full = []


def _lock_orphan(path: Path, *, shared: bool = False) -> int | None:
    """An open descriptor of a segment, locked, if no live writer holds it and no other
    process has replayed (deleted) it meanwhile; else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # another process replayed and deleted it meanwhile
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        if path.exists():  # not replayed by another process between the glob and the lock
            return fd
    except OSError:  # held by a live writer
        pass
    os.close(fd)
    return None


def orphaned_segments(directory: Path) -> Generator[tuple[Segment, list[Item]], None, None]:
    """Segments no live writer holds, locked for the caller, in each writer's order, with
    their records. The caller discards each one once its records are in the store.

    A dead writer's segments are taken all together or not at all: another process replaying
    some of them at the same time would write a later segment (a run's spans, its end) before
    this one wrote the earlier one (the run's start), and the store would reject the spans for
    lack of their run. Those not yielded (the caller stopped early) are unlocked, kept."""
    if fcntl is None or not directory.is_dir():  # pragma: no cover - no flock, no journal
        return
    _remove_stale_creating(directory)
    by_writer: dict[str, list[Path]] = {}
    for path in sorted(directory.glob(f"*{_SUFFIX}")):  # by writer, then by sequence
        by_writer.setdefault(path.name.rsplit("-", 1)[0], []).append(path)
    for paths in by_writer.values():
        locked = _lock_all(paths)
        try:
            while locked:
                path, fd = locked.pop(0)
                try:
                    with open(fd, "rb", closefd=False) as file:
                        items = _decode(path, file.read())
                except Exception as exc:  # a journal this version cannot read: keep it, say so
                    os.close(fd)
                    log.error("cannot replay trace journal %s (%s); the file is kept", path, exc)
                    continue
                yield Segment(path, fd), items
        finally:
            for _path, fd in locked:
                os.close(fd)


def _lock_all(paths: list[Path]) -> list[tuple[Path, int]]:
    """Every segment of one writer still there, locked, in order; none if one of them is held
    (by the writer itself, alive, or by another process replaying them)."""
    locked: list[tuple[Path, int]] = []
    for path in paths:
        fd = _lock_orphan(path)
        if fd is not None:
            locked.append((path, fd))
        elif path.exists():  # held: leave this writer's segments to whoever holds it
            for _path, taken in locked:
                os.close(taken)
            return []
    return locked


@contextlib.contextmanager
def replay_mark(directory: Path) -> Generator[None, None, None]:
    """Mark ``directory`` as being replayed into its store by this process for as long as the
    block runs: a file ``<pid>-<random>.replaying`` this process holds locked (``flock``), so
    that a reader meanwhile can tell that what it reads may be part of a replay
    (``replays_in_progress``). Made locked under a name no reader looks at, then renamed;
    deleted at the end (a mark its process left behind when killed is unlocked, so ignored,
    and deleted by the next replay)."""
    if fcntl is None:  # pragma: no cover - no flock, no journal
        yield
        return
    _remove_stale_marks(directory)
    name = f"{os.getpid()}-{secrets.token_hex(4)}{_REPLAYING}"
    making = directory / (name + _CREATING)
    fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(making, directory / name)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            making.unlink()
        raise
    try:
        _count_replay(directory)
        yield
    finally:
        with contextlib.suppress(OSError):
            (directory / name).unlink()  # unlinked before unlocked: never seen unlocked
        os.close(fd)


def replays_in_progress(directory: Path) -> list[int]:
    """The process ids of the processes replaying a journal folder into its store right now
    (see ``replay_mark``): a reader that reads meanwhile may see part of their work. One
    glob and a lock attempt per mark: cheap enough for every read command."""
    if fcntl is None or not directory.is_dir():  # pragma: no cover - no flock, no journal
        return []
    pids = []
    for path in directory.glob(f"*{_REPLAYING}"):
        fd = _lock_orphan(path, shared=True)
        if fd is not None:  # nobody holds it: its process is gone
            os.close(fd)
            continue
        if path.exists():
            pid = path.name.split("-", 1)[0]
            pids.append(int(pid) if pid.isdigit() else 0)
    return sorted(pids)


def replays_begun(directory: Path) -> int:
    """How many replays of a journal folder have begun so far. A reader reads it before and
    after it reads: a replay that began and ended meanwhile left no mark to find at either
    end, but it moved this count."""
    if fcntl is None:  # pragma: no cover - no flock, no journal
        return 0
    try:
        fd = os.open(directory / _REPLAYS_BEGUN, os.O_RDONLY)
    except OSError:  # no replay yet (or no journal folder)
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # never half of a replayer's write
        return _read_count(fd)
    finally:
        os.close(fd)


def _count_replay(directory: Path) -> None:
    """Add one to the folder's count of replays begun (``replays_begun``). A count that
    cannot be kept only weakens a reader's warning: it is logged, the replay goes on."""
    try:
        fd = os.open(directory / _REPLAYS_BEGUN, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("cannot count a replay of the trace journal %s: %s", directory, exc)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"%0*d" % (_COUNT_DIGITS, _read_count(fd) + 1), 0)
    except OSError as exc:
        log.warning("cannot count a replay of the trace journal %s: %s", directory, exc)
    finally:
        os.close(fd)


def _read_count(fd: int) -> int:
    data = os.pread(fd, _COUNT_DIGITS, 0)
    return int(data) if data.isdigit() else 0  # empty: made, never written


def _remove_stale_marks(directory: Path) -> None:
    """Delete the replay marks of processes that died replaying (nobody holds their lock)."""
    for path in directory.glob(f"*{_REPLAYING}"):
        fd = _lock_orphan(path)
        if fd is None:
            continue
        try:
            path.unlink()
        except OSError:  # gone already: harmless
            pass
        finally:
            os.close(fd)


def undelivered(directory: Path) -> tuple[int, int]:
    """How many segments no live writer holds are in a journal folder, and how many records
    they keep: read to tell the user, without taking them from a process about to replay
    them (a shared lock, which fails while their writer lives)."""
    if fcntl is None or not directory.is_dir():  # pragma: no cover - no flock, no journal
        return 0, 0
    segments = records = 0
    for path in directory.glob(f"*{_SUFFIX}"):
        fd = _lock_orphan(path, shared=True)
        if fd is None:
            continue
        try:
            with open(fd, "rb", closefd=False) as file:
                lines = file.read().split(b"\0", 1)[0].split(b"\n")[1:]
            segments += 1
            records += sum(1 for line in lines if line)
        except OSError:
            continue
        finally:
            os.close(fd)
    return segments, records


def move_orphans(source: Path, target: Path) -> int:
    """Move the segments no live writer holds from one journal folder into another (from a
    folder an older Tether named by the whole store URL into the store's folder). The lock
    is held across the rename, so no other process replays a segment twice."""
    if fcntl is None or not source.is_dir():  # pragma: no cover - no flock, no journal
        return 0
    moved = 0
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in source.glob(f"*{_SUFFIX}"):
        fd = _lock_orphan(path)
        if fd is None:
            continue
        try:
            os.rename(path, target / path.name)
            moved += 1
        except OSError:
            continue
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        source.rmdir()  # only if nothing is left in it
    return moved


def _remove_stale_creating(directory: Path) -> None:
    """Delete segments a process died while creating (they hold a header at most). Only old
    ones: a young one may belong to a live writer that has not locked it yet."""
    cutoff = time.time() - _STALE_CREATING_S
    for path in directory.glob(f"*{_CREATING}"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # gone already, or not ours to delete: harmless
            continue


@functools.cache
def _field_types(op: int) -> dict[str, tuple[type, ...]]:
    """The Python types each field of a record of ``op`` may hold, from its annotations (a
    float field takes an int too). Built on the first replay, not at import."""
    allowed: dict[str, tuple[type, ...]] = {}
    for name, hint in typing.get_type_hints(_CLASSES[op]).items():
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds: list[type] = []
        for member in members:
            origin = typing.get_origin(member) or member
            kinds.extend((float, int) if origin is float else (origin,))
        allowed[name] = tuple(kinds)
    return allowed


def _check_types(op: int, values: dict[str, Any]) -> None:
    """Refuse a line whose values are not of their fields' types (a line damaged on disk
    that is still JSON): SQLite keeps text in an integer column as it is given, and one such
    row made ``tether traces list`` fail for good on every later read (a TypeError)."""
    allowed = _field_types(op)
    for name, value in values.items():
        kinds = allowed.get(name)
        if kinds is None:
            continue
        if (
            not isinstance(value, kinds)
            or (isinstance(value, bool) and bool not in kinds)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise ValueError(f"field {name!r} holds {type(value).__name__} {value!r:.40}")


def _decode(path: Path, data: bytes) -> list[Item]:
    # The file ends at its first NUL byte: the unused tail of the mapping is zeros, and JSON
    # text never holds a raw NUL.
    lines = data.split(b"\0", 1)[0].split(b"\n")
    if not lines or not lines[0]:
        return []
    header = json.loads(lines[0])
    if header.get("tether_journal") != JOURNAL_VERSION:
        raise ValueError(f"{path}: journal version {header.get('tether_journal')} not supported")
    fields = {int(op): names for op, names in header["fields"].items()}
    items: list[Item] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        try:
            op, values, attributes = json.loads(line)
            cls = _CLASSES[op]
            known = set(_FIELDS[op])
            data_ = {k: v for k, v in zip(fields[op], values, strict=True) if k in known}
            # A journal from before runs had ids: the store gives the record its trace's run.
            data_.setdefault("run_id", "")
            if attributes is not None:
                data_["attributes"] = attributes
            _check_types(op, data_)
            items.append((op, cls(**data_)))
        except Exception as exc:  # a line torn by the crash, or damaged on disk
            log.warning("skipping unreadable trace journal line %s:%d (%s)", path, number, exc)
    return items
