"""The real ``tether`` command in a child process, for tests that check what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_cli(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m tether ARGS`` with text output; ``env`` replaces the environment if given.
    The child imports the ``tether`` under test, whatever ``cwd`` (``PYTHONPATH=src`` is
    relative to the folder the tests were started from)."""
    import tether

    child_env = dict(os.environ if env is None else env)
    source = str(Path(tether.__file__).resolve().parents[1])
    child_env["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [child_env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=child_env,
    )
