"""Approving or denying the tool call a paused run waits on, and claiming the run's resume.

A run paused by an escalation at ``before_tool`` keeps, in its checkpoint, the call it waits
on (``RunState.awaiting_approval``). A person's answer to it is an ``approval`` entry in the
hash-chained audit log (who, approved or denied, why, and the call: id, tool, argument hash,
escalating control), written straight into the store inside a transaction that holds the
chain's head, so that of two answers racing for one call exactly one is recorded: an answer
is final. Resuming reads the answers back (an entry whose own hash does not hold, or that is
not keyed while ``TETHER_AUDIT_KEY`` is set, is refused) and first appends a ``run_resumed``
entry the same way, so a paused run is resumed once: two resumes racing cannot both run the
approved call. The resumed run is started (and in the store) before that entry names it, so a
resume whose process died before its run let the approved call through does not use the pause
up: once the dead process's trace is recovered (the run closed as failed, with no decision on
the call), the paused run can be resumed again.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from tether.controls.approvals import Approval
from tether.core import Conflict, CorruptRecord, StoreError, TetherError, now_ns
from tether.runtime.state import PendingApproval, RunState
from tether.store import AuditRecord, RunQuery

if TYPE_CHECKING:
    from tether.store import RunRecord, StoreReader
    from tether.store.audit import AuditEntry

APPROVAL = "approval"
"""Audit entry kind: a person's answer to an escalated tool call."""
RUN_RESUMED = "run_resumed"
"""Audit entry kind: a paused run was resumed (once), as which run."""
MAX_APPROVER_CHARS = 200
MAX_REASON_CHARS = 2000


def paused_state(store: StoreReader, run: str | RunRecord) -> RunState:
    """The state a paused run was checkpointed with, when it waits on an escalated tool call
    (``run``: the run's record, or its id or a unique prefix of it). ``Conflict`` saying why
    not otherwise (the run is not paused, or not on a tool call)."""
    if isinstance(run, str):
        run = store.get_run(run)
    if run.status != "paused":
        raise Conflict(
            f"run {run.run_id} is {run.status} (outcome {run.outcome}), not paused: only a run "
            "paused for approval can be approved, denied or resumed"
        )
    checkpoints = store.get_checkpoints(run.run_id)
    if not checkpoints:
        raise Conflict(f"run {run.run_id} is paused but has no checkpoint to go on from")
    try:
        state = RunState.from_json(checkpoints[-1].state_json)
    except ValidationError as exc:
        raise CorruptRecord(
            f"the checkpoint of run {run.run_id} cannot be read: {exc.errors()[0].get('msg', exc)}",
            hint="it was changed outside Tether or written by an incompatible version; the run "
            "cannot go on from it",
        ) from None
    if state.awaiting_approval is None:
        raise Conflict(
            f"run {run.run_id} is paused ({state.stop_reason or run.outcome}), not on a tool call "
            "a control escalated: there is no call to approve or deny"
        )
    return state


def _checked_text(value: str, what: str, limit: int, *, required: bool, lines: bool) -> str:
    """``value`` stripped, or ``TetherError``: empty when ``required``, too long, or holding
    control characters (but tabs and newlines when it may have ``lines``)."""
    text = value.strip()
    if required and not text:
        raise TetherError(f"{what} is empty: say who answers (a name or an e-mail address)")
    if len(text) > limit:
        raise TetherError(f"{what} is {len(text):,} characters long; at most {limit:,}")
    allowed = "\t\n" if lines else ""
    if any(unicodedata.category(c) == "Cc" and c not in allowed for c in text):
        raise TetherError(f"{what} holds control characters")
    return text


def _store_failed(store: StoreReader, doing: str, exc: SQLAlchemyError) -> StoreError:
    from tether.store.db import driver_message

    return StoreError(f"{doing} {store.display_url} failed: {driver_message(exc)}")


def _append_unless(
    store: StoreReader,
    record: AuditRecord,
    doing: str,
    clash: Callable[[Any], AuditEntry | None],
) -> AuditEntry | None:
    """Append ``record`` to the audit log in one transaction holding the chain's head, unless
    ``clash`` (asked inside it) finds an entry that forbids it: that entry, or None when
    ``record`` was appended. Of two writers racing, the second sees the first's entry.
    An appended entry is on disk before this returns (synced: a power cut keeps it too), as
    is everything committed before it (the resumed run its claim names)."""
    from tether.store.audit import append_audit, audit_key, lock_head
    from tether.store.db import sync_committed

    try:
        with store.engine.begin() as conn:
            lock_head(conn)
            found = clash(conn)
            if found is None:
                append_audit(conn, [record], audit_key())
    except SQLAlchemyError as exc:
        raise _store_failed(store, doing, exc) from exc
    if found is None:
        try:
            sync_committed(store.url)
        except OSError as exc:
            raise StoreError(
                f"{doing} {store.display_url}: written, but syncing it to disk failed: {exc}"
            ) from exc
    return found


