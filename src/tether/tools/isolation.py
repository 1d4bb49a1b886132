"""Function tools run in a child process (``isolation: process``), killed at their timeout.

A tool run in a thread (the default) cannot be stopped: when it times out the run moves on,
but a CPU-bound call keeps spinning in its thread until it returns. A process can be killed.
The first isolated call starts one helper process per agent process
(``tether.tools._isolation_worker``, a fresh interpreter that loads Tether and nothing of the
caller's, so a script without an ``if __name__ == "__main__":`` guard never runs twice). The
helper forks a child for each call; the child imports the tool's module itself, so the
function must be importable by reference (``module:function`` or ``file.py:function``).
Arguments go to the child as JSON and are validated there again; the result comes back as
JSON. The environment, working directory, ``sys.path`` and ``sys.argv`` of the calling
process go with each call. The child's process group is killed when the call times out or
is cancelled, and also after it returns, so nothing a tool started outlives its call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic_core

from tether.core import ToolError, describe_exception
from tether.tools._isolation_protocol import (
    CALL,
    FAILED,
    KILL,
    FrameReader,
    describe_exit_code,
    encode_frame,
    write_all,
)
from tether.tools.loading import FunctionRef

_REPLY_OVERHEAD_BYTES = 1 << 20
_REPLY_BYTES_PER_CHAR = 32
"""A reply holds the text and the data, each a JSON string escaping a character in up to 12
bytes: a cap far above any honest reply, below a runaway one."""


@dataclass(frozen=True, slots=True)
class IsolatedCall:
    """Everything a child needs to make one call (sent to it as JSON)."""

    ref: FunctionRef
    tool_name: str
    arguments: dict[str, Any]
    max_result_chars: int
    sys_path: list[str]
    environ: dict[str, str]
    cwd: str


def _request(call: IsolatedCall) -> bytes:
    try:
        arguments = pydantic_core.to_jsonable_python(call.arguments)
    except pydantic_core.PydanticSerializationError as exc:
        raise ToolError(
            f"tool '{call.tool_name}': its arguments cannot be sent to its process as JSON: {exc}"
        ) from None
    request = {
        "ref": {
            "attr": call.ref.attr,
            "file": None if call.ref.file is None else str(call.ref.file),
            "module": call.ref.module,
        },
        "tool_name": call.tool_name,
        "arguments": arguments,
        "max_result_chars": call.max_result_chars,
        "max_reply_bytes": _REPLY_OVERHEAD_BYTES + _REPLY_BYTES_PER_CHAR * call.max_result_chars,
        "sys_path": [p for p in call.sys_path if isinstance(p, str)],
        "argv": [a for a in sys.argv if isinstance(a, str)],
        "environ": call.environ,
        "cwd": call.cwd,
    }
    # ASCII JSON carries any string, lone surrogates (undecodable environment bytes) included.
    return json.dumps(request, separators=(",", ":")).encode("ascii")


_WORKER_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); "  # Tether, if only this process's path finds it
    "from tether.tools._isolation_worker import main; sys.exit(main(sys.argv[2:]))"
)

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[tuple[int, bytes]]"]


def _settle(future: asyncio.Future[tuple[int, bytes]], reply: tuple[int, bytes]) -> None:
    if not future.done():  # the caller gave up (a timeout, a stopped run)
        future.set_result(reply)


class _Worker:
    """The helper process and the two daemon threads that talk to it: one writes the call and
    kill frames queued by callers (so an event loop never blocks on a full pipe), one reads
    replies and hands each to the event loop that waits for it. The reading thread also
    starts the helper: Linux then ties the helper's life to a thread that lasts as long as
    the helper does (a parent-death signal follows the thread that forked, not the
    process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._requests_fd = -1
        self._start_error: str | None = None
        self.alive = True
        started = threading.Event()
        threading.Thread(
            target=self._run, args=(started,), name="tether-isolation-replies", daemon=True
        ).start()
        started.wait()
        if self._start_error is not None:
            self.alive = False
            raise ToolError(
                f"cannot start the process that runs isolated tools: {self._start_error}"
            )

    def submit(self, payload: bytes, waiter: _Waiter) -> int | None:
        """Queue a call; its id, or None if this helper is gone (start another)."""
        with self._lock:
            if not self.alive:
                return None
            call_id = next(self._ids)
            self._pending[call_id] = waiter
            self._outbox.put(encode_frame(call_id, CALL, payload))
            return call_id

    def kill(self, call_id: int) -> None:
        """Kill the call's process group, if it is still running."""
        with self._lock:
            self._pending.pop(call_id, None)
            if self.alive:
                self._outbox.put(encode_frame(call_id, KILL))

    def forget(self, call_id: int) -> None:
        with self._lock:
            self._pending.pop(call_id, None)

    def forget_after_fork(self) -> None:
        """In a child forked from this process: the helper belongs to the parent; drop this
        copy of its stdin so the helper still ends when the parent does."""
        self.alive = False
        with contextlib.suppress(OSError):
            os.close(self._requests_fd)

    def _run(self, started: threading.Event) -> None:
        try:
            replies_fd, process = self._start()
            threading.Thread(
                target=self._write_requests, name="tether-isolation-calls", daemon=True
            ).start()
        except Exception as exc:
            self._start_error = describe_exception(exc)
            return
        finally:
            started.set()
        frames = FrameReader()
        try:
            while data := os.read(replies_fd, 1 << 16):
                for frame in frames.feed(data):
                    with self._lock:
                        waiter = self._pending.pop(frame.call_id, None)
                    if waiter is not None:
                        loop, future = waiter
                        with contextlib.suppress(RuntimeError):  # that event loop is closed
                            loop.call_soon_threadsafe(_settle, future, (frame.kind, frame.payload))
        finally:
            os.close(replies_fd)
            self._fail_all(
                f"the process that runs isolated tools ended ({describe_exit_code(process.wait())})"
            )

    def _start(self) -> tuple[int, subprocess.Popen[bytes]]:
        requests_read, self._requests_fd = os.pipe()
        replies_read, replies_write = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",  # the working directory's modules must not shadow Tether's
                    "-c",
                    _WORKER_BOOTSTRAP,
                    str(Path(__file__).resolve().parents[2]),
                    str(replies_write),
                    str(os.getpid()),
                ],
                stdin=requests_read,
                pass_fds=(replies_write,),
            )
        except BaseException:
            for fd in (self._requests_fd, replies_read):
                os.close(fd)
            raise
        finally:
            os.close(requests_read)
            os.close(replies_write)
        return replies_read, process

    def _write_requests(self) -> None:
        while (frame := self._outbox.get()) is not None:
            try:
                write_all(self._requests_fd, frame)
            except OSError:
                self._fail_all("the process that runs isolated tools cannot be reached")
                break
        with contextlib.suppress(OSError):
            os.close(self._requests_fd)

    def _fail_all(self, message: str) -> None:
        with self._lock:
            if self.alive:
                self.alive = False
                self._outbox.put(None)
            waiters, self._pending = self._pending, {}
        for loop, future in waiters.values():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, (FAILED, message.encode()))


