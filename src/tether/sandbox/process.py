"""A child process driven by the event loop itself: its pipes read and written with
``add_reader``/``add_writer``, its exit seen on a pidfd.

asyncio's own subprocess layer (transports, protocols, and in Python 3.11 a thread per child
to wait for it) costs about 4 ms per run here, a fifth of a sandbox's start; this costs what
``subprocess.run`` does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import IO

_CHUNK = 1 << 16


class Child:
    """A process started with pipes for stdin (fed ``stdin_data``), stdout and stderr, in a
    session (and process group) of its own."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        stdin_data: bytes,
        pass_fds: Sequence[int],
        env: Mapping[str, str],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # What fits in the pipe (64 KiB by default) is there before the process starts, so it
        # never waits for this process to be scheduled to get its input; ``feed`` writes the
        # rest.
        read_end, self._stdin_fd = os.pipe()
        os.set_blocking(self._stdin_fd, False)
        written = 0
        with contextlib.suppress(BlockingIOError):
            written = os.write(self._stdin_fd, stdin_data) if stdin_data else 0
        self._rest = memoryview(stdin_data)[written:]
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=read_end,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=tuple(pass_fds),
                start_new_session=True,  # one group to kill, and no controlling terminal
                env=dict(env),
                cwd="/",
            )
        except BaseException:
            os.close(self._stdin_fd)
            raise
        finally:
            os.close(read_end)
        if not self._rest:
            os.close(self._stdin_fd)
            self._stdin_fd = -1
        self._watched: list[int] = []
        """The output pipes' fds, watched by the loop."""
        self.exited: asyncio.Future[int] = self._loop.create_future()
        """The exit status (``returncode``), once the process has ended and been reaped."""
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(self.popen.pid)
        except OSError:  # a kernel before 5.3: a thread waits instead
            waiting = self._loop.run_in_executor(None, self.popen.wait)
            waiting.add_done_callback(self._settle_exit)
        else:
            self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        code = self.popen.wait()  # it has exited: this does not block
        if not self.exited.done():
            self.exited.set_result(code)

    def _settle_exit(self, waiting: asyncio.Future[int]) -> None:
        if self.exited.done():
            return
        if waiting.exception() is not None:
            self.exited.set_exception(waiting.exception())  # type: ignore[arg-type]
        else:
            self.exited.set_result(waiting.result())

    def pump(self, stream: IO[bytes] | None, sink: Callable[[bytes], None]) -> asyncio.Future[None]:
        """Hand every chunk read from ``stream`` to ``sink``; done at end of file."""
        assert stream is not None
        fd = stream.fileno()
        os.set_blocking(fd, False)
        done: asyncio.Future[None] = self._loop.create_future()

        def readable() -> None:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if chunk:
                sink(chunk)
                return
            self._loop.remove_reader(fd)
            if not done.done():
                done.set_result(None)

        self._loop.add_reader(fd, readable)
        self._watched.append(fd)
        return done

    def feed(self) -> asyncio.Future[None]:
        """Write the rest of the input to stdin, then close it; done when all is written or
        the reader has gone (a broken pipe is the reader's business, not an error here)."""
        done: asyncio.Future[None] = self._loop.create_future()
        fd = self._stdin_fd
        if fd == -1:  # all of it was in the pipe from the start
            done.set_result(None)
            return done

        def writable() -> None:
            try:
                self._rest = self._rest[os.write(fd, self._rest[:_CHUNK]) :]
            except BlockingIOError:
                return
            except OSError:  # EPIPE: the program is gone
                self._rest = self._rest[:0]
            if not self._rest:
                self._close_stdin()
                if not done.done():
                    done.set_result(None)

        self._loop.add_writer(fd, writable)
        return done

    def _close_stdin(self) -> None:
        if self._stdin_fd != -1:
            self._loop.remove_writer(self._stdin_fd)
            os.close(self._stdin_fd)
            self._stdin_fd = -1

    def kill_group(self) -> None:
        """SIGKILL the process group, unless the process has been reaped (its pid, and so its
        group id, could then belong to someone else)."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop watching the pipes and close them. A process still running is reaped when it
        ends (by the pidfd's reader), so it never stays a zombie."""
        self._close_stdin()
        for fd in self._watched:
            self._loop.remove_reader(fd)
        self._watched.clear()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
