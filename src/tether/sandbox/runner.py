"""``Sandbox``: run one Python program under bubblewrap, with limits, and collect its result."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from tether.sandbox.command import (
    Host,
    SandboxError,
    SandboxUnavailable,
    find_host,
    host_uid,
    sandbox_argv,
)
from tether.sandbox.limits import SandboxLimits
from tether.sandbox.process import Child
from tether.sandbox.result import (
    MEMORY,
    OUTPUT_LIMIT,
    TIMEOUT,
    SandboxResult,
    reason_for_signal,
)

_STATUS_BYTES = 4096
_DRAIN_S = 5.0
"""After a kill, how long the pipes get to reach their end (every writer is dead by then, so
this bounds a kernel that is slow to tear a namespace down, nothing else)."""
_SPAWN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
"""The environment of ``setpriv`` and ``bwrap`` themselves: none of the caller's variables
(API keys) reaches even the processes that set the sandbox up."""


class _Capped:
    """Bytes of one stream, kept up to ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.over = False

    def add(self, chunk: bytes) -> bool:
        """Keep what fits; ``True`` when the stream has gone past its limit."""
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            self.over = True
        else:
            self.data += chunk
        return self.over

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class Sandbox:
    """Runs Python programs in a bubblewrap sandbox: new user, PID, network, IPC and UTS
    namespaces (no network at all), read-only system directories and nothing else of the host,
    a private ``/tmp`` work dir, no capabilities, an unprivileged uid, rlimits on CPU time,
    address space, processes, file size and open files, a wall-clock timeout and an output cap.
    Every process a program starts ends with the run. Where the sandbox cannot run (no
    ``bwrap``), :meth:`run` raises :class:`SandboxUnavailable` and runs nothing."""

    def __init__(self, limits: SandboxLimits | None = None, *, python: str | None = None) -> None:
        self.limits = limits or SandboxLimits()
        """What each run may use."""
        self._python = python
        self._host: Host | None = None

    def check(self) -> Host:
        """What the sandbox will use on this machine; ``SandboxUnavailable`` if it cannot run."""
        if self._host is None:
            self._host = find_host(self._python)
        return self._host

    async def run(self, code: str | bytes) -> SandboxResult:
        """Run ``code`` (Python source) as ``/tmp/main.py`` and return what it did.

        Raises ``SandboxError`` for code longer than ``max_code_bytes`` and
        ``SandboxUnavailable`` when the sandbox cannot start; a program that fails, crashes,
        hangs or floods its output is a result, not an error."""
        source = code if isinstance(code, bytes) else code.encode("utf-8", errors="replace")
        limits = self.limits
        if len(source) > limits.max_code_bytes:
            raise SandboxError(
                f"the program is {len(source):,} bytes, more than the sandbox's "
                f"max_code_bytes ({limits.max_code_bytes:,})"
            )
        host = self.check()
        status_read, status_write = os.pipe()
        try:
            argv = sandbox_argv(host, limits, status_write, host_uid())
            started = time.monotonic()
            try:
                child = Child(argv, stdin_data=source, pass_fds=(status_write,), env=_SPAWN_ENV)
            except OSError as exc:
                raise SandboxUnavailable(
                    f"the sandbox could not start: {argv[0]}: {exc.strerror or exc}"
                ) from None
            finally:
                os.close(status_write)
            return await _Run(child, limits, started).finish(status_read)
        finally:
            os.close(status_read)


class _Run:
    """One started sandbox: feeds it the program, reads its output, enforces the wall clock
    and the output cap, and kills its process group (and so its PID namespace) when it must."""

    def __init__(self, child: Child, limits: SandboxLimits, started: float) -> None:
        self.child = child
        self.limits = limits
        self.started = started
        self.stdout = _Capped(limits.max_output_bytes)
        self.stderr = _Capped(limits.max_output_bytes)
        self.killed: str | None = None

    def kill(self, reason: str | None) -> None:
        """SIGKILL the process group: bwrap and the sandbox's init die, and with init the
        kernel kills every process of the PID namespace, those that left the group too."""
        if self.killed is None:
            self.killed = reason
        self.child.kill_group()

    def _sink(self, capped: _Capped) -> Callable[[bytes], None]:
        def add(chunk: bytes) -> None:
            if not capped.over and capped.add(chunk):
                self.kill(OUTPUT_LIMIT)

        return add

    async def finish(self, status_fd: int) -> SandboxResult:
        child = self.child
        waits: list[asyncio.Future[Any]] = [
            child.feed(),  # the bootstrap reads all of it before the program starts
            child.pump(child.popen.stdout, self._sink(self.stdout)),
            child.pump(child.popen.stderr, self._sink(self.stderr)),
            child.exited,
        ]
        try:
            _, pending = await asyncio.wait(waits, timeout=self.limits.timeout_s)
            if pending:
                self.kill(TIMEOUT)
                await asyncio.wait(pending, timeout=_DRAIN_S)
        except BaseException:  # cancelled (the run stopped, a tool timeout): kill, then go
            self.kill(None)
            raise
        finally:
            child.close()
        duration_ms = round((time.monotonic() - self.started) * 1000, 3)
        if child.exited.done() and not child.exited.cancelled():
            child.exited.exception()  # a failed wait is said by the result, not a warning
        code = child.popen.returncode
        return self._result(code, _read_status(status_fd), duration_ms)

    def _result(self, code: int | None, status: list[str], duration_ms: float) -> SandboxResult:
        stderr = self.stderr.text()
        if "started" not in status and self.killed is None:
            detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {code}"
            raise SandboxUnavailable(
                f"the sandbox could not start: {detail[:500]}",
                hint="bubblewrap needs user namespaces: sysctl user.max_user_namespaces above 0 "
                "(and kernel.unprivileged_userns_clone=1 where it exists; AppArmor may "
                "restrict them too); try: bwrap --unshare-all --ro-bind / / true",
            )
        exit_code: int | None = None
        reason = self.killed
        if reason is None and code is not None:
            exit_code = 128 - code if code < 0 else code  # bwrap itself killed: as a shell shows
            reported = [int(s[5:]) for s in status if s[5:].isdigit() and s.startswith("exit ")]
            if MEMORY in status:
                reason = MEMORY
            elif exit_code > 128 and (not reported or reported[-1] != exit_code):
                reason = reason_for_signal(exit_code - 128)
        return SandboxResult(
            exit_code=exit_code,
            stdout=self.stdout.text(),
            stderr=stderr,
            timed_out=self.killed == TIMEOUT,
            killed_reason=reason,
            duration_ms=duration_ms,
        )


def _read_status(fd: int) -> list[str]:
    """The lines the bootstrap wrote on the status pipe (never blocks: a process that still
    holds the pipe open cannot make the caller wait)."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while len(data) < _STATUS_BYTES and (chunk := os.read(fd, _STATUS_BYTES)):
            data += chunk
    return data[:_STATUS_BYTES].decode("ascii", errors="replace").splitlines()


async def run_python(
    code: str | bytes, limits: SandboxLimits | None = None, *, python: str | None = None
) -> SandboxResult:
    """Run ``code`` in a fresh :class:`Sandbox` (see :meth:`Sandbox.run`)."""
    return await Sandbox(limits, python=python).run(code)