_worker_lock = threading.Lock()
_worker: _Worker | None = None


def _running_worker() -> _Worker:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.alive:
            if not hasattr(os, "fork"):
                raise ToolError("isolation 'process' needs a system with fork() (Linux, macOS)")
            _worker = _Worker()
        return _worker


def _forget_worker_after_fork() -> None:
    global _worker
    if _worker is not None:
        _worker.forget_after_fork()
        _worker = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_worker_after_fork)


async def call_in_process(call: IsolatedCall) -> tuple[str, Any]:
    """Make ``call`` in a child process; return the result's text (already clipped) and
    JSON-ready data. Cancelling (a timeout, a stopped run) kills the child's process
    group."""
    payload = _request(call)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    for _ in range(2):  # a helper that died since the last call is replaced once
        worker = _running_worker()
        call_id = worker.submit(payload, (loop, future))
        if call_id is not None:
            break
    else:
        raise ToolError(f"tool '{call.tool_name}': the process that runs isolated tools is gone")
    try:
        kind, reply = await future
    except BaseException:
        worker.kill(call_id)
        raise
    finally:
        worker.forget(call_id)
    if kind == FAILED:
        raise ToolError(f"tool '{call.tool_name}': {reply.decode(errors='replace')}")
    try:
        answer = json.loads(reply)
        if answer["ok"]:
            return str(answer["content"]), answer["data"]
        error = str(answer["error"])
    except (ValueError, KeyError, TypeError):
        raise ToolError(f"tool '{call.tool_name}': its process sent a damaged result") from None
    raise ToolError(f"tool '{call.tool_name}' failed in its process: {error}")
