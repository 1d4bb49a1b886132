"""Function tools run in a child process (``isolation: process``), killed at their timeout.

A tool run in a thread (the default) cannot be stopped: when it times out the run moves on,
but a CPU-bound call keeps spinning in its thread until it returns. A process can be killed.
Each call forks a fresh child from a ``forkserver`` (``spawn`` where there is none) that has
Tether preloaded; the child imports the tool's module itself, so the function must be
importable by reference (``module:function`` or ``file.py:function``). Arguments go to the
child as the model sent them (JSON) and are validated there again; the result comes back as
JSON-ready data. The environment, working directory and ``sys.path`` of the calling process
are passed along with each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

import pydantic_core

from tether.core import TetherError, ToolError, describe_exception
from tether.tools.base import clip_result
from tether.tools.loading import FunctionRef, load_function
from tether.tools.threads import run_in_daemon_thread

_Reply = tuple[str, Any, Any]
"""``("ok", content, data)`` or ``("error", message, None)``."""


@dataclass(frozen=True, slots=True)
class IsolatedCall:
    """Everything a child needs to make one call (pickled to it)."""

    ref: FunctionRef
    tool_name: str
    arguments: dict[str, Any]
    max_result_chars: int
    sys_path: list[str]
    environ: dict[str, str]
    cwd: str


_context_lock = threading.Lock()
_context: BaseContext | None = None


def _mp_context() -> BaseContext:
    """A forkserver that preloads Tether (a child then starts in milliseconds), else spawn.
    ``__main__`` stays in the preload list as multiprocessing has it by default, so a
    program's own use of the forkserver keeps working; such a program needs the usual
    ``if __name__ == "__main__":`` guard."""
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["__main__", __name__])
                _context = context
            else:
                _context = multiprocessing.get_context("spawn")
        return _context


def _run_call(call: IsolatedCall) -> _Reply:
    """In the child: import the function, validate the arguments, call, make the result
    JSON-ready."""
    from tether.tools.function import FunctionTool, format_result, validate_arguments

    sys.path[:] = call.sys_path
    os.environ.clear()
    os.environ.update(call.environ)
    os.chdir(call.cwd)
    found = load_function(call.ref)
    func = found.func if isinstance(found, FunctionTool) else found
    tool = FunctionTool(func, name=call.tool_name)
    kwargs = validate_arguments(tool.name, tool.args_model, call.arguments)
    value = func(**kwargs)
    if asyncio.iscoroutine(value):
        value = asyncio.run(value)
    text = format_result(value, tool.name)
    if len(text) > call.max_result_chars:
        return ("ok", clip_result(text, call.max_result_chars), None)
    try:
        data = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        data = text
    return ("ok", text, data)


def _child_main(conn: Connection, call: IsolatedCall) -> None:
    # Its own process group, so a kill at the timeout also reaches processes it started.
    setsid = getattr(os, "setsid", None)  # POSIX only
    if setsid is not None:
        with contextlib.suppress(OSError):
            setsid()
    reply: _Reply
    try:
        reply = _run_call(call)
    except TetherError as exc:
        reply = ("error", exc.message, None)
    except BaseException as exc:  # sys.exit() in a tool is that tool's failure
        reply = ("error", describe_exception(exc), None)
    try:
        conn.send(reply)
    except Exception as exc:  # data that does not pickle after all
        conn.send(("error", f"the result could not be sent back: {describe_exception(exc)}", None))
    finally:
        conn.close()


class _Child:
    """One call's child process, started and awaited from a worker thread; ``stop`` kills it
    from the event loop's thread (at the tool's timeout, or when the run stops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._stopped = False
        self._finished = False
        """The child has exited and been joined (never read its state from two threads)."""

    def run(self, call: IsolatedCall) -> _Reply:
        context = _mp_context()
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(sender, call),
            name=f"tether-tool-{call.tool_name}",
            daemon=True,
        )
        try:
            process.start()  # slow only the first time, while the forkserver starts
        finally:
            sender.close()
        with self._lock:
            self._process = process
            stopped = self._stopped
        if stopped:  # the caller gave up while the process was starting
            _kill(process)
        try:
            reply: _Reply | None = receiver.recv()
        except EOFError:
            reply = None
        finally:
            receiver.close()
        process.join()
        with self._lock:
            self._finished = True
        if reply is None:
            raise ToolError(
                f"tool '{call.tool_name}': its process ended without a result "
                f"(exit code {process.exitcode})"
            )
        return reply

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            process = None if self._finished else self._process
        if process is not None:
            _kill(process)


def _kill(process: multiprocessing.process.BaseProcess) -> None:
    if process.pid is not None and hasattr(os, "killpg"):
        with contextlib.suppress(OSError):  # no group yet (not started), or already gone
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError):
        process.kill()


async def call_in_process(call: IsolatedCall) -> tuple[str, Any]:
    """Make ``call`` in a child process; return the result's text (already clipped) and
    JSON-ready data. Cancelling (a timeout, a stopped run) kills the child and what it
    started."""
    child = _Child()
    try:
        kind, content, data = await run_in_daemon_thread(child.run, {"call": call})
    finally:
        child.stop()  # a no-op when the child has exited
    if kind != "ok":
        raise ToolError(f"tool '{call.tool_name}' failed in its process: {content}")
    return content, data
