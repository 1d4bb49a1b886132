"""The command line of one sandboxed run: bubblewrap's namespaces and mounts, an unprivileged
uid, and the bootstrap that sets the rlimits and runs the program.

Layout inside the sandbox: ``/usr`` (and the ``/bin``, ``/lib``... links or directories the
host has) read-only, a fresh ``/proc`` and ``/dev``, ``/tmp`` (the work dir) and ``/dev/shm``
as small tmpfs mounts, and nothing else: no ``/etc``, ``/home``, ``/root``, ``/run``,
``/var``, ``/sys`` or host ``/tmp``. ``/`` and ``/dev`` are remounted read-only, so nothing
can be written outside the two tmpfs mounts, whose sizes are capped.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tether.core import TetherError
from tether.sandbox.limits import MIB, SandboxLimits

WORK_DIR = "/tmp"
"""The private work dir inside the sandbox (and the program's current directory)."""
MAIN_FILE = f"{WORK_DIR}/main.py"
"""Where the program is written inside the sandbox (what its tracebacks name)."""
SANDBOX_UID = 1000
"""The uid (and gid) the program sees inside the sandbox."""
HOST_UID_BASE = 0x5A00_0000
HOST_UID_SPAN = 1 << 24
"""When Tether runs as root, each run gets its own uid on the host, drawn from
``[HOST_UID_BASE, HOST_UID_BASE + HOST_UID_SPAN)``: no host file or process belongs to it, and
``RLIMIT_NPROC``, which never binds root, binds it."""
SHM_MB = 16
"""Size of ``/dev/shm`` (POSIX semaphores, ``multiprocessing``)."""
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap); sandboxed code never runs without it"
)


class SandboxError(TetherError):
    """A sandboxed run could not be made (the program too large, the sandbox not starting)."""


class SandboxUnavailable(SandboxError):
    """The sandbox cannot run here (bubblewrap or setpriv missing, user namespaces refused):
    code is never run unsandboxed instead."""


@dataclass(frozen=True, slots=True)
class Host:
    """What this machine offers the sandbox."""

    bwrap: str
    """Path of ``bwrap``."""
    setpriv: str | None
    """Path of ``setpriv``, used to drop root to an unprivileged uid (``None``: not root)."""
    python: str
    """The interpreter run inside the sandbox (the same path as on the host)."""
    python_prefix: str | None
    """A directory outside ``/usr`` that holds that interpreter, mounted read-only."""
    disable_userns: bool = True
    """Whether ``bwrap`` can forbid namespaces inside the sandbox (bubblewrap 0.8 and later)."""


BWRAP_ENV = "TETHER_BWRAP"
"""Environment variable naming the ``bwrap`` to use (default: ``bwrap`` on the PATH)."""


def find_host(python: str | None = None) -> Host:
    """Find ``bwrap``, ``setpriv`` (as root) and a Python interpreter; ``SandboxUnavailable``
    naming what is missing. ``python`` overrides the interpreter (default: ``/usr/bin/python3``,
    else ``/usr/local/bin/python3``, else the interpreter running Tether)."""
    named = os.environ.get(BWRAP_ENV)
    bwrap = shutil.which(named or "bwrap", path=None if named else _tool_path())
    if bwrap is None:
        where = f"at {named} ({BWRAP_ENV})" if named else "on this machine"
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed {where}", hint=_INSTALL_HINT)
    setpriv = None
    if os.geteuid() == 0:
        # As root bwrap keeps the real uid 0 outside, where RLIMIT_NPROC does not bind.
        setpriv = shutil.which("setpriv", path=_tool_path())
        if setpriv is None:
            raise SandboxUnavailable(
                "running as root, the sandbox needs setpriv (util-linux) to run code under "
                "an unprivileged uid, and it is not installed",
                hint="install util-linux (Debian: apt-get install util-linux), or run Tether "
                "as an ordinary user",
            )
    interpreter, prefix = _interpreter(python)
    return Host(
        bwrap=bwrap,
        setpriv=setpriv,
        python=interpreter,
        python_prefix=prefix,
        disable_userns=_bwrap_version(bwrap) >= (0, 8),
    )


