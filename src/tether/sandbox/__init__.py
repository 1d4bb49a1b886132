"""Sandboxed code execution: Python programs under bubblewrap, with limits.

Names load on first use (``tether.core.lazy``): the spec imports the limits' bounds without
loading the runner.
"""

from typing import TYPE_CHECKING

from tether.core.lazy import lazy_exports

if TYPE_CHECKING:
    from tether.sandbox.command import Host, SandboxError, SandboxUnavailable, find_host
    from tether.sandbox.limits import SandboxLimitError, SandboxLimits
    from tether.sandbox.result import KILLED_REASONS, SandboxResult
    from tether.sandbox.runner import Sandbox, run_python

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        ".command": ["Host", "SandboxError", "SandboxUnavailable", "find_host"],
        ".limits": ["SandboxLimitError", "SandboxLimits"],
        ".result": ["KILLED_REASONS", "SandboxResult"],
        ".runner": ["Sandbox", "run_python"],
    },
)

__all__ = [
    "KILLED_REASONS",
    "Host",
    "Sandbox",
    "SandboxError",
    "SandboxLimitError",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "find_host",
    "run_python",
]
