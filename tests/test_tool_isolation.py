"""``isolation: process``: a function tool runs in a child process that is killed at its
timeout, so a CPU-bound call that timed out does not keep spinning."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from fakes.specs import make_spec
from tether import Agent, ScriptedModel
from tether.core import SpecError
from tether.spec import PythonToolSpec
from tether.tools import FunctionTool, build_tools

TOOLS = """\
    import os
    from pathlib import Path

    from tether import tool


    def spin(pid_file: str) -> str:
        Path(pid_file).write_text(str(os.getpid()))
        while True:
            pass


    @tool(side_effects="read")
    def where(label: str) -> dict:
        return {"label": label, "pid": os.getpid(), "env": os.environ.get("ISOLATION_PROBE")}


    def unserializable() -> object:
        return object()


    def exits() -> str:
        raise SystemExit(3)
    """


def write_agent(folder: Path) -> Path:
    (folder / "tools.py").write_text(textwrap.dedent(TOOLS))
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


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_timed_out_process_tool_is_killed_and_the_next_call_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISOLATION_PROBE", "seen-by-the-child")
    agent = Agent.from_yaml(write_agent(tmp_path), trace=False)
    result = agent.run_sync("go")  # the first call starts the forkserver (120 s allowed)

    assert result.outcome == "final_answer", result.stop_reason
    spun, after = (result.output or "").split(" | ")
    assert spun == "Error: tool 'spin' timed out after 3s"
    pid = int((tmp_path / "spin.pid").read_text())
    assert pid != os.getpid()
    deadline = time.monotonic() + 30
    while pid_exists(pid) and time.monotonic() < deadline:  # reaped by the forkserver
        time.sleep(0.05)
    assert not pid_exists(pid), f"the timed-out tool's process {pid} is still running"
    # The next call ran, in a process of its own that saw this process's environment.
    assert '"label":"after"' in after
    assert '"env":"seen-by-the-child"' in after
    assert f'"pid":{os.getpid()}' not in after


async def test_results_and_failures_of_isolated_calls(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(textwrap.dedent(TOOLS))
    tools = build_tools(
        [
            PythonToolSpec(name=n, function=f"tools.py:{n}", isolation="process")
            for n in ("where", "unserializable", "exits")
        ],
        base_dir=tmp_path,
    )
    ok = await tools["where"].call({"label": "x"})
    assert ok.data["label"] == "x" and ok.data["pid"] != os.getpid()
    with pytest.raises(Exception, match="cannot be turned into JSON"):
        await tools["unserializable"].call({})
    with pytest.raises(Exception, match=r"failed in its process: SystemExit: 3"):
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
