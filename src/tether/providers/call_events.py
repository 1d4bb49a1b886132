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

CallEventSink: TypeAlias = Callable[[str, dict[str, Any]], None]
"""Takes an event's name and attributes."""

_sink: ContextVar[CallEventSink | None] = ContextVar("tether_call_events", default=None)


class call_events_to:  # lower case: used as a function, ``with call_events_to(sink):``
    """Within this block (in this task), events reported by a model call go to ``sink``. (A
    class, not a ``@contextmanager`` generator: it is entered on every model call.)"""

    __slots__ = ("_sink", "_token")

    def __init__(self, sink: CallEventSink) -> None:
        self._sink = sink
        self._token: Token[CallEventSink | None] | None = None

    def __enter__(self) -> None:
        self._token = _sink.set(self._sink)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _sink.reset(self._token)


def report_call_event(name: str, attributes: dict[str, Any]) -> None:
    """Record an event on the span of the model call in progress, if a caller asked for them."""
    sink = _sink.get()
    if sink is not None:
        sink(name, attributes)
