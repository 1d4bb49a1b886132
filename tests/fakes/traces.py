"""Reading back what a run wrote: its run record, spans and events, after a flush."""

from __future__ import annotations

from typing import Any

from tether.store import Store
from tether.trace import writer_for


def trace_of(url: str, run_id: str) -> tuple[Any, list[Any], list[Any]]:
    """The run record, spans and events of ``run_id`` in the store at ``url``."""
    writer_for(url).flush()
    store = Store(url)
    return store.get_run(run_id), store.get_spans(run_id), store.get_events(run_id)


def control_decisions(url: str, run_id: str, control: str) -> list[dict[str, Any]]:
    """The attributes of one control's decision events in a run, in order."""
    from tether.trace import semconv

    _, _, events = trace_of(url, run_id)
    return [
        e.attributes
        for e in events
        if e.name == semconv.EVENT_CONTROL_DECISION
        and e.attributes[semconv.TETHER_CONTROL_NAME] == control
    ]
