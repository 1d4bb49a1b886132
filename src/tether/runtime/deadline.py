"""``Deadline``: what ``asyncio.timeout_at(when)`` does around an await, at a fraction of its cost.

A run's steps are short and many; ``asyncio.timeout_at`` around each one schedules a timer,
cancels it, and walks a state machine, which cost as much as the rest of a small step. A
``Deadline`` keeps one timer for all the steps of a run (``exit(keep=True)`` leaves it
scheduled for the next step; ``close()`` cancels it when the run ends) and is entered and left
with plain calls rather than an ``async with``.

The semantics are those of ``asyncio.Timeout`` (Python 3.11): when the deadline passes while
a task is inside, that task is cancelled, and leaving with the ``CancelledError`` this caused
(and no other cancellation requested meanwhile) turns it into ``TimeoutError``. A deadline
already past when it is entered fires on the loop's next iteration. A deadline that passes
while no task is inside does nothing then; the next ``enter()`` finds it past and fires.

One task at a time: ``active`` says whether a task is inside (a second, concurrent user takes
an ``asyncio.timeout_at`` of its own).

Deadlines of one duration made one after another fall due in the order they were made, so a
``DeadlineQueue`` serves them all with one loop timer, set for the first that is still to
come: most runs end long before their deadline, and then cost a list append and a pop, not a
timer scheduled and cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

_RESOLUTION = time.get_clock_info("monotonic").resolution
"""What the event loop adds to its clock when it decides which timers are due."""


class DeadlineQueue:
    """The deadlines of one duration on one event loop, in the order they fall due."""

    __slots__ = ("_entries", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._entries: deque[list[object]] = deque()  # [when, Deadline, or None once dropped]
        self._handle: asyncio.TimerHandle | None = None

    def add(self, deadline: Deadline) -> list[object] | None:
        """Queue ``deadline``; None when it falls due before the last one queued (it then
        needs a timer of its own)."""
        entries, when = self._entries, deadline.when
        if entries and when < entries[-1][0]:  # type: ignore[operator]
            return None
        entry: list[object] = [when, deadline]
        entries.append(entry)
        if self._handle is None:
            self._handle = self._loop.call_at(when, self._due)
        return entry

    def drop(self, entry: list[object]) -> None:
        """A deadline that will not fire (its work is done). Its loop timer stays set for
        when it was due: that call then finds the next deadline to come."""
        entry[1] = None
        entries = self._entries
        while entries and entries[0][1] is None:
            entries.popleft()

    def _due(self) -> None:
        self._handle = None
        entries = self._entries
        end = self._loop.time() + _RESOLUTION
        while entries and entries[0][0] <= end:  # type: ignore[operator]
            deadline = entries.popleft()[1]
            if isinstance(deadline, Deadline):
                deadline._fire()
        while entries and entries[0][1] is None:
            entries.popleft()
        if entries:
            self._handle = self._loop.call_at(entries[0][0], self._due)  # type: ignore[arg-type]


class Deadline:
    __slots__ = (
        "_cancelling",
        "_entry",
        "_expiring",
        "_handle",
        "_queue",
        "_task",
        "expired",
        "when",
    )

    def __init__(self, when: float, queue: DeadlineQueue | None = None) -> None:
        self.when = when
        """The deadline, in the event loop's clock (``loop.time()``)."""
        self.expired = False
        """Whether the last ``enter()``/``exit()`` ended by this deadline (``Timeout.expired``)."""
        self._queue = queue
        """Where this deadline's timer comes from (deadlines of the same duration), if any."""
        self._entry: list[object] | None = None
        self._handle: asyncio.Handle | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expiring = False

    @property
    def active(self) -> bool:
        """A task is inside (between ``enter()`` and ``exit()``)."""
        return self._task is not None

    def enter(self) -> None:
        """The current task is inside until ``exit()``: the deadline cancels it."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline is entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._expiring = self.expired = False
        if self._handle is None and self._entry is None:
            loop = task.get_loop()
            if self.when <= loop.time():
                self._handle = loop.call_soon(self._fire)
                return
            if self._queue is not None:
                self._entry = self._queue.add(self)
            if self._entry is None:
                self._handle = loop.call_at(self.when, self._fire)

    def exit(self, exc_type: type[BaseException] | None, *, keep: bool = False) -> bool:
        """Leave (with the exception that ended the work, if any). True when the work was
        cancelled by this deadline: the caller raises ``TimeoutError`` from it. ``keep``
        leaves the timer scheduled for the next ``enter()``."""
        task, self._task = self._task, None
        if not keep:
            self.close()
        if not self._expiring:
            return False
        self._expiring = False
        self.expired = True
        assert task is not None
        return task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError

    def close(self) -> None:
        """Cancel the timer (the run is over)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        entry, self._entry = self._entry, None
        if entry is not None:
            assert self._queue is not None
            self._queue.drop(entry)

    def _fire(self) -> None:
        self._handle = self._entry = None
        task = self._task
        if task is not None:
            task.cancel()
            self._expiring = True
