"""Verifying the audit chain: the first entry that was edited, deleted, inserted or reordered."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tether.store.audit import (
    GENESIS,
    HMAC_SHA256,
    AuditEntry,
    UnreadableAudit,
    audit_head,
    hash_at,
    iter_audit,
)

Tampering = Literal[
    "edited", "deleted", "inserted", "reordered", "unverifiable", "unkeyed", "cut", "rewritten"
]


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first place the chain does not hold."""

    kind: Tampering
    """What was done to the log there (``unverifiable``: keyed entries and no key;
    ``unkeyed``: an entry not keyed where every entry must be, ``require_keyed``; ``cut``:
    the log ends before an anchored entry; ``rewritten``: an anchored entry's hash is not
    the one kept, so the chain up to it was written again)."""
    seq: int
    """The seq of the entry where the chain breaks (for a deletion: the first missing)."""
    message: str
    """The same in words."""


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What ``verify_audit`` found."""

    entries: int
    """Entries read."""
    head_seq: int
    """The last seq the writers recorded."""
    head_hash: str | None
    """The hash of the last entry read (None: no entry): the anchor to keep elsewhere."""
    problem: AuditProblem | None
    """The first problem, or None when the chain holds."""
    unkeyed: int = 0
    """Entries hashed without the key (SHA-256 only), all before the first keyed one (an
    unkeyed entry after a keyed one is a problem): written before ``TETHER_AUDIT_KEY`` was
    set, or the log rewritten by someone without the key; nothing in the log tells which."""

    @property
    def ok(self) -> bool:
        return self.problem is None


Row = tuple[AuditEntry, str, str]


def verify_audit(
    conn: Any,
    key: bytes | None,
    *,
    require_keyed: bool = False,
    anchors: Sequence[tuple[int, str]] = (),
) -> AuditReport:
    """Walk the chain in seq order and report its first break (the whole log is read, in one
    snapshot when ``conn`` has not begun a transaction yet, a chunk of rows at a time: memory
    does not grow with the log). ``require_keyed``: an entry not keyed is a problem too (a
    log rewritten whole by someone without the key hashes as an intact unkeyed chain).
    ``anchors``: (seq, hash) of entries seen before and kept elsewhere; the log must still
    hold each as it was. That finds what the chain alone cannot: entries cut off the end with
    the head row set back, and a log written again whole (by someone with the key, or
    unkeyed)."""
    _snapshot(conn)
    try:
        head: tuple[int, str] | None = audit_head(conn)
        head_error = None
    except UnreadableAudit as exc:
        head, head_error = None, str(exc)
    walk = _Walk(key, None if head is None else head[0], {seq for seq, _ in anchors})
    try:
        for row in iter_audit(conn, after=None):  # a row put below seq 1 is an insertion too
            walk.add(row)
    except UnreadableAudit as exc:  # the rows before it are checked; it is the next in order
        return _cut_short(conn, walk, 1, str(exc))
    if head is None:
        return _cut_short(conn, walk, 0, str(head_error))
    problem = walk.end(conn, *head) or _anchor_problem(walk, anchors)
    if problem is None and require_keyed and walk.unkeyed:
        problem = AuditProblem(
            "unkeyed",
            walk.first_unkeyed,
            f"entry {walk.first_unkeyed} is not keyed (SHA-256 only; {walk.unkeyed} entries "
            "are not)",
        )
    return AuditReport(
        entries=walk.entries,
        head_seq=head[0],
        head_hash=walk.last_hash,
        problem=problem,
        unkeyed=walk.unkeyed,
    )


class _Walk:
    """The chain read one entry at a time: the first problem found in order, and counts."""

    def __init__(self, key: bytes | None, head_seq: int | None, anchored: set[int]) -> None:
        self.key = key
        self.head_seq = head_seq
        """The head row's seq (None: unreadable, so not compared)."""
        self.anchored = anchored
        self.found: dict[int, str] = {}
        """The hashes of the anchored entries read."""
        self.entries = self.unkeyed = self.first_unkeyed = 0
        self.last_seq = 0
        self.last_hash: str | None = None
        self.prev, self.expected, self.keyed = GENESIS, 1, False
        self.problem: AuditProblem | None = None
        self.suspect: tuple[int, str, bool] | None = None
        """(index, previous hash, own hash holds) of an entry that breaks the chain in a way
        the entries around it tell (``_classify``, which reads the log again)."""

    @property
    def done(self) -> bool:
        return self.problem is not None or self.suspect is not None

    def add(self, row: Row) -> None:
        e = row[0]
        index = self.entries
        self.entries += 1
        self.last_seq, self.last_hash = e.seq, e.hash
        if e.seq in self.anchored:
            self.found[e.seq] = e.hash
        if e.alg != HMAC_SHA256:
            self.unkeyed += 1
            self.first_unkeyed = self.first_unkeyed or e.seq
        if not self.done:
            self.problem = self._check(row, index)

    def _check(self, row: Row, index: int) -> AuditProblem | None:
        e, key = row[0], self.key
        if self.head_seq is not None and e.seq > self.head_seq:
            return AuditProblem(
                "inserted", e.seq, f"entry {e.seq} is past the last entry written ({self.head_seq})"
            )
        if e.seq < self.expected:
            return AuditProblem(
                "inserted", e.seq, f"entry {e.seq} is before the first entry written (1)"
            )
        if e.seq != self.expected:
            return AuditProblem(
                "deleted", self.expected, f"entries {self.expected} to {e.seq - 1} are missing"
            )
        if e.alg == HMAC_SHA256 and key is None:
            return AuditProblem(
                "unverifiable",
                e.seq,
                f"entry {e.seq} is keyed (HMAC-SHA256): set TETHER_AUDIT_KEY to verify it",
            )
        if self.keyed and e.alg != HMAC_SHA256:
            return AuditProblem(
                "edited", e.seq, f"entry {e.seq} is not keyed although the entries before it are"
            )
        self.keyed = self.keyed or e.alg == HMAC_SHA256
        own = hash_at(row, e.seq, key) == e.hash
        if own and e.prev_hash == self.prev:
            self.prev, self.expected = e.hash, self.expected + 1
            return None
        self.suspect = (index, self.prev, own)
        return None

    def end(self, conn: Any, head_seq: int, head_hash: str) -> AuditProblem | None:
        """The first problem, once every entry was added (``head_*``: the head row)."""
        if self.problem is not None:
            return self.problem
        if self.suspect is not None:
            index, prev, own = self.suspect
            return _classify(conn, index, prev, self.key, own)
        if self.expected - 1 < head_seq:
            return AuditProblem(
                "deleted",
                self.expected,
                f"entries {self.expected} to {head_seq} are missing from the end",
            )
        if self.prev != head_hash:
            return AuditProblem(
                "edited", head_seq, f"entry {head_seq} does not match the last hash written"
            )
        return None


