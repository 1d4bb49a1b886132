"""The escape suite: code that tries to get out of the sandbox, against the real host (the
PostgreSQL and Redis of this machine, a real HTTP server, the host's files, environment,
processes and file descriptors). Every attempt must be contained."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.http_server import Server
from fakes.sandbox import IN_CI, alive, host_uid_of, marked_memory_mb, require_sandbox, wait_until
from tether.sandbox import Sandbox, SandboxLimits, SandboxResult
from tether.sandbox.command import HOST_UID_BASE, HOST_UID_SPAN
from tether.sandbox.limits import MIB

pytestmark = pytest.mark.usefixtures("sandbox_here")


@pytest.fixture
def sandbox_here() -> None:
    require_sandbox()


async def run(code: str, **limits: object) -> SandboxResult:
    limits.setdefault("timeout_s", 30.0)
    return await Sandbox(SandboxLimits(**limits)).run(textwrap.dedent(code))  # type: ignore[arg-type]


async def run_json(code: str, **limits: object) -> object:
    result = await run(code, **limits)
    assert result.ok, result
    return json.loads(result.stdout)


# --- network -------------------------------------------------------------------------------


def _connect_code(host: str, port: int) -> str:
    return f"""
        import json, socket
        try:
            s = socket.create_connection(({host!r}, {port}), timeout=3)
            s.sendall(b"PING\\r\\n")
            print(json.dumps({{"connected": True, "reply": s.recv(100).decode("latin-1")}}))
        except OSError as exc:
            print(json.dumps({{"connected": False, "errno": exc.errno, "error": str(exc)}}))
        """


def _host_reaches(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture
def http_server() -> Iterator[Server]:
    with Server() as s:
        yield s


@pytest.mark.parametrize(
    ("service", "host", "port"),
    [("postgresql", "127.0.0.1", 5432), ("redis", "127.0.0.1", 6379), ("redis-ipv6", "::1", 6379)],
)
async def test_loopback_services_of_the_host_are_out_of_reach(
    service: str, host: str, port: int
) -> None:
    if not _host_reaches(host, port):
        if IN_CI and service != "redis-ipv6":
            pytest.fail(f"CI=true requires {service} at {host}:{port}")
        pytest.skip(f"{service} does not listen at {host}:{port} here")
    found = await run_json(_connect_code(host, port))
    assert found["connected"] is False, found  # type: ignore[index]


async def test_a_test_http_server_on_the_host_is_out_of_reach(http_server: Server) -> None:
    port = int(http_server.url.rsplit(":", 1)[1].split("/")[0])
    assert _host_reaches("127.0.0.1", port)
    found = await run_json(_connect_code("127.0.0.1", port))
    assert found["connected"] is False, found  # type: ignore[index]
    assert http_server.requests == []


async def test_the_host_address_and_the_internet_are_out_of_reach() -> None:
    # The host's own non-loopback address (found without sending a packet), a listener on it,
    # and addresses on the internet: there is no route to any of them, and no name lookup.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 9))
        host_ip = probe.getsockname()[0]
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        found = await run_json(
            f"""
            import json, socket
            out = {{}}
            for host, port in [({host_ip!r}, {port}), ("1.1.1.1", 53), ("8.8.8.8", 443),
                               ("2606:4700:4700::1111", 443)]:
                try:
                    socket.create_connection((host, port), timeout=3).close()
                    out[host] = "connected"
                except OSError as exc:
                    out[host] = exc.errno
            try:
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
                out["udp"] = "sent"
            except OSError as exc:
                out["udp"] = exc.errno
            try:
                out["dns"] = socket.getaddrinfo("example.com", 80)[0][4][0]
            except OSError as exc:
                out["dns"] = "failed"
            out["interfaces"] = [name for _, name in socket.if_nameindex()]
            print(json.dumps(out))
            """
        )
    assert isinstance(found, dict)
    assert "connected" not in found.values() and found["udp"] != "sent", found
    assert found["dns"] == "failed"
    assert found["interfaces"] == ["lo"]


async def test_unix_sockets_of_host_services_are_out_of_reach(tmp_path: Path) -> None:
    path = tmp_path / "service.sock"
    abstract = f"\0tether-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX) as by_path, socket.socket(socket.AF_UNIX) as by_name:
        by_path.bind(str(path))
        by_path.listen()
        by_name.bind(abstract)
        by_name.listen()
        targets = [str(path), abstract, "/var/run/postgresql/.s.PGSQL.5432", "/run/redis.sock"]
        found = await run_json(
            f"""
            import json, socket
            out = {{}}
            for target in {targets!r}:
                try:
                    socket.socket(socket.AF_UNIX).connect(target)
                    out[repr(target)] = "connected"
                except OSError as exc:
                    out[repr(target)] = exc.errno
            print(json.dumps(out))
            """
        )
    assert isinstance(found, dict) and len(found) == len(targets)
    assert "connected" not in found.values(), found
    if any_exists("/var/run/postgresql/.s.PGSQL.5432"):  # the host does reach it
        with socket.socket(socket.AF_UNIX) as s:
            s.connect("/var/run/postgresql/.s.PGSQL.5432")


# --- files and environment -----------------------------------------------------------------


def any_exists(*paths: str | Path) -> bool:
    return any(os.path.lexists(p) for p in paths)


@pytest.fixture
def secret_files(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """A secret in the host's /tmp (pytest's tmp_path), in the home folder and beside the
    repository (under /work here)."""
    secret = f"tether-secret-{uuid.uuid4().hex}"
    home_file = Path.home() / f".tether-test-secret-{uuid.uuid4().hex}"
    repo_file = Path(__file__).parent / f".tether-test-secret-{uuid.uuid4().hex}"
    files = [tmp_path / "secret.txt", home_file, repo_file]
    for f in files:
        f.write_text(secret)
    try:
        yield secret, files
    finally:
        home_file.unlink(missing_ok=True)
        repo_file.unlink(missing_ok=True)


async def test_host_files_are_invisible(secret_files: tuple[str, list[Path]]) -> None:
    secret, files = secret_files
    host_dirs = ["/root", "/home", "/work", "/var", "/run", "/etc", "/sys", "/mnt", "/opt"]
    paths = [*map(str, files), __file__, "/etc/passwd", "/etc/shadow", *host_dirs]
    result = await run(
        f"""
        import json, os
        out = {{"root": sorted(os.listdir("/")), "exists": {{}}, "found": []}}
        for path in {paths!r}:
            out["exists"][path] = os.path.exists(path)
        # Every regular file outside /usr and /proc, read, for the secret (spelled backwards
        # here, so that this program, in /tmp/main.py, does not hold it).
        for top in sorted(set(os.listdir("/")) - {{"usr", "proc"}}):
            for folder, dirs, names in os.walk("/" + top):
                for name in names:
                    path = os.path.join(folder, name)
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue  # a device, a pipe (/dev/stdout), a link out
                    try:
                        with open(path, "rb") as f:
                            if {secret[::-1]!r}[::-1].encode() in f.read(1 << 20):
                                out["found"].append(path)
                    except OSError:
                        pass
        print(json.dumps(out))
        """,
        timeout_s=60.0,
    )
    assert result.ok, result
    found = json.loads(result.stdout)
    assert secret not in result.stdout
    assert found["found"] == []
    assert not any(found["exists"].values()), found["exists"]
    system = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}
    assert set(found["root"]) <= system | {"proc", "dev", "tmp"}
    for f in files:  # the host still has them: they were there to be found
        assert f.read_text() == secret


async def test_the_parent_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("TETHER_DATABASE_URL", f"postgresql://u:{secret}@127.0.0.1/db")
    monkeypatch.setenv("PYTHONPATH", "/tmp/evil")
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    result = await run(
        """
        import json, os
        environs = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        environs[pid] = f.read().decode("latin-1")
                except OSError as exc:
                    environs[pid] = f"unreadable: {exc.errno}"
        print(json.dumps({"environ": dict(os.environ), "procs": environs}))
        """
    )
    assert result.ok, result
    assert secret not in result.stdout
    found = json.loads(result.stdout)
    assert set(found["environ"]) == {"PATH", "HOME", "TMPDIR", "LANG", "PWD"}  # PWD: bwrap
    assert "evil" not in result.stdout


async def test_nothing_can_be_written_outside_the_work_dir(tmp_path: Path) -> None:
    name = f"tether-sandbox-{uuid.uuid4().hex}"
    outside = ["/", "/usr/", "/dev/", "/proc/", "/etc/", "/bin/", f"{tmp_path}/"]
    targets = [f"{folder}{name}" for folder in [*outside, "/tmp/", "/dev/shm/"]]
    found = await run_json(
        f"""
        import json
        out = {{}}
        for path in {targets!r}:
            try:
                with open(path, "w") as f:
                    f.write("x")
                out[path] = "written"
            except OSError as exc:
                out[path] = exc.errno
        print(json.dumps(out))
        """
    )
    assert isinstance(found, dict)
    written = sorted(p for p, v in found.items() if v == "written")
    assert written == sorted([f"/tmp/{name}", f"/dev/shm/{name}"]), found
    assert not any_exists(f"/tmp/{name}", f"/dev/shm/{name}", *targets[:-2])


async def test_the_work_dir_is_private_and_starts_empty() -> None:
    first = await run_json(
        "import os, json; open('left.txt', 'w').write('x'); "
        "print(json.dumps([os.getcwd(), sorted(os.listdir('.'))]))"
    )
    second = await run_json("import os, json; print(json.dumps(sorted(os.listdir('/tmp'))))")
    assert first == ["/tmp", ["left.txt", "main.py"]]
    assert second == ["main.py"]


async def test_the_work_dir_and_files_are_capped() -> None:
    found = await run_json(
        """
        import errno, json
        out = {}
        try:
            with open("/tmp/big", "wb") as f:
                f.write(b"x" * (3 * 1024 * 1024))
            out["big"] = "written"
        except OSError as exc:
            out["big"] = errno.errorcode[exc.errno]
        n = 0
        try:
            while True:
                with open(f"/tmp/fill{n}", "wb") as f:
                    f.write(b"x" * (512 * 1024))
                n += 1
        except OSError as exc:
            out["fill"] = errno.errorcode[exc.errno]
        out["files"] = n
        print(json.dumps(out))
        """,
        max_file_mb=2,
        work_dir_mb=4,
    )
    assert found == {"big": "EFBIG", "fill": "ENOSPC", "files": found["files"]}  # type: ignore[index]
    assert found["files"] < 8  # type: ignore[index]


# --- identity and privileges ---------------------------------------------------------------


async def test_the_code_runs_unprivileged_in_its_own_namespaces() -> None:
    found = await run_json(
        """
        import ctypes, json, os, socket
        lines = open("/proc/self/status").read().splitlines()
        status = dict(line.split(":\\t", 1) for line in lines)
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
        unshare = libc.unshare(CLONE_NEWUSER)
        unshare_errno = ctypes.get_errno()
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        cmdlines = [open(f"/proc/{p}/cmdline", "rb").read().decode("latin-1") for p in pids]
        print(json.dumps({
            "uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
            "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
            "cap_bnd": status["CapBnd"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
            "unshare_user": unshare, "unshare_errno": unshare_errno,
            "hostname": socket.gethostname(), "pids": pids, "cmdlines": cmdlines,
        }))
        """
    )
    assert isinstance(found, dict)
    assert found["uid"] == found["euid"] == 1000 and found["groups"] in ([], [1000])
    assert found["cap_eff"] == found["cap_prm"] == found["cap_bnd"] == "0000000000000000"
    assert found["no_new_privs"] == "1"
    assert found["unshare_user"] == -1  # no namespace of its own to regain capabilities in
    assert found["hostname"] == "sandbox"
    assert len(found["pids"]) <= 3  # bwrap's init and the program: no host process
    assert not any("pytest" in c for c in found["cmdlines"])


async def test_as_root_the_code_runs_under_a_uid_of_its_own_on_the_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root switches the uid (an ordinary user runs the sandbox as itself)")
    memory_mb = marked_memory_mb()
    task = asyncio.ensure_future(run("import time; time.sleep(60)", memory_mb=memory_mb))
    try:
        assert await asyncio.to_thread(wait_until, lambda: len(alive(memory_mb)) >= 3)
        uids = {host_uid_of(pid) for pid in alive(memory_mb)} - {None}
        assert uids and 0 not in uids
        assert all(HOST_UID_BASE <= uid < HOST_UID_BASE + HOST_UID_SPAN for uid in uids)  # type: ignore[operator]
    finally:
        task.cancel()
    assert await asyncio.to_thread(wait_until, lambda: not alive(memory_mb))


# --- resource exhaustion -------------------------------------------------------------------


async def test_a_fork_bomb_is_bounded_and_nothing_survives() -> None:
    memory_mb = marked_memory_mb()
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(alive(memory_mb)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = await run(
            """
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """,
            timeout_s=3.0,
            max_processes=8,
            memory_mb=memory_mb,
        )
    finally:
        stop.set()
        sampler.join()
    assert result.timed_out and result.killed_reason == "timeout" and result.exit_code is None
    # The program's processes (8 at most) plus bwrap outside and bwrap's init inside.
    assert 3 <= peak <= 8 + 2
    assert wait_until(lambda: not alive(memory_mb))


async def test_a_memory_bomb_ends_on_its_limit() -> None:
    result = await run(
        """
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
        """,
        memory_mb=128,
    )
    assert result.exit_code == 1 and result.killed_reason == "memory", result
    assert "MemoryError" in result.stderr
    one_shot = await run("x = bytearray(64 * 1024 ** 3)", memory_mb=64)
    assert one_shot.killed_reason == "memory"


async def test_an_endless_loop_is_killed_at_the_wall_clock_with_what_it_printed() -> None:
    memory_mb = marked_memory_mb()
    result = await run(
        """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("started", flush=True)
        if os.fork() == 0:
            os.setsid()  # leaves the process group: the PID namespace still ends it
            while True:
                pass
        while True:
            pass
        """,
        timeout_s=1.5,
        memory_mb=memory_mb,
    )
    assert result.timed_out and result.killed_reason == "timeout" and result.exit_code is None
    assert result.stdout == "started\n"
    assert result.duration_ms >= 1500
    assert wait_until(lambda: not alive(memory_mb))


async def test_cpu_time_is_limited_apart_from_the_wall_clock() -> None:
    result = await run("while True:\n    pass\n", cpu_s=1, timeout_s=60.0)
    assert result.killed_reason == "cpu_time" and not result.timed_out
    assert result.exit_code == 128 + signal.SIGXCPU


async def test_open_files_are_limited() -> None:
    found = await run_json(
        """
        import errno, json
        files = []
        try:
            while True:
                files.append(open("/dev/null"))
        except OSError as exc:
            print(json.dumps([errno.errorcode[exc.errno], len(files)]))
        """,
        max_open_files=32,
    )
    assert found[0] == "EMFILE" and found[1] < 32  # type: ignore[index]


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_huge_output_is_capped_and_ends_the_run(stream: str) -> None:
    memory_mb = marked_memory_mb()
    result = await run(
        f"""
        import sys
        chunk = "x" * 65536
        while True:
            sys.{stream}.write(chunk)
        """,
        max_output_bytes=MIB,
        timeout_s=120.0,
        memory_mb=memory_mb,
    )
    assert result.killed_reason == "output_limit" and not result.timed_out
    assert result.exit_code is None
    assert len(getattr(result, stream)) == MIB
    assert wait_until(lambda: not alive(memory_mb))


# --- the parent, descriptors, cancellation -------------------------------------------------

_PARENT = """
import asyncio, sys
from tether.sandbox import Sandbox, SandboxLimits
code = '''
import os, time
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        time.sleep(600)
time.sleep(600)
'''
limits = SandboxLimits(timeout_s=600, memory_mb=int(sys.argv[1]))
asyncio.run(Sandbox(limits).run(code))
"""


def test_killing_the_parent_kills_the_sandbox() -> None:
    memory_mb = marked_memory_mb()
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(memory_mb)])
    try:
        # bwrap outside, bwrap's init, the program and its three children.
        assert wait_until(lambda: len(alive(memory_mb)) >= 6), alive(memory_mb)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_until(lambda: not alive(memory_mb)), alive(memory_mb)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def test_inherited_file_descriptors_are_closed(
    secret_files: tuple[str, list[Path]],
) -> None:
    secret, files = secret_files
    fd = os.open(files[0], os.O_RDONLY)
    os.set_inheritable(fd, True)  # opened without CLOEXEC, as careless code does
    listener = socket.socket()
    listener.set_inheritable(True)
    try:
        result = await run(
            """
            import json, os
            out = {}
            for fd in sorted(os.listdir("/proc/self/fd"), key=int):
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                data = ""
                try:
                    os.lseek(int(fd), 0, 0)
                    data = os.read(int(fd), 4096).decode("latin-1")
                except OSError:
                    pass
                out[fd] = [target, data]
            print(json.dumps(out))
            """
        )
    finally:
        os.close(fd)
        listener.close()
    assert result.ok, result
    assert secret not in result.stdout and str(files[0]) not in result.stdout
    found = json.loads(result.stdout)
    others = {k: v for k, v in found.items() if k not in ("0", "1", "2")}
    # Only the status pipe is passed on purpose (and the directory listing's own fd).
    assert all(v[0].startswith("pipe:") or v[0] == "/proc/self/fd" for v in others.values())
    assert str(fd) not in found or found[str(fd)][0].startswith("pipe:")
    assert not any(v[0].startswith("socket:") for v in found.values())


async def test_a_cancelled_run_leaves_nothing_behind() -> None:
    memory_mb = marked_memory_mb()
    task = asyncio.ensure_future(
        run("import os, time\nos.fork()\ntime.sleep(600)\n", memory_mb=memory_mb)
    )
    assert await asyncio.to_thread(wait_until, lambda: len(alive(memory_mb)) >= 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(wait_until, lambda: not alive(memory_mb))


async def test_background_processes_end_with_the_program() -> None:
    memory_mb = marked_memory_mb()
    result = await run(
        """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            time.sleep(600)
        print("leaving")
        """,
        memory_mb=memory_mb,
    )
    assert result.ok and result.stdout == "leaving\n", result
    assert wait_until(lambda: not alive(memory_mb)), alive(memory_mb)


async def test_concurrent_runs_are_separate() -> None:
    code = (
        "import os\nopen('mine', 'w').write('{}')\nprint(sorted(os.listdir()), open('mine').read())"
    )
    results = await asyncio.gather(*(run(code.format(i)) for i in range(6)))
    assert [r.stdout for r in results] == [f"['main.py', 'mine'] {i}\n" for i in range(6)]
