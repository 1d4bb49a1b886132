"""The sandbox's results and its bad input: what a program did, how it ended, and a clear
error (never a traceback) when the sandbox cannot run it. Also ``tether sandbox run``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakes.cli import run_cli
from fakes.sandbox import alive, marked_memory_mb, require_sandbox, wait_until
from tether.sandbox import (
    KILLED_REASONS,
    Sandbox,
    SandboxError,
    SandboxLimitError,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    run_python,
)
from tether.sandbox.command import BWRAP_ENV

RESULT_KEYS = ["exit_code", "stdout", "stderr", "timed_out", "killed_reason", "duration_ms"]


@pytest.fixture
def sandbox_here() -> None:
    require_sandbox()


async def run(code: str | bytes, **limits: object) -> SandboxResult:
    text = textwrap.dedent(code) if isinstance(code, str) else code
    return await run_python(text, SandboxLimits(**limits))  # type: ignore[arg-type]


# --- results -------------------------------------------------------------------------------


@pytest.mark.usefixtures("sandbox_here")
async def test_a_program_runs_as_main_and_its_output_and_status_come_back() -> None:
    result = await run(
        """
        import sys
        print("out", __name__, __file__, sys.argv)
        print("err", file=sys.stderr)
        sys.exit(7)
        """
    )
    assert result.exit_code == 7 and result.killed_reason is None and not result.timed_out
    assert result.stdout == "out __main__ /tmp/main.py ['/tmp/main.py']\n"
    assert result.stderr == "err\n"
    assert result.duration_ms > 0 and not result.ok
    assert list(result.to_json()) == RESULT_KEYS


@pytest.mark.usefixtures("sandbox_here")
async def test_a_traceback_names_the_program_and_not_the_bootstrap() -> None:
    result = await run("def f():\n    return 1 / 0\n\nf()\n")
    assert result.exit_code == 1 and result.killed_reason is None
    assert 'File "/tmp/main.py", line 4, in <module>' in result.stderr
    assert 'File "/tmp/main.py", line 2, in f' in result.stderr and "return 1 / 0" in result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "<string>" not in result.stderr and "_tether_sandbox" not in result.stderr


@pytest.mark.usefixtures("sandbox_here")
async def test_syntax_errors_and_undecodable_source_are_results() -> None:
    syntax = await run("def (:\n")
    assert syntax.exit_code == 1 and 'File "/tmp/main.py", line 1' in syntax.stderr
    assert "SyntaxError" in syntax.stderr
    binary = await run(b"print('\xff\xfe')\n")
    assert binary.exit_code == 1 and "SyntaxError" in binary.stderr
    # A str with a lone surrogate (from an undecodable argument) is encoded with replacement.
    surrogate = await run("print('a\udcffb')")
    assert surrogate.ok and surrogate.stdout == "a?b\n"


@pytest.mark.usefixtures("sandbox_here")
async def test_output_that_is_not_utf8_is_decoded_with_replacement() -> None:
    result = await run(
        r"""
        import os
        os.write(1, b"ok \xff\xfe \xc3\x28 \xe2\x82\n")
        os.write(2, b"\x80err\n")
        """
    )
    assert result.ok
    assert result.stdout == "ok \ufffd\ufffd \ufffd( \ufffd\n"
    assert result.stderr == "\ufffderr\n"
    json.dumps(result.to_json())  # always serializable


@pytest.mark.usefixtures("sandbox_here")
@pytest.mark.parametrize(
    ("code", "exit_code", "reason"),
    [
        ("import sys; sys.exit('bye')", 1, None),
        ("import sys; sys.exit(128 + 24)", 152, None),  # looks like SIGXCPU, but is an exit
        ("import sys; sys.exit(256 + 3)", 3, None),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 139, "signal:SIGSEGV"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137, "signal:SIGKILL"),
        ("raise MemoryError", 1, "memory"),
        ("import os; os._exit(4)", 4, None),
    ],
)
async def test_how_a_program_ended(code: str, exit_code: int, reason: str | None) -> None:
    result = await run(code)
    assert (result.exit_code, result.killed_reason) == (exit_code, reason), result
    assert not result.timed_out


@pytest.mark.usefixtures("sandbox_here")
async def test_stdin_is_empty_and_local_modules_import() -> None:
    result = await run(
        """
        open("helper.py", "w").write("VALUE = 42\\n")
        import helper
        try:
            input()
        except EOFError:
            print("eof", helper.VALUE)
        """
    )
    assert result.ok and result.stdout == "eof 42\n", result


@pytest.mark.usefixtures("sandbox_here")
async def test_a_large_program_up_to_the_limit_runs() -> None:
    padding = "# " + "x" * 1000 + "\n"
    code = padding * 900 + "print('end')\n"
    assert (await run(code, max_code_bytes=1 << 20)).stdout == "end\n"
    with pytest.raises(SandboxError, match="max_code_bytes"):
        await run(code, max_code_bytes=1000)


def test_killed_reasons_are_listed() -> None:
    assert KILLED_REASONS == ("timeout", "output_limit", "cpu_time", "memory", "file_size")


# --- limits and bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_s", 0),
        ("timeout_s", math.nan),
        ("timeout_s", 10_000),
        ("memory_mb", 1),
        ("memory_mb", True),
        ("memory_mb", 64.5),
        ("cpu_s", 0),
        ("max_processes", 0),
        ("max_file_mb", 0),
        ("max_open_files", 3),
        ("work_dir_mb", 0),
        ("max_output_bytes", 0),
        ("max_code_bytes", -1),
    ],
)
def test_limits_out_of_range_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(SandboxLimitError, match=field):
        SandboxLimits(**{field: value})  # type: ignore[arg-type]


def test_cpu_seconds_default_to_the_timeout_plus_one() -> None:
    assert SandboxLimits(timeout_s=2.5).cpu_seconds == 4
    assert SandboxLimits(timeout_s=2.5, cpu_s=1).cpu_seconds == 1


async def test_a_missing_bwrap_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BWRAP_ENV, "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable) as info:
        await run_python("print('never')")
    assert "bubblewrap (bwrap) is not installed" in info.value.message
    assert info.value.hint and "apt-get install bubblewrap" in info.value.hint


async def test_a_bwrap_that_does_not_start_fails_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv(BWRAP_ENV, str(fake))
    if os.geteuid() == 0:
        require_sandbox()  # setpriv is needed first as root
    with pytest.raises(SandboxUnavailable) as info:
        await run_python("print('never')")
    assert "could not start" in info.value.message
    assert "Permission denied" in info.value.message
    assert info.value.hint and "user namespaces" in info.value.hint


async def test_a_missing_interpreter_fails_closed() -> None:
    require_sandbox()
    with pytest.raises(SandboxUnavailable, match="no Python interpreter at /nonexistent"):
        await Sandbox(python="/nonexistent/python3").run("print(1)")


# --- tether sandbox run --------------------------------------------------------------------


def _program(tmp_path: Path, code: str) -> str:
    path = tmp_path / "prog.py"
    path.write_bytes(textwrap.dedent(code).encode())
    return str(path)


@pytest.mark.usefixtures("sandbox_here")
def test_cli_json_result(tmp_path: Path) -> None:
    prog = _program(tmp_path, "import os\nprint('hi')\nos.write(1, b'\\xff\\x1b[2J\\n')\n")
    done = run_cli("sandbox", "run", prog, "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert list(found) == RESULT_KEYS
    assert found["stdout"] == "hi\n\ufffd\x1b[2J\n" and found["exit_code"] == 0
    assert "\x1b" not in done.stdout  # escaped in the JSON text


@pytest.mark.usefixtures("sandbox_here")
def test_cli_text_shows_output_escaped_and_how_it_ended(tmp_path: Path) -> None:
    prog = _program(tmp_path, "import sys\nprint('hi \\x1b]0;title\\x07')\nsys.exit(2)\n")
    done = run_cli("sandbox", "run", prog)
    assert done.returncode == 1
    assert done.stdout == "hi \\x1b]0;title\\x07\n"
    assert "[sandbox] exit status 2 after" in done.stderr


@pytest.mark.usefixtures("sandbox_here")
def test_cli_timeout_and_memory_options(tmp_path: Path) -> None:
    loop = _program(tmp_path, "print('spinning', flush=True)\nwhile True:\n    pass\n")
    done = run_cli("sandbox", "run", loop, "--timeout", "0.5", "--json")
    assert done.returncode == 3
    found = json.loads(done.stdout)
    assert found["timed_out"] is True and found["killed_reason"] == "timeout"
    assert found["exit_code"] is None and found["stdout"] == "spinning\n"
    text = run_cli("sandbox", "run", loop, "--timeout", "0.5")
    assert text.returncode == 3 and "[sandbox] stopped: timeout after" in text.stderr
    bomb = _program(tmp_path, "x = bytearray(200 * 1024 * 1024)\n")
    assert run_cli("sandbox", "run", bomb, "--json").returncode == 0
    done = run_cli("sandbox", "run", bomb, "--memory-mb", "64", "--json")
    assert done.returncode == 3 and json.loads(done.stdout)["killed_reason"] == "memory"


def test_cli_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = run_cli("sandbox", "run", str(tmp_path / "nope.py"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
    as_json = run_cli("sandbox", "run", str(tmp_path / "nope.py"), "--json")
    assert json.loads(as_json.stdout)["error"].startswith("cannot read")
    for args in (["--memory-mb", "1"], ["--timeout", "0"], ["--timeout", "nan"]):
        bad = run_cli("sandbox", "run", __file__, *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    directory = run_cli("sandbox", "run", str(tmp_path), "--json")
    assert directory.returncode == 2 and "is a directory" in json.loads(directory.stdout)["error"]


def test_cli_without_bwrap_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    prog = _program(tmp_path, f"open({str(marker)!r}, 'w').write('x')\n")
    env = {**os.environ, BWRAP_ENV: "/nonexistent/bwrap"}
    done = run_cli("sandbox", "run", prog, "--json", env=env)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert "bubblewrap (bwrap) is not installed" in error["error"] and error["hint"]
    text = run_cli("sandbox", "run", prog, env=env)
    assert text.returncode == 1 and "error: bubblewrap" in text.stderr
    assert "Traceback" not in text.stderr and not marker.exists()


def test_signals_used_by_the_results_exist() -> None:
    assert signal.SIGXCPU and signal.SIGXFSZ


@pytest.mark.usefixtures("sandbox_here")
def test_cli_reads_stdin_and_never_reads_an_endless_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tether", "sandbox", "run", "-", "--json"],
        input=b"print('from stdin')\n",
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["stdout"] == "from stdin\n"
    endless = run_cli("sandbox", "run", "/dev/zero", "--json")
    assert endless.returncode == 1
    assert "max_code_bytes" in json.loads(endless.stdout)["error"]


@pytest.mark.usefixtures("sandbox_here")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_stopped_by_a_signal_leaves_nothing_behind(tmp_path: Path, signum: int) -> None:
    memory_mb = marked_memory_mb()
    prog = _program(tmp_path, "import os, time\nos.fork()\ntime.sleep(600)\n")
    cli = subprocess.Popen(
        [sys.executable, "-m", "tether", "sandbox", "run", prog, "--memory-mb", str(memory_mb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: len(alive(memory_mb)) >= 4), alive(memory_mb)
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=60)
        assert b"Traceback" not in stderr
        assert wait_until(lambda: not alive(memory_mb)), alive(memory_mb)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


@pytest.mark.usefixtures("sandbox_here")
async def test_the_smallest_limits_still_run_a_program() -> None:
    # A program of nearly 1 MiB, and 1 MiB of room in /tmp besides it.
    code = (
        "# " + "x" * ((1 << 20) - 100) + "\nopen('f', 'wb').write(b'x' * 1000000)\nprint('ran')\n"
    )
    result = await run(
        code, memory_mb=32, max_processes=1, max_open_files=16, work_dir_mb=1, max_file_mb=1
    )
    assert result.ok and result.stdout == "ran\n", result
    threads = await run(
        "import threading\nthreading.Thread(target=print).start()\n", max_processes=1
    )
    assert threads.exit_code == 1 and "can't start new thread" in threads.stderr