def _readable(conn: Any) -> Iterator[tuple[int, Row]]:
    """The log read again (in the same snapshot), with each row's index, up to the first
    row that cannot be read (where the walk stopped too)."""
    try:
        yield from enumerate(iter_audit(conn, after=None))
    except UnreadableAudit:
        return


def _anchor_problem(walk: _Walk, anchors: Sequence[tuple[int, str]]) -> AuditProblem | None:
    """The first anchor (in seq order) the log does not hold as it was kept."""
    for seq, kept in sorted(anchors):
        found = walk.found.get(seq)
        if found is None:
            return AuditProblem(
                "cut",
                seq,
                f"the log ends at entry {walk.last_seq}, but entry {seq} was seen before "
                "(anchor): entries were cut off the end",
            )
        if found.lower() != kept.lower():
            return AuditProblem(
                "rewritten",
                seq,
                f"entry {seq}'s hash is not the one kept (anchor): the log was written again "
                f"up to entry {seq}",
            )
    return None


def _snapshot(conn: Any) -> None:
    """Read the entries and the head row as of one moment: read apart, an entry appended in
    between (by a running server) looked like entries deleted from the end."""
    if conn.in_transaction():
        return  # the caller's transaction: its isolation is the caller's choice
    if conn.dialect.name == "sqlite":
        # pysqlite begins no transaction for reads: each SELECT saw the file as it was then.
        # A deferred BEGIN keeps the first read's view (WAL) until the connection ends.
        conn.exec_driver_sql("BEGIN")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def _cut_short(conn: Any, walk: _Walk, after: int, why: str) -> AuditReport:
    """The report when a value of the wrong type stops the walk ``after`` the rows read (the
    last row read stands for the head)."""
    last_hash = walk.last_hash or GENESIS
    walk.head_seq = None
    problem = walk.end(conn, walk.last_seq, last_hash) or AuditProblem(
        "edited", walk.last_seq + after, why
    )
    return AuditReport(
        entries=walk.entries,
        head_seq=walk.last_seq,
        head_hash=walk.last_hash,
        problem=problem,
    )


def _classify(conn: Any, i: int, prev: str, key: bytes | None, own: bool) -> AuditProblem:
    """What was done to the entry at index ``i``, which breaks the chain (``prev``: the hash
    it should follow; ``own``: whether its own hash holds), told by the entries around it,
    reading the log again rather than holding it."""
    target: Row | None = None
    following: AuditEntry | None = None
    follows: int | None = None  # the seq of a later entry whose hash it names as previous
    for n, row in _readable(conn):
        if n == i:
            target = row
        elif target is not None:
            following = following or row[0]
            if row[0].hash == target[0].prev_hash:
                follows = row[0].seq
    assert target is not None  # the walk read it
    e = target[0]
    if not own:
        # Hashed under another seq: the entry was moved there.
        for _, other in _readable(conn):
            seq = other[0].seq
            if seq != e.seq and hash_at(target, seq, key) == e.hash:
                return AuditProblem("reordered", e.seq, f"entry {e.seq} was written as entry {seq}")
    if following is not None and following.prev_hash == prev:
        return AuditProblem(
            "inserted", e.seq, f"entry {e.seq} was not in the chain: the next entry skips it"
        )
    if own:
        if follows is not None:
            return AuditProblem("reordered", e.seq, f"entry {e.seq} follows entry {follows}")
        return AuditProblem(
            "deleted", e.seq, f"the entry before entry {e.seq} is not the one it was chained to"
        )
    return AuditProblem("edited", e.seq, f"entry {e.seq} was changed after it was written")
