"""The helper process behind ``isolation: process``.

Started once per agent process (a fresh interpreter that runs ``main`` with REPLY_FD and
PARENT_PID), it reads call frames on its stdin and forks one child per call. The child
starts its own process group, imports the tool's module (the loader in-process tools use),
runs the function, writes a JSON reply to a pipe and exits. The worker then kills the
child's process group (so nothing the tool started outlives the call) and forwards the
reply; a KILL frame (the call's timeout) kills the group at once. The worker imports Tether
and nothing of the caller's: a user's script is never imported a second time here.

The worker is single-threaded (forking is then safe) and exits, killing every child's group,
when its stdin closes, that is when the agent's process is gone; on Linux it also asks to be
sent SIGTERM when its parent dies, and each child SIGKILL when the worker dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import selectors
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pydantic_core

from tether.core import TetherError, describe_exception
from tether.tools._isolation_protocol import (
    CALL,
    FAILED,
    KILL,
    RESULT,
    Frame,
    FrameReader,
    describe_exit_code,
    encode_frame,
    write_all,
)
from tether.tools.base import clip_result
from tether.tools.function import FunctionTool, format_result, validate_arguments
from tether.tools.loading import FunctionRef, load_function

_PR_SET_PDEATHSIG = 1
_READ_SIZE = 1 << 16


def _die_with_parent(signum: int, parent_pid: int) -> bool:
    """Ask Linux to send ``signum`` when the parent dies; False if it is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    return os.getppid() == parent_pid


@dataclass(eq=False)
class _Child:
    """One call's process, seen from the worker."""

    call_id: int
    pid: int
    fd: int
    """Read end of the pipe the child writes its reply to (non-blocking)."""
    max_reply_bytes: int
    reply: bytearray = field(default_factory=bytearray)
    problem: str | None = None
    """Why this call will have no reply although its process may have written one."""
    reading: bool = True
    status: int | None = None
    """Its wait status, once reaped."""


def run_call(request: dict[str, Any]) -> dict[str, Any]:
    """In the child: import the function, validate the arguments, call it, make the result
    JSON-ready. The reply is ``{"ok": true, "content", "data"}`` or
    ``{"ok": false, "error"}``."""
    try:
        sys.path[:] = request["sys_path"]
        sys.argv[:] = request["argv"]
        os.environ.clear()
        os.environ.update(request["environ"])
        os.chdir(request["cwd"])
        ref = request["ref"]
        found = load_function(
            FunctionRef(
                attr=ref["attr"],
                file=Path(ref["file"]) if ref["file"] is not None else None,
                module=ref["module"],
            )
        )
        func = found.func if isinstance(found, FunctionTool) else found
        tool = FunctionTool(func, name=request["tool_name"])
        kwargs = validate_arguments(tool.name, tool.args_model, request["arguments"])
        value = func(**kwargs)
        if asyncio.iscoroutine(value):
            value = asyncio.run(value)
        text = format_result(value, tool.name)
        max_chars = request["max_result_chars"]
        if len(text) > max_chars:
            return {"ok": True, "content": clip_result(text, max_chars), "data": None}
        try:
            data = pydantic_core.to_jsonable_python(value)
        except pydantic_core.PydanticSerializationError:
            data = text
        return {"ok": True, "content": text, "data": data}
    except TetherError as exc:
        return {"ok": False, "error": exc.message}
    except BaseException as exc:  # sys.exit() in a tool is that tool's failure
        return {"ok": False, "error": describe_exception(exc)}


def _encode_reply(reply: dict[str, Any]) -> bytes:
    # ASCII JSON carries any string, lone surrogates included, both ways.
    try:
        return json.dumps(reply, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError):  # data JSON cannot hold (keys that are not text)
        return json.dumps({**reply, "data": reply.get("content")}).encode("ascii")


