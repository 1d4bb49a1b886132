"""``SandboxResult``: what one sandboxed run produced, and why it stopped if it was stopped."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from typing import Any

TIMEOUT = "timeout"
"""The wall clock ran out; every process of the run was killed."""
OUTPUT_LIMIT = "output_limit"
"""stdout or stderr passed ``max_output_bytes``; every process of the run was killed."""
CPU_TIME = "cpu_time"
"""A process used up its CPU seconds (``SIGXCPU``)."""
MEMORY = "memory"
"""The program ended on a ``MemoryError``: it reached its address-space limit."""
FILE_SIZE = "file_size"
"""A process wrote past ``max_file_mb`` (``SIGXFSZ``; Python itself gets an ``OSError``)."""
KILLED_REASONS = (TIMEOUT, OUTPUT_LIMIT, CPU_TIME, MEMORY, FILE_SIZE)
"""Every ``killed_reason`` but ``signal:NAME`` (the program died of another signal)."""


def reason_for_signal(signum: int) -> str:
    """The ``killed_reason`` of a program that died of ``signum``."""
    if signum == signal.SIGXCPU:
        return CPU_TIME
    if signum == signal.SIGXFSZ:
        return FILE_SIZE
    try:
        return f"signal:{signal.Signals(signum).name}"
    except ValueError:
        return f"signal:{signum}"


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """The outcome of one run. ``stdout`` and ``stderr`` are decoded as UTF-8, with any byte
    that is not valid UTF-8 replaced by U+FFFD."""

    exit_code: int | None
    """The program's exit status (128 + N when signal N ended it, as a shell shows it);
    ``None`` when the sandbox killed the run (``timeout``, ``output_limit``)."""
    stdout: str
    """What the program wrote to stdout (at most ``max_output_bytes`` of it)."""
    stderr: str
    """What the program wrote to stderr (at most ``max_output_bytes`` of it)."""
    timed_out: bool
    """Whether the wall clock ran out."""
    killed_reason: str | None
    """Why the run was stopped: ``timeout``, ``output_limit``, ``cpu_time``, ``memory``,
    ``file_size`` or ``signal:NAME``; ``None`` when the program ended by itself."""
    duration_ms: float
    """Wall-clock milliseconds from starting the sandbox to its end."""

    @property
    def ok(self) -> bool:
        """The program exited with status 0 and nothing stopped it."""
        return self.exit_code == 0 and self.killed_reason is None

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (the fields, in order)."""
        return asdict(self)
