"""``/api/v1/approvals``: tool calls that paused runs of the caller's project wait on, and a
person's answer to one. The same code as ``tether approvals list|approve|deny``
(``tether.runtime.approvals``): an answer is an ``approval`` entry of the hash-chained audit
log, final, and names who gave it from the API key that sent it. Reading them needs ``read``;
answering needs ``decide_approvals`` (developer and admin keys; a viewer only reads, an agent
key never answers for the agent it runs). Resuming the run stays with whoever runs the agent
(``tether resume``, ``Agent.resume``): the server does not run agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tether.server.auth import Approver, Principal, Reader
from tether.server.filters import MAX_API_PAGE
from tether.server.runs import project_run, reader

if TYPE_CHECKING:
    from tether.controls.approvals import Approval

router = APIRouter(tags=["approvals"])

MAX_REASON_CHARS = 2000


class AnswerView(BaseModel):
    """A person's answer to an escalated tool call."""

    approved: bool
    approver: str
    """Who answered: over the API, the key (its name and id)."""
    reason: str
    call_id: str
    tool: str
    args_hash: str
    """Content hash of the call's arguments: the answer holds for exactly these."""
    control: str
    """The control that escalated the call."""
    entry_id: str
    """The audit log entry that records it."""


class WaitingCallView(BaseModel):
    """A run paused on an escalated tool call."""

    run_id: str
    trace_id: str
    agent: str | None
    agent_version: str | None
    started_ns: int
    state: str
    """``waiting`` (nobody answered), ``approved`` or ``denied`` (to be resumed),
    ``resumed``, or ``problem`` (it cannot be answered: see ``problem``)."""
    call_id: str | None
    tool: str | None
    args_hash: str | None
    span_id: str | None
    """The call's tool span: its arguments as the trace stores them (masked by the run's
    guards) are at ``GET /runs/{run_id}/spans/{span_id}``."""
    control: str | None
    escalation: str | None
    """Why the control asked."""
    answer: AnswerView | None
    resumed_as: str | None
    """The run it went on as, once resumed."""
    problem: str | None


class ApprovalPage(BaseModel):
    """Runs waiting on a person, newest first, a page at a time."""

    approvals: list[WaitingCallView]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next page; null on the last page."""


class AnswerBody(BaseModel):
    """An answer to give."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=MAX_REASON_CHARS)
    """Why (kept in the audit log; a denial's reason is told to the model)."""
    call_id: str | None = Field(default=None, max_length=200)
    """The call's id, as listed: refused (409) unless the run waits on that call."""


def _answer_view(answer: Approval) -> AnswerView:
    return AnswerView(**{k: v for k, v in answer.to_json().items() if k != "run_id"})


@router.get("/approvals")
def list_approvals(
    request: Request,
    principal: Reader,
    waiting: bool = True,
    limit: Annotated[int, Query(ge=1, le=MAX_API_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ApprovalPage:
    """Runs of the project paused on a tool call a control escalated, newest first (keyset:
    pass ``next_cursor`` back as ``cursor``). ``waiting`` (default): only calls nobody has
    answered; ``waiting=false`` also answered and resumed ones (with their answer). With
    ``waiting``, a page may hold fewer than ``limit``: go on while ``next_cursor`` is set."""
    from tether.runtime.approvals import waiting_calls

    found, next_cursor = waiting_calls(
        reader(request),
        project=principal.project,
        limit=limit,
        cursor=cursor or None,
        waiting_only=waiting,
    )
    views = []
    for w in found:
        run, call = w.run, w.call
        views.append(
            WaitingCallView(
                run_id=run.run_id,
                trace_id=run.trace_id,
                agent=run.agent_name,
                agent_version=run.agent_version,
                started_ns=run.started_ns,
                state=w.state,
                call_id=None if call is None else call.call_id,
                tool=None if call is None else call.tool,
                args_hash=None if call is None else call.args_hash,
                span_id=None if call is None else call.span_id or None,
                control=None if call is None else call.control,
                escalation=None if call is None else call.reason,
                answer=None if w.answer is None else _answer_view(w.answer),
                resumed_as=w.resumed_as,
                problem=w.problem,
            )
        )
    return ApprovalPage(approvals=views, next_cursor=next_cursor)


def approver_of(principal: Principal) -> str:
    """Who answers, as the audit log names them: the key's name (on one line, its control
    characters as U+FFFD) and id (the key's text is never recorded)."""
    from tether.core.text import one_line

    key = principal.key
    if key is None:
        return "dev mode (no API key)"
    name = one_line(key.name)  # a key's name is free text: it may hold any character
    return f"{name} (key {key.key_id})" if name else f"key {key.key_id}"


def _decide(
    request: Request, principal: Principal, run_id: str, body: AnswerBody, approved: bool
) -> AnswerView:
    from tether.runtime.approvals import decide

    run = project_run(request, principal.project, run_id)  # 404 for another project's
    answer = decide(
        reader(request),
        run,
        approved=approved,
        approver=approver_of(principal),
        reason=body.reason,
        call_id=body.call_id,
        actor=principal.actor("api", request),
    )
    return _answer_view(answer)


@router.post("/approvals/{run_id}/approve")
def approve(
    request: Request, run_id: str, principal: Approver, body: AnswerBody | None = None
) -> AnswerView:
    """Approve the tool call the paused run waits on: resumed, the run makes that call
    (once). An answer is final: another one is 409, as is one for a run not waiting; the same
    key's same answer (decision and reason) again is the recorded answer (a retry)."""
    return _decide(request, principal, run_id, body or AnswerBody(), True)


@router.post("/approvals/{run_id}/deny")
def deny(
    request: Request, run_id: str, principal: Approver, body: AnswerBody | None = None
) -> AnswerView:
    """Deny the tool call the paused run waits on: resumed, the run is refused that call and
    the model is told who denied it and why. An answer is final (another one is 409; the
    same key's same answer again is the recorded answer)."""
    return _decide(request, principal, run_id, body or AnswerBody(), False)