def _child_main(
    request: dict[str, Any], reply_fd: int, worker_pid: int, worker_fds: list[int]
) -> NoReturn:
    """The forked child: never returns."""
    code = 0
    try:
        os.setsid()  # its own process group: one kill reaches whatever the tool starts
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in worker_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if not _die_with_parent(signal.SIGKILL, worker_pid):
            os._exit(1)
        payload = _encode_reply(run_call(request))
        for stream in (sys.stdout, sys.stderr):  # what the tool printed, before the reply
            with contextlib.suppress(Exception):
                stream.flush()
        write_all(reply_fd, payload)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD handler: the wakeup fd is what wakes the loop (SIG_IGN would reap the
    children before their replies are read)."""


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class Worker:
    """The worker's loop over its stdin, its children's reply pipes and child exits."""

    def __init__(self, requests_fd: int, replies_fd: int) -> None:
        self._requests_fd = requests_fd
        self._replies_fd = replies_fd
        self._frames = FrameReader()
        self._children: dict[int, _Child] = {}
        self._selector = selectors.DefaultSelector()
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_read, False)
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _ignore_signal)
        self._selector.register(requests_fd, selectors.EVENT_READ, None)
        self._selector.register(self._wakeup_read, selectors.EVENT_READ, None)

    def serve(self) -> None:
        """Until stdin closes (or SIGTERM); every child's group is killed on the way out."""
        try:
            while True:
                for key, _ in self._selector.select():
                    if key.fd == self._requests_fd:
                        data = os.read(self._requests_fd, _READ_SIZE)
                        if not data:
                            return
                        for frame in self._frames.feed(data):
                            self._handle(frame)
                    elif key.fd == self._wakeup_read:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(self._wakeup_read, _READ_SIZE):
                                pass
                    else:
                        self._read_reply(key.data)
                self._finish_exited()
        except BrokenPipeError:  # the agent's process stopped reading: it is gone
            return
        finally:
            for child in self._children.values():
                self._kill(child)

    def _handle(self, frame: Frame) -> None:
        if frame.kind == CALL:
            self._start(frame.call_id, json.loads(frame.payload))
        elif frame.kind == KILL:
            child = self._children.get(frame.call_id)
            if child is not None:
                child.problem = child.problem or "stopped"
                self._kill(child)

    def _start(self, call_id: int, request: dict[str, Any]) -> None:
        read_fd, write_fd = os.pipe()
        worker_fds = [
            self._requests_fd,
            self._replies_fd,
            self._wakeup_read,
            self._wakeup_write,
            self._selector.fileno(),
            read_fd,
            *(c.fd for c in self._children.values()),
        ]
        worker_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            self._send(call_id, FAILED, f"could not start its process: {exc.strerror}")
            return
        if pid == 0:
            _child_main(request, write_fd, worker_pid, worker_fds)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = _Child(call_id, pid, read_fd, int(request["max_reply_bytes"]))
        self._children[call_id] = child
        self._selector.register(read_fd, selectors.EVENT_READ, child)

    def _read_reply(self, child: _Child) -> None:
        """Read what is there of ``child``'s reply, without blocking."""
        while child.reading:
            try:
                data = os.read(child.fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self._stop_reading(child)
            elif len(child.reply) + len(data) > child.max_reply_bytes:
                child.problem = f"its result was over {child.max_reply_bytes:,} bytes"
                child.reply.clear()
                self._stop_reading(child)
                self._kill(child)
            else:
                child.reply += data

    def _stop_reading(self, child: _Child) -> None:
        if child.reading:
            child.reading = False
            self._selector.unregister(child.fd)

    def _finish_exited(self) -> None:
        """Send the reply of every child that has exited, after killing its process group
        (processes the tool started and left running) and reaping it."""
        for child in list(self._children.values()):
            if not _has_exited(child):
                continue
            self._kill(child)  # an unreaped child keeps its pid: the group id is still its own
            self._read_reply(child)  # all it wrote before exiting is in the pipe
            self._stop_reading(child)
            os.close(child.fd)
            if child.status is None:
                _, child.status = os.waitpid(child.pid, 0)
            del self._children[child.call_id]
            code = os.waitstatus_to_exitcode(child.status)
            if child.problem is not None:
                self._send(child.call_id, FAILED, child.problem)
            elif child.reply:
                self._send(child.call_id, RESULT, bytes(child.reply))
            else:
                self._send(
                    child.call_id,
                    FAILED,
                    f"its process ended without a result ({describe_exit_code(code)})",
                )

    @staticmethod
    def _kill(child: _Child) -> None:
        with contextlib.suppress(OSError):  # the group is gone already
            os.killpg(child.pid, signal.SIGKILL)

    def _send(self, call_id: int, kind: int, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        write_all(self._replies_fd, encode_frame(call_id, kind, data))


def _has_exited(child: _Child) -> bool:
    """Whether ``child`` has exited, leaving it unreaped where the system allows (macOS has
    no ``waitid``: there it is reaped now and its status kept)."""
    waitid = getattr(os, "waitid", None)
    if waitid is not None:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return waitid(os.P_PID, child.pid, flags) is not None
    reaped, status = os.waitpid(child.pid, os.WNOHANG)
    if reaped:
        child.status = status
    return reaped != 0


def main(argv: list[str]) -> int:
    replies_fd, parent_pid = int(argv[0]), int(argv[1])
    # Ctrl-C goes to the agent's whole process group; the agent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a clean exit kills the children's groups
        signal.signal(signum, _stop_on_signal)
    if not _die_with_parent(signal.SIGTERM, parent_pid):
        return 0
    requests_fd = os.dup(0)  # the children get /dev/null as stdin, not the call pipe
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    Worker(requests_fd, replies_fd).serve()
    return 0