def _first(conn: Any, run_id: str, kind: str) -> AuditEntry | None:
    from tether.store.audit import run_entries

    entries = run_entries(conn, run_id, kind)
    return entries[0][0] if entries else None


def _holding_claim(conn: Any, run_id: str) -> AuditEntry | None:
    """The ``run_resumed`` entry that holds the paused run ``run_id``: its latest, unless the
    run it names was abandoned (see ``_abandoned``); None when the run may be resumed."""
    from tether.store.audit import run_entries

    claims = run_entries(conn, run_id, RUN_RESUMED)
    if not claims:
        return None
    latest = claims[-1][0]
    return None if _abandoned(conn, str(latest.details.get("resumed_as"))) else latest


def _abandoned(conn: Any, resumed_as: str) -> bool:
    """Whether the run a resume started failed (its process died: the crash recovery closed
    it) before the pipeline settled the approved call and before it ran any tool call:
    nothing of the pause was used. The settlement is journaled before the call runs, as a
    decision event on the run and, where the sink keeps them, a ``decision`` audit entry; a
    call the controls let through without asking again (no settlement: a policy on the
    run's budget or risk that no longer escalates) is preceded by a ``tool_started`` event
    (``RunScope.tool_starting``): any of them holds the claim. A run still
    running, missing from the store (its trace not recovered yet: it may be running
    elsewhere), or ended otherwise than failed, holds its claim."""
    import json

    from sqlalchemy import select

    from tether.controls.approvals import APPROVAL_BY
    from tether.store import tables
    from tether.store.audit import run_entries
    from tether.trace.semconv import EVENT_CONTROL_DECISION, EVENT_RESUME_TOOL_STARTED

    runs, events = tables.runs.c, tables.events.c
    status = conn.execute(select(runs.status).where(runs.run_id == resumed_as)).scalar()
    if status != "failed":
        return False
    decisions = run_entries(conn, resumed_as, "decision")
    if any("approval" in entry.details for entry, _, _ in decisions):
        return False
    found = conn.execute(
        select(events.name, events.attributes).where(
            events.run_id == resumed_as,
            events.name.in_((EVENT_CONTROL_DECISION, EVENT_RESUME_TOOL_STARTED)),
        )
    ).all()
    return not any(
        name == EVENT_RESUME_TOOL_STARTED or APPROVAL_BY in json.loads(attributes)
        for name, attributes in found
    )


