"""Blocking tool work in daemon threads, awaited from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any

from tether.core import describe_exception


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled (tool timeout, run stopped)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _raised(exc: BaseException) -> str:
    """``the tool raised SystemExit(3)``, safe on any exception."""
    name, _, text = describe_exception(exc).partition(": ")
    return f"the tool raised {name}({text})"


async def run_in_daemon_thread(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a blocking function in its own daemon thread and await its result.

    Unlike ``asyncio.to_thread``, a call that never returns (a hung tool that timed out or was
    abandoned when the run stopped) does not keep the process from exiting. It is not
    stopped either: Python cannot stop a thread, so a CPU-bound call that timed out keeps
    running until it returns (``isolation: process`` runs a tool where it can be killed).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(func, **kwargs)
        except StopIteration as exc:  # a Future refuses StopIteration; keep what it said
            error = RuntimeError(_raised(exc))
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit/KeyboardInterrupt in a tool thread: the tool
            error = RuntimeError(_raised(exc))  # failed
        # If the event loop is gone, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, value, error)

    name = f"tether-tool-{getattr(func, '__name__', 'call')}"
    threading.Thread(target=target, name=name, daemon=True).start()
    return await future
