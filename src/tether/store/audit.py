"""The audit log in the store: entries appended to a hash chain, listed, and verified.

Each entry's hash covers its canonical JSON (seq, time, kind, actor, run and span ids,
details, algorithm) and the previous entry's hash, so editing, deleting, inserting or
reordering an entry breaks the chain at that entry. With ``TETHER_AUDIT_KEY`` set the hash is
an HMAC-SHA256 under that key (someone who can write the database but does not hold the key
cannot rebuild the chain after tampering); without it, SHA-256.

Appends take the one row of ``tether_audit_head`` for update before reading it (an ``UPDATE``
on it first: a row lock on PostgreSQL, the write lock on SQLite), so writers in several
processes append in turn and the chain stays one line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update

from tether.core import CorruptRecord, canonical_json
from tether.store import tables
from tether.store.records import AuditRecord
from tether.store.values import (
    AUDIT_KIND,
    AUDIT_RUN,
    AUDIT_SPAN,
    AUDIT_TRACE,
    clean_text,
    column_text,
)

log = logging.getLogger("tether.audit")

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""
SHA256, HMAC_SHA256 = "sha256", "hmac-sha256"
AUDIT_KEY_ENV = "TETHER_AUDIT_KEY"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored entry of the chain."""

    seq: int
    """Position in the chain, from 1."""
    entry_id: str
    """The entry's own id."""
    time_ns: int
    """When it happened."""
    kind: str
    """What happened."""
    actor: dict[str, Any]
    """Who did it."""
    trace_id: str | None
    """Its trace, if any."""
    run_id: str | None
    """Its run, if any."""
    span_id: str | None
    """Its span, if any."""
    details: dict[str, Any]
    """What was decided or changed."""
    alg: str
    """``sha256`` or ``hmac-sha256``."""
    prev_hash: str
    """The previous entry's hash (``GENESIS`` for the first)."""
    hash: str
    """This entry's hash."""


def audit_key() -> bytes | None:
    """The key of the keyed hash (``TETHER_AUDIT_KEY``), or None."""
    key = os.environ.get(AUDIT_KEY_ENV, "")
    # The bytes as set: a key made of random bytes is no UTF-8 text (Python holds the bytes
    # that are not as lone surrogates, which str.encode refuses).
    return os.fsencode(key) if key else None


def _payload(
    seq: int,
    r: AuditRecord | AuditEntry,
    actor_json: str,
    details_json: str,
    alg: str,
    prev_hash: str,
) -> bytes:
    return canonical_json(
        {
            "seq": seq,
            "entry_id": r.entry_id,
            "time_ns": r.time_ns,
            "kind": r.kind,
            "actor": actor_json,
            "trace_id": r.trace_id,
            "run_id": r.run_id,
            "span_id": r.span_id,
            "details": details_json,
            "alg": alg,
            "prev_hash": prev_hash,
        }
    ).encode()


