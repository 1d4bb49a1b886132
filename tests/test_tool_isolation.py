"""``isolation: process``: a function tool runs in a child process that is killed at its
timeout, with whatever it started, and the caller's script is never run a second time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fakes.specs import make_spec
from tether import Agent, ScriptedModel
from tether.core import SpecError, ToolError
from tether.spec import PythonToolSpec
from tether.tools import FunctionTool, Tool, build_tools

TOOLS = """\
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tether import tool

    SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


    def spin(pid_file: str) -> str:
        Path(pid_file).write_text(f"{os.getpid()} {os.getppid()}")
        while True:
            pass


    @tool(side_effects="read")
    def where(label: str) -> dict:
        return {
            "label": label,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "env": os.environ.get("ISOLATION_PROBE"),
        }


    def unserializable() -> object:
        return object()


    def exits() -> str:
        raise SystemExit(3)


    def spawn_and_spin(pid_file: str) -> str:
        # A process of its own, in the tool's process group, that ignores SIGTERM.
        sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER])
        Path(pid_file).write_text(f"{os.getpid()} {sleeper.pid}")
        while True:
            pass


    def spawn_and_return() -> int:
        return subprocess.Popen([sys.executable, "-c", SLEEPER]).pid


    def wait_for_peers(folder: str, label: str, peers: int) -> int:
        # Returns only once every peer call has started: calls made one after the other
        # would wait here until the deadline.
        Path(folder, label).touch()
        deadline = time.monotonic() + 60
        while len(list(Path(folder).iterdir())) < peers:
            if time.monotonic() > deadline:
                raise TimeoutError("the other calls never started")
            time.sleep(0.01)
        return os.getpid()
    """

DEADLINE_S = 60


def write_tools(folder: Path) -> None:
    (folder / "tools.py").write_text(textwrap.dedent(TOOLS))


def isolated_tools(folder: Path, *names: str) -> dict[str, Tool]:
    write_tools(folder)
    specs = [PythonToolSpec(name=n, function=f"tools.py:{n}", isolation="process") for n in names]
    return build_tools(specs, base_dir=folder)


def write_agent(folder: Path) -> Path:
    write_tools(folder)
    pid_file = folder / "spin.pid"
    (folder / "script.yaml").write_text(
        textwrap.dedent(
            f"""\
            steps:
              - tool_calls: [{{name: where, arguments: {{label: before}}}}]
              - tool_calls: [{{name: spin, arguments: {{pid_file: "{pid_file}"}}}}]
              - tool_calls: [{{name: where, arguments: {{label: after}}}}]
              - text: "{{result:spin}} | {{result:where}}"
            """
        )
    )
    spec = folder / "agent.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            name: isolated
            model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}
            limits: {timeout_s: 300}
            tools:
              - {name: where, function: tools.py:where, isolation: process, timeout_s: 120}
              - {name: spin, function: tools.py:spin, isolation: process, timeout_s: 3}
            """
        )
    )
    return spec


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {DEADLINE_S}s: {what}"
        time.sleep(0.02)


def written(path: Path) -> str:
    """The text of ``path`` once something has been written to it."""
    wait_until(lambda: path.exists() and bool(path.read_text()), f"{path} to be written")
    return path.read_text()


def test_a_timed_out_process_tool_is_killed_and_the_next_call_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISOLATION_PROBE", "seen-by-the-child")
    agent = Agent.from_yaml(write_agent(tmp_path), trace=False)
    result = agent.run_sync("go")  # the first call may start the helper process (120 s allowed)

    assert result.outcome == "final_answer", result.stop_reason
    spun, after = (result.output or "").split(" | ")
    assert spun == "Error: tool 'spin' timed out after 3s"
    pid = int((tmp_path / "spin.pid").read_text().split()[0])
    assert pid != os.getpid()
    wait_until(lambda: not pid_running(pid), f"the timed-out tool's process {pid} to end")
    # The next call ran, in a process of its own that saw this process's environment.
    assert '"label":"after"' in after
    assert '"env":"seen-by-the-child"' in after
    assert f'"pid":{os.getpid()}' not in after


async def test_results_and_failures_of_isolated_calls(tmp_path: Path) -> None:
    tools = isolated_tools(tmp_path, "where", "unserializable", "exits")
    ok = await tools["where"].call({"label": "x"})
    assert ok.data["label"] == "x" and ok.data["pid"] != os.getpid()
    with pytest.raises(ToolError, match="cannot be turned into JSON"):
        await tools["unserializable"].call({})
    with pytest.raises(ToolError, match=r"failed in its process: SystemExit: 3"):
        await tools["exits"].call({})


def test_a_function_a_child_cannot_import_is_refused_when_built() -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(SpecError, match="isolation 'process' needs a function that a child"):
        FunctionTool(local, isolation="process")
    model = ScriptedModel([{"text": "hi"}])
    spec = make_spec(tools=[PythonToolSpec(name="local", isolation="process")])
    with pytest.raises(SpecError, match=r"tools\[0\] 'local'.*isolation 'process'"):
        Agent(spec, model=model, tools=[local], trace=False)


