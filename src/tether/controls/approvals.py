"""A person's answer to an escalated tool call, and how the pipeline honours it.

A control that escalates a tool call at ``before_tool`` (a Cedar permit annotated
``@escalate``, a guard with ``action: escalate``) pauses the run. A person then approves or
denies that exact call (``tether approvals approve|deny RUN_ID``, ``Agent.approve``/``deny``),
which is recorded in the audit log, and the run is resumed (``tether resume``,
``Agent.resume``). On the resumed run the same control escalates the same call again; the
pipeline finds the answer for it and, instead of pausing, lets the call through (approved) or
refuses it (denied), naming the person. An answer settles only the call it was given for: the
same call id, tool and arguments (their content hash), escalated by the same control, and only
once. Any other call still asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.core import content_hash

if TYPE_CHECKING:
    from tether.controls.pipeline import Decision
    from tether.providers import ToolCall

APPROVAL_BY = "tether.approval.by"
"""Decision attribute: who approved or denied the escalated call."""
APPROVAL_APPROVED = "tether.approval.approved"
"""Decision attribute: ``true`` approved, ``false`` denied."""
APPROVAL_ENTRY = "tether.approval.entry_id"
"""Decision attribute: the audit entry that records the answer."""


@dataclass(frozen=True, slots=True)
class Approval:
    """A person's answer to one escalated tool call of a paused run."""

    run_id: str
    """The paused run."""
    call_id: str
    """The tool call's id (as the model gave it)."""
    tool: str
    """The tool's name."""
    args_hash: str
    """Content hash of the call's arguments (``tether.core.content_hash``)."""
    control: str
    """The control that escalated it (``cedar_authorization``)."""
    approved: bool
    """``True``: let the call run; ``False``: refuse it."""
    approver: str
    """Who answered."""
    reason: str = ""
    """Why, in the approver's words (may be empty)."""
    entry_id: str = ""
    """The audit entry that records the answer."""

    def settles(self, call: ToolCall, control: str) -> bool:
        """Whether this answers ``control``'s escalation of ``call``: the same call id, tool
        and arguments, and the control that asked."""
        return (
            call.id == self.call_id
            and call.name == self.tool
            and control == self.control
            and content_hash(call.arguments) == self.args_hash
        )

    @property
    def answer(self) -> str:
        """``approved by NAME`` or ``denied by NAME``, with the reason when given."""
        said = f"{'approved' if self.approved else 'denied'} by {self.approver}"
        return f"{said}: {self.reason}" if self.reason else said

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "call_id": self.call_id,
            "tool": self.tool,
            "args_hash": self.args_hash,
            "control": self.control,
            "approved": self.approved,
            "approver": self.approver,
            "reason": self.reason,
            "entry_id": self.entry_id,
        }


def settled(decision: Decision, call: ToolCall | None, answers: dict[str, Approval]) -> Decision:
    """``decision`` (an escalation at ``before_tool``) as a person's answer settles it: an
    Allow or a Block naming them, taken out of ``answers`` (it settles once); the escalation
    itself when no answer is for this call."""
    from tether.controls.pipeline import Decision, Verdict

    answer = answers.get(call.id) if call is not None else None
    if answer is None or call is None or not answer.settles(call, decision.control):
        return decision
    del answers[call.id]
    details = {
        **(decision.details or {}),
        APPROVAL_BY: answer.approver,
        APPROVAL_APPROVED: answer.approved,
        APPROVAL_ENTRY: answer.entry_id,
    }
    verdict = Verdict.ALLOW if answer.approved else Verdict.BLOCK
    reason = f"{decision.reason}; {answer.answer}"
    return Decision(verdict, reason, control=decision.control, details=details)
