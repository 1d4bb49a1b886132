"""Child processes that tests kill with SIGKILL at a chosen moment."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest


def kill_when_it_says(
    script: Path, args: list[str], marker: str, what: str
) -> subprocess.Popen[str]:
    """Run ``script`` with ``args``, wait until it prints ``marker`` (a line of its own), then
    SIGKILL it; fail the test naming ``what`` if it ends or says anything else first. Returns
    the killed child (its pid and exit status)."""
    child = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != marker:
            child.kill()
            pytest.fail(f"the child did not reach {what}: {child.communicate()}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    return child
