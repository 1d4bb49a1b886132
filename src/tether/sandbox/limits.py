"""``SandboxLimits``: what one sandboxed run may use."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tether.core import TetherError

MIB = 1 << 20

# Bounds shared by the spec, the CLI and the API: past them a value is a typo, not a wish.
MIN_TIMEOUT_S = 0.001
MAX_TIMEOUT_S = 3600.0
MIN_MEMORY_MB = 32
"""Below this the interpreter has no room left for the code's own objects."""
MAX_MEMORY_MB = 1 << 20
MAX_PROCESSES = 4096
MAX_FILE_MB = 1 << 16
MAX_OPEN_FILES = 1 << 16
MAX_WORK_DIR_MB = 1 << 16
MAX_OUTPUT_BYTES = 64 * MIB
MAX_CODE_BYTES = 16 * MIB


class SandboxLimitError(TetherError, ValueError):
    """A limit out of its range (the message names the limit and the range)."""


def _check(name: str, value: float, low: float, high: float) -> None:
    # `not low <= value` also refuses NaN.
    if isinstance(value, bool) or not low <= value <= high:
        raise SandboxLimitError(f"{name} must be between {low:g} and {high:g}, not {value!r}")


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Limits of one run. Each is enforced by the kernel (rlimits, tmpfs sizes) or, for the
    wall clock and the output, by the process that started the sandbox."""

    timeout_s: float = 10.0
    """Wall-clock seconds; then every process of the run is killed."""
    memory_mb: int = 256
    """Address space of each process, in MiB (``RLIMIT_AS``)."""
    cpu_s: int | None = None
    """CPU seconds of each process (``RLIMIT_CPU``); default: the timeout rounded up, plus 1."""
    max_processes: int = 32
    """Processes and threads the code may run at once, itself included (``RLIMIT_NPROC``)."""
    max_file_mb: int = 16
    """Largest file the code may write, in MiB (``RLIMIT_FSIZE``)."""
    max_open_files: int = 256
    """Open file descriptors per process (``RLIMIT_NOFILE``)."""
    work_dir_mb: int = 64
    """Room in the private work dir ``/tmp`` (a tmpfs, so it is memory too), in MiB, besides
    the program itself."""
    max_output_bytes: int = MIB
    """Bytes kept of stdout and of stderr each; more ends the run (``output_limit``)."""
    max_code_bytes: int = MIB
    """Largest program accepted, in bytes."""

    def __post_init__(self) -> None:
        _check("timeout_s", self.timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        _check("memory_mb", self.memory_mb, MIN_MEMORY_MB, MAX_MEMORY_MB)
        if self.cpu_s is not None:
            _check("cpu_s", self.cpu_s, 1, MAX_TIMEOUT_S)
        _check("max_processes", self.max_processes, 1, MAX_PROCESSES)
        _check("max_file_mb", self.max_file_mb, 1, MAX_FILE_MB)
        _check("max_open_files", self.max_open_files, 16, MAX_OPEN_FILES)
        _check("work_dir_mb", self.work_dir_mb, 1, MAX_WORK_DIR_MB)
        _check("max_output_bytes", self.max_output_bytes, 1, MAX_OUTPUT_BYTES)
        _check("max_code_bytes", self.max_code_bytes, 1, MAX_CODE_BYTES)
        for name in ("memory_mb", "cpu_s", "max_processes", "max_file_mb", "max_open_files"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, int):
                raise SandboxLimitError(f"{name} must be a whole number, not {value!r}")

    @property
    def cpu_seconds(self) -> int:
        """``cpu_s``, or its default: the wall clock is the limit a single busy process meets
        first, so the timeout (not the CPU limit) is what usually ends an endless loop."""
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1
