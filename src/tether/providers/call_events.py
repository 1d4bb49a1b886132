"""Events from inside a model call, recorded on the span of the call that caused them.

A ``Model`` knows nothing of traces, and one model object serves many runs at once, so what
happens inside a call (a circuit breaker opening, say) cannot be kept on the model. The caller
that owns the span (the model step of a run) says where such events go for the duration of one
call, with ``call_events_to``; code inside the call reports with ``report_call_event``. A
context variable carries the sink, so concurrent calls each reach their own span, and outside
any call reporting does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, TypeAlias

from tether.providers.types import ModelResponse

CallEventSink: TypeAlias = Callable[[str, dict[str, Any]], None]
"""Takes an event's name and attributes."""
SpentSink: TypeAlias = Callable[[ModelResponse, dict[str, Any]], None]
"""Takes what a failed attempt of a call received (``report_spent``) and attributes."""

_sink: ContextVar[tuple[CallEventSink, SpentSink | None] | None] = ContextVar(
    "tether_call_events", default=None
)


class call_events_to:  # lower case: used as a function, ``with call_events_to(sink):``
    """Within this block (in this task), events reported by a model call go to ``sink``, and
    what its failed attempts spent (``report_spent``) to ``spent``. (A class, not a
    ``@contextmanager`` generator: it is entered on every model call.)"""

    __slots__ = ("_sinks", "_token")

    def __init__(self, sink: CallEventSink, spent: SpentSink | None = None) -> None:
        self._sinks = (sink, spent)
        self._token: Token[tuple[CallEventSink, SpentSink | None] | None] | None = None

    def __enter__(self) -> None:
        self._token = _sink.set(self._sinks)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _sink.reset(self._token)


def report_call_event(name: str, attributes: dict[str, Any]) -> None:
    """Record an event on the span of the model call in progress, if a caller asked for them."""
    sinks = _sink.get()
    if sinks is not None:
        sinks[0](name, attributes)


def report_spent(partial: ModelResponse, attributes: dict[str, Any]) -> None:
    """Report an attempt of the model call in progress that failed after the provider had
    sent part of a reply (``partial``: its text, tool calls and usage so far; ``usage_known``
    whether usage came), when the call goes on (a retry) or fails with an error that cannot
    carry it: the caller charges the run for it and records it on the call's span. A
    provider billed those tokens whatever became of the attempt."""
    sinks = _sink.get()
    if sinks is not None and sinks[1] is not None:
        sinks[1](partial, attributes)
