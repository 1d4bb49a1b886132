"""Helpers for the sandbox tests: is bubblewrap here, and which processes of a run are alive."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from tether.sandbox import SandboxUnavailable, find_host
from tether.sandbox.limits import MIB

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_sandbox() -> None:
    """Skip where the sandbox cannot run (fail under CI=true: .ci/run installs bubblewrap)."""
    try:
        find_host()
    except SandboxUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI=true requires the sandbox: {exc.message} ({exc.hint})")
        pytest.skip(exc.message)


def marked_memory_mb() -> int:
    """A ``memory_mb`` no other run uses: its byte count is an argument of every process of
    the run (bwrap's and the program's), which :func:`alive` finds them by."""
    return 200 + secrets.randbelow(800)


def alive(memory_mb: int) -> list[int]:
    """Host pids of the live (not zombie) processes of the run with this ``memory_mb``."""
    marker = str(memory_mb * MIB).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if marker in argv and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def wait_until(condition: object, timeout_s: float = 15.0) -> bool:
    """Poll ``condition()`` until it is true or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()  # type: ignore[operator]
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(0.02)


def host_uid_of(pid: int) -> int | None:
    """The real uid of a host process (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