def entry_hash(payload: bytes, alg: str, key: bytes | None) -> str | None:
    """The hash of an entry's payload; None for a keyed entry when no key is given."""
    if alg == HMAC_SHA256:
        return None if key is None else hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def append_audit(conn: Any, records: Sequence[AuditRecord], key: bytes | None) -> None:
    """Append ``records`` to the chain inside the caller's transaction, in order."""
    if not records:
        return
    lock_head(conn)  # before reading the head: two writers never read the same head
    head = conn.execute(
        select(tables.audit_head.c.seq, tables.audit_head.c.hash).where(tables.audit_head.c.id == 1)
    ).first()
    if head is None:
        head, restored = _restored_head(conn)
        if restored is not None:
            records = [restored, *records]
    seq, prev = int(head.seq), str(head.hash)
    alg = SHA256 if key is None else HMAC_SHA256
    rows = []
    for accepted in records:
        seq += 1
        r = _as_stored(accepted)
        actor_json = clean_text(canonical_json(r.actor)) or ""
        details_json = clean_text(canonical_json(r.details)) or ""
        digest = entry_hash(_payload(seq, r, actor_json, details_json, alg, prev), alg, key)
        assert digest is not None
        rows.append(
            {
                "seq": seq,
                "entry_id": r.entry_id,
                "time_ns": r.time_ns,
                "kind": r.kind,
                "actor": actor_json,
                "trace_id": r.trace_id,
                "run_id": r.run_id,
                "span_id": r.span_id,
                "details": details_json,
                "alg": alg,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    conn.execute(tables.audit.insert(), rows)
    conn.execute(
        update(tables.audit_head).where(tables.audit_head.c.id == 1).values(seq=seq, hash=prev)
    )


HEAD_RESTORED = "audit_head_restored"
"""The entry a writer appends first when it found the chain's head row gone (deleted from
the database): it put the row back from the last stored entry and went on."""


def _last_entry(conn: Any) -> dict[str, Any]:
    """The last stored entry's seq and hash: where a restored head row starts from."""
    a = tables.audit.c
    last = conn.execute(select(a.seq, a.hash).order_by(a.seq.desc()).limit(1)).first()
    return {"seq": 0, "hash": GENESIS} if last is None else {"seq": last.seq, "hash": last.hash}


def _restored_head(conn: Any) -> tuple[Any, AuditRecord | None]:
    """The head row, put back from the last stored entry when it was deleted (entries
    appended after it would otherwise be refused, and lost, for ever). Inserted unless
    another writer did so first (it waits for that one's commit), then locked and read as
    an append reads it. ``tether audit verify`` checks the chain as before; the entry
    ``audit_head_restored`` (returned, to append first, by the writer that put the row back;
    None for one that found another had) says it happened."""
    from sqlalchemy.dialects import postgresql, sqlite

    start = _last_entry(conn)
    values = {"id": 1, "seq": start["seq"], "hash": start["hash"]}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    put = conn.execute(
        dialect.insert(tables.audit_head)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(tables.audit_head.c.id)
    ).first()
    lock_head(conn)
    head = conn.execute(
        select(tables.audit_head.c.seq, tables.audit_head.c.hash).where(tables.audit_head.c.id == 1)
    ).one()
    if put is None:  # another writer put it back first (this one waited for it)
        return head, None
    log.error(
        "the audit chain's head row (tether_audit_head) was missing: restored from entry %s; "
        "the entries go on from there (an %s entry records it)",
        head.seq,
        HEAD_RESTORED,
    )
    entry = AuditRecord(
        entry_id=secrets.token_hex(16),
        time_ns=time.time_ns(),
        kind=HEAD_RESTORED,
        actor={"via": "audit writer"},
        details={"seq": head.seq, "reason": "the chain's head row was missing"},
    )
    return head, entry


def _as_stored(r: AuditRecord) -> AuditRecord:
    """``r`` with its texts as the columns keep them (clipped, no NUL, no lone surrogate),
    so the hash covers what is stored: a value stored otherwise than hashed was an intact
    entry that verify calls edited, and one the database refused lost the entry."""
    return replace(
        r,
        kind=column_text(r.kind, AUDIT_KIND) or "",
        trace_id=column_text(r.trace_id, AUDIT_TRACE),
        run_id=column_text(r.run_id, AUDIT_RUN),
        span_id=column_text(r.span_id, AUDIT_SPAN),
    )


def without_existing_audit(conn: Any, records: list[AuditRecord]) -> list[AuditRecord]:
    """The records whose entry id is not stored yet (a crash journal replayed)."""
    if not records:
        return records
    ids = [r.entry_id for r in records]
    stored = set(
        conn.execute(select(tables.audit.c.entry_id).where(tables.audit.c.entry_id.in_(ids)))
        .scalars()
        .all()
    )
    return [r for r in records if r.entry_id not in stored]


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text}
    return value if isinstance(value, dict) else {"value": value}


class UnreadableAudit(CorruptRecord):
    """A stored audit value of the wrong type (SQLite keeps text or a fraction in a BIGINT
    column): the row was edited by hand."""


def _whole(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UnreadableAudit(f"{what} is {value!r}, not a whole number: edited in the database")


def _entry(row: Any) -> tuple[AuditEntry, str, str]:
    seq = _whole(row.seq, "audit entry: seq")
    entry = AuditEntry(
        seq=seq,
        entry_id=row.entry_id,
        time_ns=_whole(row.time_ns, f"audit entry {seq}: time_ns"),
        kind=row.kind,
        actor=_loads(row.actor),
        trace_id=row.trace_id,
        run_id=row.run_id,
        span_id=row.span_id,
        details=_loads(row.details),
        alg=row.alg,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
    return entry, row.actor, row.details


def iter_audit(
    conn: Any, *, after: int | None = 0, limit: int | None = None, chunk: int = 5000
) -> Iterator[tuple[AuditEntry, str, str]]:
    """Entries by seq (with their actor and details as stored), a chunk of rows at a time;
    ``after=None``: every row, also one put at a seq below 1 (the writers start at 1)."""
    left = limit
    while left is None or left > 0:
        n = chunk if left is None else min(chunk, left)
        query = select(tables.audit).order_by(tables.audit.c.seq).limit(n)
        if after is not None:
            query = query.where(tables.audit.c.seq > after)
        rows = conn.execute(query).all()
        for row in rows:
            yield _entry(row)
        if len(rows) < n:
            return
        after = _whole(rows[-1].seq, "audit entry: seq")
        if left is not None:
            left -= len(rows)


def audit_head(conn: Any) -> tuple[int, str]:
    """The head row: the last entry's seq and hash as the writers left them."""
    row = conn.execute(select(tables.audit_head.c.seq, tables.audit_head.c.hash)).first()
    if row is None:
        return 0, GENESIS
    return _whole(row.seq, "the chain's head row: seq"), str(row.hash)


def hash_at(row: tuple[AuditEntry, str, str], seq: int, key: bytes | None) -> str | None:
    """The hash a stored entry (with its actor and details as stored) has at ``seq``."""
    e, actor, details = row
    return entry_hash(_payload(seq, e, actor, details, e.alg, e.prev_hash), e.alg, key)


def lock_head(conn: Any) -> None:
    """Write-lock the head row inside the caller's transaction (a row lock on PostgreSQL, the
    write lock on SQLite): appends wait, and what is read next stays as read until commit."""
    conn.execute(
        update(tables.audit_head)
        .where(tables.audit_head.c.id == 1)
        .values(seq=tables.audit_head.c.seq)
    )


def run_entries(conn: Any, run_id: str, kind: str) -> list[tuple[AuditEntry, str, str]]:
    """The entries of one kind about one run, by seq (with actor and details as stored)."""
    a = tables.audit.c
    rows = conn.execute(
        select(tables.audit).where(a.kind == kind, a.run_id == run_id).order_by(a.seq)
    ).all()
    return [_entry(row) for row in rows]


def entry_problem(row: tuple[AuditEntry, str, str], key: bytes | None) -> str | None:
    """Why one stored entry cannot be trusted (edited, or unkeyed while a key is set: anyone
    who can write the database could have made it), or None when its own hash holds."""
    entry = row[0]
    if key is not None and entry.alg != HMAC_SHA256:
        return f"audit entry {entry.seq} is not keyed although TETHER_AUDIT_KEY is set"
    if hash_at(row, entry.seq, key) != entry.hash:
        why = "cannot be checked without TETHER_AUDIT_KEY" if key is None else "was changed"
        return f"audit entry {entry.seq} {why}"
    return None
