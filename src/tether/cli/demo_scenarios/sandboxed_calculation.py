"""Demo scenario: a calculation the model does by running Python in the sandbox.

The calculator example (``examples/calculator``) has one tool, ``run_python`` (``kind:
python_sandbox``): the program runs under bubblewrap with no network, no view of the host's
files, an unprivileged uid and limits (docs/sandbox.md). Asked for 25 factorial, the model
writes a two-line program; the sandbox runs it and the answer is its output.

Where the sandbox cannot run (no ``bwrap``, or user namespaces refused) it fails closed: no
code runs at all. The scenario then says so and why, and is skipped, not failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from tether.cli import render
from tether.cli.demo import print_run
from tether.cli.demo_scenarios.report import ScenarioReport
from tether.core import Outcome
from tether.runtime import Agent
from tether.runtime.scope import TraceTarget
from tether.sandbox import SandboxUnavailable
from tether.tools.sandbox import PythonSandboxTool

NAME = "sandboxed calculation"
QUESTION = "What is 25 factorial?"
TOOL = "run_python"
ANSWER = "15511210043330985984000000"  # math.factorial(25)


def _skipped(agent: str, exc: SandboxUnavailable) -> ScenarioReport:
    why = f"{exc.message}; the sandbox fails closed, so no code ran"

    def show(console: Console) -> None:
        console.print(f"[yellow]skipped:[/] {escape(why)}", highlight=False)
        if exc.hint:
            console.print(f"[dim]hint: {escape(exc.hint)}[/]", highlight=False)

    return ScenarioReport(
        name=NAME,
        agent=agent,
        as_expected=True,
        show=show,
        skipped=why,
        data={"hint": exc.hint},
    )


async def sandboxed_calculation(trace: TraceTarget, examples: Path) -> ScenarioReport:
    """Run the calculator agent once, or say why the sandbox cannot run here."""
    async with Agent.from_yaml(examples / "calculator" / "agent.yaml", trace=trace) as agent:
        tool = agent.tools[TOOL]
        assert isinstance(tool, PythonSandboxTool)
        try:  # a missing bwrap, or one that cannot start here, before the run is made
            await tool.sandbox.run("pass")
        except SandboxUnavailable as exc:
            return _skipped(agent.name, exc)
        result = await agent.run(QUESTION, metadata={"demo": NAME})
    content = next(
        (m.content for m in result.state.messages if m.role == "tool" and m.name == TOOL), ""
    )
    try:
        ran: dict[str, Any] = json.loads(content)
    except ValueError:
        ran = {"error": content}
    code = next(
        (c.arguments.get("code", "") for m in result.state.messages for c in m.tool_calls), ""
    )
    limits = tool.sandbox.limits

    def show(console: Console) -> None:
        print_run(console, QUESTION, result)
        program = "; ".join(line for line in str(code).splitlines() if line.strip())
        if "exit_code" in ran:
            stopped = f", killed: {ran['killed_reason']}" if ran.get("killed_reason") else ""
            console.print(
                f"[dim]sandbox:[/] {escape(repr(program))} exited {ran['exit_code']}"
                f"{escape(stopped)} in {render.fmt_ms(float(ran['duration_ms']))} (bubblewrap: "
                f"no network, no host files, at most {limits.timeout_s:g}s and "
                f"{limits.memory_mb} MB)",
                highlight=False,
            )
        else:
            console.print(f"[red]sandbox:[/] {escape(content)}", highlight=False)

    return ScenarioReport(
        name=NAME,
        agent=agent.name,
        as_expected=(
            result.outcome == Outcome.FINAL_ANSWER
            and ran.get("exit_code") == 0
            and str(ran.get("stdout", "")).strip() == ANSWER
        ),
        show=show,
        runs=[result],
        data={
            "input": QUESTION,
            "code": code,
            "sandbox": ran,
            **render.result_json(result),
        },
    )
