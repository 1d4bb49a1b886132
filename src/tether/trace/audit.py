"""``AuditLog``: where decisions, policy loads and admin changes are recorded for audit.

Entries go through the trace writer of a store (journaled when accepted, so a crash does not
lose them; chained when written, see ``tether.store.audit``). A sink without an ``audit``
method (tracing off, a sink of one's own) records none.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from tether.core import now_ns
from tether.store import AuditRecord

if TYPE_CHECKING:
    from tether.trace.sink import TraceSink

DECISION = "decision"
POLICY_LOAD = "policy_load"


class AuditLog:
    """Records audit entries into a trace sink (default: the configured store's writer)."""

    def __init__(self, sink: TraceSink | None = None) -> None:
        if sink is None:
            from tether.core import Settings
            from tether.trace.recorder import writer_for

            sink = writer_for(Settings.from_env().database_url)
        self.sink = sink

    @property
    def enabled(self) -> bool:
        """False when the sink keeps no audit entries (tracing off)."""
        return callable(getattr(self.sink, "audit", None))

    def record(
        self,
        kind: str,
        actor: dict[str, Any],
        details: dict[str, Any] | None = None,
        *,
        trace_id: str | None = None,
        run_id: str | None = None,
        span_id: str | None = None,
    ) -> AuditRecord | None:
        """Append an entry (``kind``: ``decision``, ``policy_load``, ``key_created``...);
        the entry accepted, or None when the sink keeps none."""
        audit = getattr(self.sink, "audit", None)
        if audit is None:
            return None
        entry = AuditRecord(
            entry_id=secrets.token_hex(16),
            time_ns=now_ns(),
            kind=kind,
            actor={k: v for k, v in actor.items() if v is not None},
            details=dict(details or {}),
            trace_id=trace_id,
            run_id=run_id,
            span_id=span_id,
        )
        audit(entry)
        return entry

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the entries accepted so far are written."""
        return self.sink.flush(timeout)
