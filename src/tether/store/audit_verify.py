"""Verifying the audit chain: the first entry that was edited, deleted, inserted or reordered."""

from __future__ import annotations

from collections.abc import Sequence
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
    snapshot when ``conn`` has not begun a transaction yet). ``require_keyed``: an entry not
    keyed is a problem too (a log rewritten whole by someone without the key hashes as an
    intact unkeyed chain). ``anchors``: (seq, hash) of entries seen before and kept
    elsewhere; the log must still hold each as it was. That finds what the chain alone
    cannot: entries cut off the end with the head row set back, and a log rewritten whole
    (by someone with the key, or unkeyed)."""
    _snapshot(conn)
    rows: list[Row] = []
    try:
        for row in iter_audit(conn, after=None):  # a row put below seq 1 is an insertion too
            rows.append(row)
    except UnreadableAudit as exc:  # the rows before it are checked; it is the next in order
        return _cut_short(rows, key, 1, str(exc))
    try:
        head_seq, head_hash = audit_head(conn)
    except UnreadableAudit as exc:
        return _cut_short(rows, key, 0, str(exc))
    problem = _first_problem(rows, head_seq, head_hash, key) or _anchor_problem(rows, anchors)
    unkeyed = [e.seq for e, _, _ in rows if e.alg != HMAC_SHA256]
    if problem is None and require_keyed and unkeyed:
        problem = AuditProblem(
            "unkeyed",
            unkeyed[0],
            f"entry {unkeyed[0]} is not keyed (SHA-256 only; {len(unkeyed)} entries are not)",
        )
    return AuditReport(
        entries=len(rows),
        head_seq=head_seq,
        head_hash=rows[-1][0].hash if rows else None,
        problem=problem,
        unkeyed=len(unkeyed),
    )


def _anchor_problem(rows: list[Row], anchors: Sequence[tuple[int, str]]) -> AuditProblem | None:
    """The first anchor (in seq order) the log does not hold as it was kept."""
    by_seq = {e.seq: e.hash for e, _, _ in rows}
    last = rows[-1][0].seq if rows else 0
    for seq, kept in sorted(anchors):
        found = by_seq.get(seq)
        if found is None:
            return AuditProblem(
                "cut",
                seq,
                f"the log ends at entry {last}, but entry {seq} was seen before (anchor): "
                "entries were cut off the end",
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


def _cut_short(rows: list[Row], key: bytes | None, after: int, why: str) -> AuditReport:
    """The report when a value of the wrong type stops the walk ``after`` the rows read."""
    last, last_hash = (rows[-1][0].seq, rows[-1][0].hash) if rows else (0, GENESIS)
    problem = _first_problem(rows, last, last_hash, key) or AuditProblem(
        "edited", last + after, why
    )
    return AuditReport(
        entries=len(rows),
        head_seq=last,
        head_hash=rows[-1][0].hash if rows else None,
        problem=problem,
    )


def _first_problem(
    rows: list[Row], head_seq: int, head_hash: str, key: bytes | None
) -> AuditProblem | None:
    prev, expected, keyed = GENESIS, 1, False
    for i, row in enumerate(rows):
        e = row[0]
        if e.seq > head_seq:
            return AuditProblem(
                "inserted", e.seq, f"entry {e.seq} is past the last entry written ({head_seq})"
            )
        if e.seq < expected:
            return AuditProblem(
                "inserted", e.seq, f"entry {e.seq} is before the first entry written (1)"
            )
        if e.seq != expected:
            return AuditProblem(
                "deleted", expected, f"entries {expected} to {e.seq - 1} are missing"
            )
        if e.alg == HMAC_SHA256 and key is None:
            return AuditProblem(
                "unverifiable",
                e.seq,
                f"entry {e.seq} is keyed (HMAC-SHA256): set TETHER_AUDIT_KEY to verify it",
            )
        if keyed and e.alg != HMAC_SHA256:
            return AuditProblem(
                "edited", e.seq, f"entry {e.seq} is not keyed although the entries before it are"
            )
        keyed = keyed or e.alg == HMAC_SHA256
        own = hash_at(row, e.seq, key) == e.hash
        if own and e.prev_hash == prev:
            prev, expected = e.hash, expected + 1
            continue
        return _classify(rows, i, prev, key, own)
    if expected - 1 < head_seq:
        return AuditProblem(
            "deleted", expected, f"entries {expected} to {head_seq} are missing from the end"
        )
    if prev != head_hash:
        return AuditProblem(
            "edited", head_seq, f"entry {head_seq} does not match the last hash written"
        )
    return None


def _classify(rows: list[Row], i: int, prev: str, key: bytes | None, own: bool) -> AuditProblem:
    e = rows[i][0]
    following = rows[i + 1][0] if i + 1 < len(rows) else None
    if not own:
        # Hashed under another seq: the entry was moved there.
        for other in rows:
            seq = other[0].seq
            if seq != e.seq and hash_at(rows[i], seq, key) == e.hash:
                return AuditProblem("reordered", e.seq, f"entry {e.seq} was written as entry {seq}")
    if following is not None and following.prev_hash == prev:
        return AuditProblem(
            "inserted", e.seq, f"entry {e.seq} was not in the chain: the next entry skips it"
        )
    if own:
        later = {r[0].hash: r[0].seq for r in rows[i + 1 :]}
        if e.prev_hash in later:
            return AuditProblem(
                "reordered", e.seq, f"entry {e.seq} follows entry {later[e.prev_hash]}"
            )
        return AuditProblem(
            "deleted", e.seq, f"the entry before entry {e.seq} is not the one it was chained to"
        )
    return AuditProblem("edited", e.seq, f"entry {e.seq} was changed after it was written")
