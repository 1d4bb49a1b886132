"""Specs, scripts and tool files that are not what they seem: a device that never ends
(/dev/zero), a file far too large. ``tether validate --no-import`` exists to look at specs
one does not trust, so it must refuse them with a clear error, in bounded memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tether.tools.loading import MAX_CHECKED_SOURCE_BYTES

pytestmark = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")

MEMORY_LIMIT = 1_500_000_000
"""Address space the CLI gets here: ample for validating a spec, far from what reading
/dev/zero to its end or parsing a huge file would take."""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def validate_no_import(spec: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "tether", "validate", "--no-import", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=spec.parent,
        env=env,
        preexec_fn=_limit_memory,
    )


def write_agent(folder: Path, *, script: str = "script.yaml", tools: str = "tools.py") -> Path:
    (folder / "script.yaml").write_text("steps: [{text: hi}]\n")
    (folder / "tools.py").write_text("def probe(q: str) -> str:\n    return q\n")
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: hostile\n"
        f"model: {{provider: scripted, name: gpt-4.1-mini, script: {script}}}\n"
        f"tools:\n  - {{name: probe, function: '{tools}:probe'}}\n"
    )
    return spec


def test_a_spec_that_is_dev_zero_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "agent.yaml"
    spec.symlink_to("/dev/zero")
    done = validate_no_import(spec)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"{spec}: file is over the limit" in done.stderr
    assert "MemoryError" not in done.stderr and "unexpected error" not in done.stderr


def test_a_script_that_is_dev_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    done = validate_no_import(write_agent(tmp_path, script="zero.yaml"))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "zero.yaml: file is over the limit" in done.stderr
    assert "MemoryError" not in done.stderr and "unexpected error" not in done.stderr


@pytest.mark.parametrize("kind", ["dev-zero", "huge"])
def test_a_tool_file_too_large_to_check_is_named_not_read_whole(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "big_tools.py"
    if kind == "dev-zero":
        target.symlink_to("/dev/zero")
    else:  # valid Python, just past the limit: parsing it whole would take many times that
        line = b"x = 1  # padding padding padding padding\n"
        count = MAX_CHECKED_SOURCE_BYTES // len(line) + 1
        target.write_bytes(b"def probe(q: str) -> str:\n    return q\n" + line * count)
    done = validate_no_import(write_agent(tmp_path, tools="big_tools.py"))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert f"{target} is over {MAX_CHECKED_SOURCE_BYTES:,} bytes; not checked" in done.stdout
    assert "MemoryError" not in done.stderr


@pytest.mark.parametrize(
    "when", [r"(?:a{65535}){65535}", r"x{10000000}", r"(?:(?:ab){1000}){1000}", r"\p{L}{10000000}"]
)
def test_a_pattern_that_compiles_into_gigabytes_is_refused_in_bounded_memory(
    tmp_path: Path, when: str
) -> None:
    (tmp_path / "rules.yaml").write_text(
        f"rules:\n  - when: '{when}'\n    steps: [{{text: hi}}]\nsteps: [{{text: no}}]\n"
    )
    done = validate_no_import(write_agent(tmp_path, script="rules.yaml"))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "rules.yaml:2: rules[0].when" in done.stderr
    assert "'when' repeats too much" in done.stderr
    assert "MemoryError" not in done.stderr and "unexpected error" not in done.stderr