def decide(
    store: StoreReader,
    run_id: str | RunRecord,
    *,
    approved: bool,
    approver: str,
    reason: str = "",
    call_id: str | None = None,
    actor: dict[str, Any] | None = None,
) -> Approval:
    """Record a person's answer to the call the paused run ``run_id`` (its id, a unique
    prefix, or its record) waits on (``call_id``, if given, must be that call). ``actor`` adds
    to who answered (how: ``via``, a key id). ``Conflict`` when the run does not wait on a
    call, on that call, the call was answered already (by another answer: the same approver's
    same answer again is the one recorded, returned), or the run was resumed already;
    ``TetherError`` for an approver or reason that cannot be recorded."""
    from tether.store.audit import run_entries

    # A name is one line (it is printed in a row of 'tether approvals list'); a reason may
    # have several.
    approver = _checked_text(
        approver, "the approver", MAX_APPROVER_CHARS, required=True, lines=False
    )
    reason = _checked_text(reason, "the reason", MAX_REASON_CHARS, required=False, lines=True)
    state = paused_state(store, run_id)
    pending = state.awaiting_approval
    assert pending is not None
    if call_id is not None and call_id != pending.call_id:
        raise Conflict(
            f"run {state.run_id} waits on call {pending.call_id} ({pending.tool}), "
            f"not on {call_id!r}"
        )
    answer = Approval(
        run_id=state.run_id,
        call_id=pending.call_id,
        tool=pending.tool,
        args_hash=pending.args_hash,
        control=pending.control,
        approved=approved,
        approver=approver,
        reason=reason,
        entry_id=secrets.token_hex(16),
    )
    details = answer.to_json()
    for key in ("run_id", "approver", "entry_id"):  # the entry's own fields say these
        details.pop(key)
    record = AuditRecord(
        entry_id=answer.entry_id,
        time_ns=now_ns(),
        kind=APPROVAL,
        actor={**(actor or {}), "approver": approver},
        details={**details, "escalation": pending.reason},
        trace_id=state.trace_id,
        run_id=state.run_id,
        span_id=pending.span_id or None,
    )

    def same(entry: AuditEntry) -> bool:
        """The recorded answer is this one, given again (a reply lost, the request retried)."""
        d = entry.details
        return (
            d.get("approved") is approved
            and d.get("reason", "") == reason
            and entry.actor.get("approver") == approver
        )

    def clash(conn: Any) -> AuditEntry | None:
        answered = [
            e
            for e, _, _ in run_entries(conn, state.run_id, APPROVAL)
            if e.details.get("call_id") == pending.call_id
        ]
        if answered and same(answered[0]):
            return answered[0]
        return _first(conn, state.run_id, RUN_RESUMED) or (answered[0] if answered else None)

    found = _append_unless(store, record, "recording the answer in", clash)
    if found is not None and found.kind == APPROVAL and same(found):
        # The same person's same answer again: what was recorded (once), not a conflict.
        return replace(answer, entry_id=found.entry_id)
    if found is not None and found.kind == RUN_RESUMED:
        raise Conflict(
            f"run {state.run_id} was resumed already (as run "
            f"{found.details.get('resumed_as')}): its call cannot be answered now"
        )
    if found is not None:
        said = "approved" if found.details.get("approved") else "denied"
        raise Conflict(
            f"call {pending.call_id} ({pending.tool}) of run {state.run_id} was {said} "
            f"already by {found.actor.get('approver', '?')} (audit entry {found.seq}): "
            "an answer is final"
        )
    return answer


def answers_for(store: StoreReader, state: RunState) -> dict[str, Approval]:
    """People's answers to the calls of a paused run, by call id (the first answer of each
    call). ``TetherError`` when an answer's audit entry cannot be trusted."""
    from tether.store.audit import audit_key, entry_problem, run_entries

    key = audit_key()
    try:
        with store.engine.connect() as conn:
            rows = run_entries(conn, state.run_id, APPROVAL)
    except SQLAlchemyError as exc:
        raise _store_failed(store, "reading approvals from", exc) from exc
    answers: dict[str, Approval] = {}
    for row in rows:
        problem = entry_problem(row, key)
        if problem is not None:
            raise TetherError(
                f"the answer recorded for run {state.run_id} cannot be trusted: {problem}",
                hint="check the whole log with: tether audit verify",
            )
        entry, d = row[0], row[0].details
        try:
            answer = Approval(
                run_id=state.run_id,
                call_id=str(d["call_id"]),
                tool=str(d["tool"]),
                args_hash=str(d["args_hash"]),
                control=str(d["control"]),
                approved=d["approved"] is True,
                approver=str(entry.actor.get("approver", "")),
                reason=str(d.get("reason", "")),
                entry_id=entry.entry_id,
            )
        except KeyError as exc:
            raise TetherError(
                f"audit entry {entry.seq} (an approval of run {state.run_id}) lacks {exc}"
            ) from None
        answers.setdefault(answer.call_id, answer)
    return answers


def claim_resume(
    store: StoreReader, state: RunState, resumed_as: str, actor: dict[str, Any]
) -> None:
    """Record that the paused run is resumed as run ``resumed_as``; ``TetherError`` when it
    was resumed already (by this process or another, even at the same moment)."""

    record = AuditRecord(
        entry_id=secrets.token_hex(16),
        time_ns=now_ns(),
        kind=RUN_RESUMED,
        actor=actor,
        details={"resumed_as": resumed_as},
        trace_id=state.trace_id,
        run_id=state.run_id,
    )
    found = _append_unless(
        store, record, "recording the resume in", lambda conn: _holding_claim(conn, state.run_id)
    )
    if found is not None:
        raise _resumed_already(store, state.run_id, found)


