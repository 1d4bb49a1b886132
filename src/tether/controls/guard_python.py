"""Guards written in Python: a function judging a text, wrapped as a control."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, Unpack

from tether.controls.guard_base import Channel, GuardControl, GuardOptions, GuardResult
from tether.controls.pipeline import Decision, HookContext

GuardAnswer: TypeAlias = "bool | str | Decision | None"
GuardFunction: TypeAlias = Callable[[str], "GuardAnswer | Awaitable[GuardAnswer]"]
"""``(text) -> bool | str | Decision | None``, sync or async."""


class FunctionGuard(GuardControl):
    """A function of yours as a guard. It gets the text and answers ``True`` or ``None`` (let
    it through), ``False`` (flag it), a string (flag it, with that string as the reason) or a
    ``Decision`` (taken as it is: ``Decision.modify(new_text, reason)`` rewrites the text, a
    tool result's included). A flagged text gets the rule's ``action``.

    A sync function runs in a worker thread, an async one on the event loop; either has
    ``timeout_s`` (a sync one that times out keeps running in its thread until it returns).
    Anything else it returns, an exception or a timeout is a failure of the guard: the run
    stops (outcome ``control_error``) unless ``fail_open``."""

    guard = "python"
    default_channels: tuple[Channel, ...] = ("output",)

    def __init__(
        self,
        function: GuardFunction,
        *,
        timeout_s: float = 10.0,
        **options: Unpack[GuardOptions],
    ) -> None:
        if not callable(function):
            raise TypeError(f"a Python guard needs a function, got {type(function).__name__}")
        label = getattr(function, "__name__", type(function).__name__)
        _check_callable_with_text(function, label)
        options.setdefault("name", f"guard.python.{label}")
        super().__init__(**options)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.function = function
        self.label = label
        self.timeout_s = timeout_s

    async def judge(self, text: str, channel: Channel, ctx: HookContext | None) -> GuardResult:
        answer = await self._call(text)
        if answer is None or answer is True:
            return GuardResult(False, f"passed {self.label}")
        if answer is False:
            return GuardResult(True, f"failed {self.label}")
        if isinstance(answer, str):
            return GuardResult(True, answer.strip() or f"failed {self.label}")
        if isinstance(answer, Decision):
            flagged = answer.verdict != "allow"
            return GuardResult(flagged, answer.reason or self.label, decision=answer)
        raise TypeError(
            f"{self.label} returned {type(answer).__name__}; a guard function returns "
            "True/None, False, a reason (str) or a Decision"
        )

    async def _call(self, text: str) -> Any:
        function = self.function
        try:
            async with asyncio.timeout(self.timeout_s):
                if inspect.iscoroutinefunction(function):
                    return await function(text)
                answer = await asyncio.to_thread(function, text)
                if inspect.isawaitable(answer):  # a callable object with an async __call__
                    return await answer
                return answer
        except TimeoutError:
            raise TimeoutError(f"{self.label} took more than {self.timeout_s:g}s") from None


def _check_callable_with_text(function: Callable[..., Any], label: str) -> None:
    """A ``TypeError`` (a spec error naming the rule's line, when built from a spec) for a
    function that cannot take one text, or that yields rather than answers: found when the
    guard is built, not as every request fails closed."""
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(f"{label} is a generator; a guard function returns its answer")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a callable without a signature: judged when called
        return
    try:
        signature.bind("text")
    except TypeError as exc:
        raise TypeError(
            f"{label}{signature} cannot be called with one text ({exc}); a guard function "
            "takes (text)"
        ) from None