@functools.cache
def _bwrap_version(bwrap: str) -> tuple[int, ...]:
    """``bwrap --version`` as numbers; ``(0,)`` when it does not say (then the options of
    later versions are not used, and a bwrap that does not run fails when the sandbox starts)."""
    try:
        out = subprocess.run(
            [bwrap, "--version"], capture_output=True, timeout=10, env={}, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    found = re.search(rb"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(n) for n in found.groups(b"0")) if found else (0,)


def _tool_path() -> str:
    # The system's directories too: root's PATH in a container may lack /usr/sbin, and an
    # ordinary user's may lack /sbin, where some distributions put setpriv.
    extra = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return f"{os.environ.get('PATH', '')}:{extra}"


def _interpreter(python: str | None) -> tuple[str, str | None]:
    if python is None:
        candidates = [p for p in _PYTHONS if os.access(p, os.X_OK)]
        base = getattr(sys, "_base_executable", None) or sys.executable
        python = candidates[0] if candidates else base
    real = Path(python).resolve()
    if not (real.is_file() and os.access(real, os.X_OK)):
        raise SandboxUnavailable(
            f"no Python interpreter at {python}",
            hint="install python3 (Debian: apt-get install python3-minimal)",
        )
    if real.is_relative_to("/usr"):
        return str(real), None
    # An interpreter of its own prefix (pyenv, uv): that prefix is mounted read-only, and
    # nothing else of the directory it is in.
    return str(real), str(real.parents[1])


def host_uid() -> int:
    """A fresh host uid for one run (see ``HOST_UID_BASE``)."""
    return HOST_UID_BASE + secrets.randbelow(HOST_UID_SPAN)


BOOTSTRAP = f"""\
def _tether_sandbox():
    import builtins, os, sys, resource as r
    status, cpu, mem, nproc, fsize, nofile = map(int, sys.argv[1:])
    os.write(status, b"started\\n")
    os.set_inheritable(status, False)
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    source = b"".join(chunks)
    del chunks
    with open({MAIN_FILE!r}, "wb") as f:
        f.write(source)
    r.setrlimit(r.RLIMIT_CORE, (0, 0))
    r.setrlimit(r.RLIMIT_CPU, (cpu, cpu + 1))
    r.setrlimit(r.RLIMIT_AS, (mem, mem))
    r.setrlimit(r.RLIMIT_NPROC, (nproc, nproc))
    r.setrlimit(r.RLIMIT_FSIZE, (fsize, fsize))
    r.setrlimit(r.RLIMIT_NOFILE, (nofile, nofile))
    sys.argv = [{MAIN_FILE!r}]
    sys.path.insert(0, {WORK_DIR!r})
    scope = sys.modules["__main__"].__dict__
    scope.clear()
    scope.update(__name__="__main__", __file__={MAIN_FILE!r}, __builtins__=builtins,
                 __doc__=None, __package__=None, __spec__=None, __loader__=None)
    try:
        exec(compile(source, {MAIN_FILE!r}, "exec"), scope)
    except SystemExit as e:
        code = e.code
        code = 0 if code is None else code if isinstance(code, int) else 1
        os.write(status, b"exit %d\\n" % (code & 255))
        raise
    except BaseException as e:
        note = b"memory\\n" if isinstance(e, MemoryError) else b""
        del source
        try:
            import traceback
            tb = e.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
                tb = tb.tb_next
            traceback.print_exception(type(e), e, tb)
        except BaseException:
            os.write(2, repr(e).encode("utf-8", "replace") + b"\\n")
        os.write(status, note + b"exit 1\\n")
        raise SystemExit(1) from None
    os.write(status, b"exit 0\\n")
_tether_sandbox()
"""
"""Runs inside the sandbox as ``python -I -S -u -c BOOTSTRAP``: reads the program from stdin
(then stdin is ``/dev/null``), writes it to ``MAIN_FILE``, sets the rlimits, and runs it as
``python main.py`` would, in the same process (a second interpreter would double the start
time). It reports on the status pipe: ``started`` (the sandbox is up), ``memory`` (an uncaught
``MemoryError``), ``exit N`` (the program ended without being killed)."""


def sandbox_argv(host: Host, limits: SandboxLimits, status_fd: int, uid: int) -> list[str]:
    """The command that runs one program under ``limits``; it reads the program on stdin and
    reports on ``status_fd``. ``uid`` is the host uid when ``host.setpriv`` is set."""
    argv: list[str] = []
    if host.setpriv is not None:
        argv += [
            host.setpriv,
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            f"--pdeathsig={signal.SIGKILL.name}",
            "--",
        ]
    argv += [
        host.bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *(["--disable-userns"] if host.disable_userns else []),  # nothing to regain inside
        "--die-with-parent",
        "--new-session",  # no controlling terminal: no TIOCSTI into the operator's shell
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/local/bin:/usr/bin:/bin",
        "--setenv",
        "HOME",
        WORK_DIR,
        "--setenv",
        "TMPDIR",
        WORK_DIR,
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in _ROOT_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    if host.python_prefix is not None:
        argv += ["--ro-bind", host.python_prefix, host.python_prefix]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(limits.work_dir_mb * MIB + limits.max_code_bytes),  # room for main.py as well
        "--tmpfs",
        WORK_DIR,
        "--perms",
        "1777",
        "--size",
        str(SHM_MB * MIB),
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        WORK_DIR,
        "--",
        host.python,
        "-I",  # no PYTHON* variables, no user site, no current dir on sys.path
        "-S",  # no site: the standard library only, and a faster start
        "-u",  # unbuffered: what was printed before a kill is kept
        "-c",
        BOOTSTRAP,
        str(status_fd),
        str(limits.cpu_seconds),
        str(limits.memory_mb * MIB),
        # bwrap's own init (pid 1 of the sandbox) runs under the same uid.
        str(limits.max_processes + 1),
        str(limits.max_file_mb * MIB),
        str(limits.max_open_files),
    ]
    return argv