def test_a_script_without_a_main_guard_runs_its_top_level_once(tmp_path: Path) -> None:
    write_agent(tmp_path)
    (tmp_path / "script.yaml").write_text(
        "steps:\n  - tool_calls: [{name: where, arguments: {label: once}}]\n"
        '  - text: "{result:where}"\n'
    )
    (tmp_path / "noguard.py").write_text(
        textwrap.dedent(
            """\
            from tether import Agent

            with open("top_level.log", "a") as log:
                log.write("ran\\n")
            print("OUTPUT", Agent.from_yaml("agent.yaml", trace=False).run_sync("go").output)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "noguard.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "top_level.log").read_text() == "ran\n", done.stdout + done.stderr
    assert '"label":"once"' in done.stdout, done.stdout + done.stderr


async def test_what_a_timed_out_tool_started_is_killed_too(tmp_path: Path) -> None:
    tools = isolated_tools(tmp_path, "spawn_and_spin")
    pid_file = tmp_path / "pids"
    call = asyncio.create_task(tools["spawn_and_spin"].call({"pid_file": str(pid_file)}))
    child, sleeper = map(int, (await asyncio.to_thread(written, pid_file)).split())
    call.cancel()  # what the tool's timeout does
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(DEADLINE_S):
            await call

    wait_until(lambda: not pid_running(child), f"the tool's process {child} to end")
    wait_until(lambda: not pid_running(sleeper), f"the process {sleeper} it started to end")


async def test_what_a_tool_started_ends_when_it_returns(tmp_path: Path) -> None:
    tools = isolated_tools(tmp_path, "spawn_and_return")
    sleeper = int((await tools["spawn_and_return"].call({})).content)

    wait_until(lambda: not pid_running(sleeper), f"the process {sleeper} the tool started to end")


async def test_isolated_calls_run_concurrently(tmp_path: Path) -> None:
    tools = isolated_tools(tmp_path, "wait_for_peers")
    peers = tmp_path / "peers"
    peers.mkdir()
    async with asyncio.timeout(300):
        results = await asyncio.gather(
            *(
                tools["wait_for_peers"].call({"folder": str(peers), "label": str(i), "peers": 4})
                for i in range(4)
            )
        )

    pids = {result.content for result in results}
    assert len(pids) == 4 and str(os.getpid()) not in pids


async def test_a_killed_helper_fails_its_calls_and_the_next_call_starts_another(
    tmp_path: Path,
) -> None:
    tools = isolated_tools(tmp_path, "spin", "where")
    pid_file = tmp_path / "spin.pid"
    call = asyncio.create_task(tools["spin"].call({"pid_file": str(pid_file)}))
    child, helper = map(int, (await asyncio.to_thread(written, pid_file)).split())
    os.kill(helper, signal.SIGKILL)

    with pytest.raises(ToolError, match=r"tools ended \(killed by signal 9\)"):
        async with asyncio.timeout(DEADLINE_S):
            await call
    wait_until(lambda: not pid_running(child), f"the tool's process {child} to end")
    after = await tools["where"].call({"label": "again"})
    assert after.data["label"] == "again" and after.data["ppid"] != helper


WORKER_USER = """\
    import asyncio
    import sys
    from pathlib import Path

    from tether.spec import PythonToolSpec
    from tether.tools import build_tools

    specs = [
        PythonToolSpec(name=name, function=f"tools.py:{name}", isolation="process")
        for name in ("where", "spin")
    ]
    tools = build_tools(specs, base_dir=Path("."))


    async def main() -> None:
        where = await tools["where"].call({"label": "x"})
        print(where.data["ppid"], flush=True)  # the helper process
        if sys.argv[1] == "spin":  # never returns: the test kills this process
            await tools["spin"].call({"pid_file": "spin.pid"})


    if __name__ == "__main__":  # not needed any more; here so this test checks one thing
        asyncio.run(main())
    """


@pytest.mark.parametrize("ending", ["exits", "is killed"])
def test_the_helper_process_ends_with_the_process_that_started_it(
    tmp_path: Path, ending: str
) -> None:
    write_tools(tmp_path)
    (tmp_path / "user.py").write_text(textwrap.dedent(WORKER_USER))
    mode = "spin" if ending == "is killed" else "return"
    user = subprocess.Popen(
        [sys.executable, "user.py", mode], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert user.stdout is not None
        helper = int(user.stdout.readline())
        assert pid_running(helper)
        if ending == "is killed":
            pid_file = tmp_path / "spin.pid"
            wait_until(
                lambda: pid_file.exists() and bool(pid_file.read_text()), "the tool to start"
            )
            child = int(pid_file.read_text().split()[0])
            user.kill()
        assert user.wait(timeout=DEADLINE_S) == (0 if ending == "exits" else -signal.SIGKILL)
    finally:
        user.kill()
        user.wait()

    wait_until(lambda: not pid_running(helper), f"the helper process {helper} to end")
    if ending == "is killed":
        wait_until(lambda: not pid_running(child), f"the tool's process {child} to end")