def check_resumable(store: StoreReader, state: RunState) -> None:
    """``Conflict`` when the paused run was resumed already (and that resume was not
    abandoned): asked before a resume starts its run, so that a refused resume leaves none."""
    try:
        with store.engine.connect() as conn:
            found = _holding_claim(conn, state.run_id)
    except SQLAlchemyError as exc:
        raise _store_failed(store, "reading from", exc) from exc
    if found is not None:
        raise _resumed_already(store, state.run_id, found)


def _resumed_already(store: StoreReader, run_id: str, claim: AuditEntry) -> Conflict:
    """The refusal of a second resume; when the run that resumed it is still running (or not
    in the store yet), how it may be resumed again if that run's process died."""
    from sqlalchemy import select

    from tether.store import tables

    resumed = str(claim.details.get("resumed_as"))
    runs = tables.runs.c
    try:
        with store.engine.connect() as conn:
            status = conn.execute(select(runs.status).where(runs.run_id == resumed)).scalar()
    except SQLAlchemyError:
        status = None
    hint = None
    if status in (None, "running"):
        hint = (
            f"run {resumed} is still running; if its process died, it is closed (and this run "
            "can be resumed again) once Tether opens this store on the machine it ran on"
        )
    return Conflict(
        f"run {run_id} was resumed already, as run {resumed}: a paused run is resumed once",
        hint=hint,
    )


def resumed_as(store: StoreReader, run_id: str) -> str | None:
    """The run a paused run was resumed as, if it was (and that resume was not abandoned:
    the paused run can then be resumed again)."""
    try:
        with store.engine.connect() as conn:
            claim = _holding_claim(conn, run_id)
    except SQLAlchemyError as exc:
        raise _store_failed(store, "reading from", exc) from exc
    return None if claim is None else str(claim.details.get("resumed_as"))


@dataclass(frozen=True, slots=True)
class WaitingCall:
    """A run paused on an escalated tool call, as ``tether approvals list`` and
    ``GET /api/v1/approvals`` list it: the call, why it asked, and its answer so far."""

    run: RunRecord
    """The paused run."""
    call: PendingApproval | None
    """The call it waits on (``None``: see ``problem``)."""
    arguments: dict[str, Any] | None = None
    """The call's arguments, as the checkpoint keeps them (before any guard's masking)."""
    answer: Approval | None = None
    """The answer recorded for the call, if any."""
    resumed_as: str | None = None
    """The run it was resumed as, if it was."""
    problem: str | None = None
    """Why it cannot be answered (paused elsewhere than on a call, an answer that cannot be
    trusted)."""

    @property
    def state(self) -> str:
        """``waiting``, ``approved``, ``denied`` (answered, to be resumed), ``resumed``, or
        ``problem``."""
        if self.problem is not None:
            return "problem"
        if self.resumed_as is not None:
            return "resumed"
        if self.answer is not None:
            return "approved" if self.answer.approved else "denied"
        return "waiting"


def waiting_calls(
    store: StoreReader,
    *,
    project: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    waiting_only: bool = False,
) -> tuple[list[WaitingCall], str | None]:
    """Runs paused on an escalated tool call, newest first, a page of ``limit`` runs at a
    time (keyset: pass the returned cursor back as ``cursor``; ``None`` on the last page),
    in ``project`` (``None``: every project). ``waiting_only``: only calls nobody has answered
    yet (a page may then hold fewer than ``limit``)."""
    from tether.core import Outcome

    query = RunQuery(
        project=() if project is None else (project,),
        status=("paused",),
        outcome=(Outcome.ESCALATED.value,),
        limit=limit,
        cursor=cursor,
    )
    listing = store.find_runs(query, count=False)
    found = [_waiting_call(store, run) for run in listing.runs]
    if waiting_only:
        found = [w for w in found if w.state == "waiting"]
    return found, listing.next_cursor


def _waiting_call(store: StoreReader, run: RunRecord) -> WaitingCall:
    try:
        state = paused_state(store, run)
        pending = state.awaiting_approval
        assert pending is not None  # paused_state says why when it is not
        answer = answers_for(store, state).get(pending.call_id)
    except StoreError:  # the store failing is no row's problem
        raise
    except TetherError as exc:  # paused elsewhere than on a call, an untrusted answer
        return WaitingCall(run, None, problem=exc.message)
    call = next((c for c in state.pending_tool_calls if c.id == pending.call_id), None)
    return WaitingCall(
        run,
        pending,
        arguments=call.arguments if call is not None else {},
        answer=answer,
        resumed_as=resumed_as(store, run.run_id),
    )
