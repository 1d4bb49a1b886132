"""``tether demo``: the example agents, offline. Four scenarios of the runtime on the support
agent (a normal answer, a recovered tool error, a loop broken, a limit tripped), three of the
guards (an injection hidden in a tool's output caught while the run answers from the rest, a
customer's e-mail and card number masked before the model and the trace see them, an answer
that breaks the required schema re-asked and fixed), then the scenarios of
``tether.cli.demo_scenarios`` (a refund denied by a Cedar policy, a failing upstream served by
the fallback while the circuit breaker opens, a calculation run in the sandbox, and a refund a
person approves before the run goes on)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.cli import render
from tether.core import Outcome, TetherError
from tether.runtime import Agent, RunResult
from tether.trace import writer_for

if TYPE_CHECKING:
    from tether.cli.demo_scenarios import Scenario, ScenarioReport
    from tether.trace import TraceSink

WITHHELD = "Tool result withheld by policy"
REFUSED = "Tool call refused by policy"

ORDERS: dict[int, dict[str, Any]] = {
    17: {"status": "delivered", "carrier": "UPS", "eta": "2026-11-02"},
    1001: {"status": "delivered", "carrier": "DHL", "eta": "2026-10-12"},
    1002: {"status": "delivered", "carrier": "UPS", "eta": "2026-10-30"},
    1003: {"status": "returned", "carrier": "UPS", "eta": "2026-11-04"},
    1004: {"status": "processing", "carrier": "DHL", "eta": "2026-11-28"},
    1042: {"status": "in transit", "carrier": "DHL", "eta": "2026-11-25"},
}

SCENARIOS: list[tuple[str, str, str, Outcome]] = [
    (
        "normal answer",
        "agent.yaml",
        "Where is my order 1042? And how long does shipping take?",
        Outcome.FINAL_ANSWER,
    ),
    (
        "recovered tool error",
        "agent.yaml",
        "What's the status of order A-17?",
        Outcome.FINAL_ANSWER,
    ),
    ("loop broken", "agent.yaml", "How do I cancel my subscription?", Outcome.LOOP_DETECTED),
    (
        "limit tripped",
        "agent.yaml",
        "Please check every order I have ever placed.",
        Outcome.LIMIT_EXCEEDED,
    ),
    (
        "injection caught",
        "agent.yaml",
        "Can I pay with a gift card? And where is my order 1002?",
        Outcome.FINAL_ANSWER,
    ),
    (
        "personal data masked",
        "agent.yaml",
        "Please refund order 1003 to my card 4111 1111 1111 1111 and confirm to "
        "jane.roe@example.org.",
        Outcome.FINAL_ANSWER,
    ),
    (
        "schema re-asked",
        "order_report.yaml",
        "Status report for order 1042, please.",
        Outcome.FINAL_ANSWER,
    ),
]
"""Each scenario: its name, the agent it runs (a spec in examples/support), the input, and
the outcome it should end with."""


class _OrderHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        match = re.fullmatch(r"/orders/(\d+)", self.path)
        order = ORDERS.get(int(match.group(1))) if match else None
        if match and order is not None:
            self._reply(200, {"order_id": int(match.group(1)), **order})
        else:
            self._reply(404, {"error": f"no order at {self.path}"})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the demo's output stays readable."""


@contextmanager
def order_api() -> Iterator[str]:
    """The demo's order-status API on 127.0.0.1 (a free port); yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OrderHandler)
    thread = threading.Thread(target=server.serve_forever, name="demo-order-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def examples_dir() -> Path:
    """The examples shipped in the wheel, or the repository's ``examples/`` in a checkout."""
    here = Path(__file__).resolve()
    for candidate in (here.parent.parent / "_examples", here.parents[3] / "examples"):
        if (candidate / "support" / "agent.yaml").is_file():
            return candidate
    raise TetherError("cannot find the example agents (examples/support/agent.yaml)")


async def _run_all(agents: dict[str, Agent]) -> list[RunResult]:
    results = []
    for name, spec, text, _ in SCENARIOS:
        results.append(await agents[spec].run(text, metadata={"demo": name}))
    for agent in agents.values():
        await agent.aclose()
    return results


async def _run_extras(
    scenarios: list[Scenario], trace: TraceSink, examples: Path
) -> list[ScenarioReport]:
    return [await scenario(trace, examples) for scenario in scenarios]


def run_demo(
    database_url: str, *, console: Console, as_json: bool = False, command: str = "tether"
) -> None:
    # The scenarios' modules use this one's order API and helpers: imported once it is loaded.
    from tether.cli.demo_scenarios import SCENARIOS as EXTRAS

    examples = examples_dir()
    folder = examples / "support"
    writer = writer_for(database_url)
    with order_api() as base_url:
        previous = os.environ.get("ORDER_API_URL")
        os.environ["ORDER_API_URL"] = base_url
        try:
            agents = {
                spec: Agent.from_yaml(folder / spec, trace=writer)
                for spec in dict.fromkeys(s[1] for s in SCENARIOS)
            }
            results = asyncio.run(_run_all(agents))
        finally:
            if previous is None:
                os.environ.pop("ORDER_API_URL", None)
            else:
                os.environ["ORDER_API_URL"] = previous
    extras = asyncio.run(_run_extras(EXTRAS, writer, examples))
    writer.flush()
    as_expected = [
        r.outcome == expected for r, (_, _, _, expected) in zip(results, SCENARIOS, strict=True)
    ] + [e.as_expected for e in extras]

    if as_json:
        out = [
            {
                "scenario": name,
                "agent": agents[spec].name,
                "input": text,
                "expected": expected.value,
                **render.result_json(r),
            }
            for r, (name, spec, text, expected) in zip(results, SCENARIOS, strict=True)
        ]
        out.extend(e.to_json() for e in extras)
        console.print_json(json.dumps(out))
    else:
        _print_report(console, agents, results, extras, writer.store.display_url, command)
    if not all(as_expected):
        sys.exit(1)


def _tool_mark(content: str) -> str:
    if content.startswith(WITHHELD):
        return "⊘ withheld"
    if content.startswith(REFUSED):
        return "⊘ refused"
    return "✗" if content.startswith("Error") else "✓"


def print_run(console: Console, text: str, r: RunResult, *, user: bool = True) -> None:
    """One run of the demo: the user's message (unless ``user`` is false), the answer, the
    tools and the outcome."""
    if user:
        console.print(f"[cyan]user:[/]  {escape(text)}", highlight=False)
    console.print(f"[cyan]agent:[/] {escape(r.output.rstrip())}", highlight=False)
    if r.state.input != text:  # a guard masked the message: what the model and trace got
        console.print(f"[dim]stored: {escape(r.state.input)}[/]", highlight=False)
    ran = [f"{m.name}{_tool_mark(m.content)}" for m in r.state.messages if m.role == "tool"]
    stopped = [f"{c.name}⊘" for c in r.state.pending_tool_calls]  # asked for, not run
    calls = ", ".join(ran + stopped)
    console.print(
        f"[dim]tools: {escape(calls or 'none')}[/]  outcome {render.outcome_text(r.outcome)}",
        highlight=False,
    )
    if r.stop_reason:
        console.print(f"[dim]why: {escape(r.stop_reason)}[/]", highlight=False)


def _print_report(
    console: Console,
    agents: dict[str, Agent],
    results: list[RunResult],
    extras: list[ScenarioReport],
    store: str,
    command: str,
) -> None:
    shown = ", ".join(f"'{a.name}' version {a.version}" for a in agents.values())
    console.rule(f"[bold]Tether demo[/]: agents {escape(shown)}, offline")
    for i, (r, (name, spec, text, _)) in enumerate(zip(results, SCENARIOS, strict=True), 1):
        console.print(f"\n[bold]{i}. {name}[/] [dim]({escape(agents[spec].name)})[/]")
        print_run(console, text, r)
        answers = [
            m.content
            for m in r.state.messages
            if m.role == "assistant" and m.content and not m.tool_calls
        ]
        if agents[spec].output is not None and len(answers) > 1:
            console.print(
                f"[dim]re-asked {len(answers) - 1} time(s); the first answer broke the schema: "
                f"{escape(render.brief(answers[0], 120))}[/]",
                highlight=False,
            )
    for i, extra in enumerate(extras, len(results) + 1):
        agent = f" [dim]({escape(extra.agent)})[/]" if extra.agent else ""
        skipped = " [yellow](skipped)[/]" if extra.skipped else ""
        console.print(f"\n[bold]{i}. {escape(extra.name)}[/]{agent}{skipped}")
        extra.show(console)

    table = Table(title="\nSummary", show_edge=False, header_style="bold")
    widths = {"scenario": 20, "outcome": 15, "turns": 5, "tools": 5, "tokens": 6, "cost": 9}
    widths.update({"latency": 9, "run": 16})
    # A narrow terminal drops the run ids first: they are listed below, each with its scenario.
    room = console.width
    columns = render.fitting_columns(widths, ("run", "turns", "tools", "tokens"), room)
    spare = max(0, room - render.table_width(widths, columns))
    for col in columns:
        if col == "scenario":  # the room the dropped columns leave goes to the names
            table.add_column(
                col, no_wrap=True, min_width=20, max_width=20 + spare, overflow="ellipsis"
            )
        else:
            table.add_column(col, no_wrap=True, min_width=widths[col])
    rows: list[list[str]] = [
        [
            scenario,
            render.outcome_text(r.outcome)
            + ("" if r.outcome == expected else f" [red](expected {expected})[/]"),
            str(r.state.turns),
            str(r.state.tool_calls),
            str(r.usage.total_tokens),
            render.fmt_cost(r.cost_usd),
            render.fmt_ms(r.latency_s * 1000),
            r.run_id,
        ]
        for r, (scenario, _, _, expected) in zip(results, SCENARIOS, strict=True)
    ]
    rows += [_summary_row(extra) for extra in extras]
    for row in rows:
        cells = dict(zip(widths, row, strict=True))
        table.add_row(*(cells[c] for c in columns))
    console.print(table)
    from tether.cli.base import in_memory_store

    if in_memory_store(store):  # no command can read them after this one
        console.print(
            "\nThe trace store is in memory: these traces are gone when the demo ends (give "
            "--database-url or TETHER_DATABASE_URL a file to keep them).",
            highlight=False,
        )
        return
    console.print(f"\nTraces are stored in {escape(store)}. Inspect them with:")
    if ":***@" in command:  # a password is never printed: these commands need it given back
        console.print(
            "  [dim](the database password shows as ***: put yours in its place, or set "
            "TETHER_DATABASE_URL and leave --database-url out)[/]",
            highlight=False,
        )
    console.print(f"  {command} traces list", markup=False, highlight=False, soft_wrap=True)
    for r, (name, _, _, _) in zip(results, SCENARIOS, strict=True):
        console.print(
            f"  {escape(command)} traces show {r.run_id}   [dim]# {name}[/]",
            highlight=False,
            soft_wrap=True,
        )
    for extra in extras:
        if extra.main_run is not None:
            console.print(
                f"  {escape(command)} traces show {extra.main_run.run_id}   "
                f"[dim]# {escape(extra.name)}[/]",
                highlight=False,
                soft_wrap=True,
            )


def _summary_row(extra: ScenarioReport) -> list[str]:
    """A scenario's line of the summary: its runs added up, the main run's outcome and id."""
    main = extra.main_run
    if main is None:
        return [extra.name, "[yellow]skipped[/]", *["—"] * 5, ""]
    # A resumed run's result counts the paused run's conversation too: leave that one out.
    resumed = {r.state.metadata.get("resumed_from") for r in extra.runs}
    runs = [r for r in extra.runs if r.run_id not in resumed]
    mark = "" if extra.as_expected else " [red](not as expected)[/]"
    n = len(extra.runs)
    name = extra.name if n == 1 else f"{extra.name} ({n} runs)"
    costs = [r.cost_usd for r in runs]
    return [
        escape(name),
        render.outcome_text(main.outcome) + mark,
        str(sum(r.state.turns for r in runs)),
        str(sum(r.state.tool_calls for r in runs)),
        str(sum(r.usage.total_tokens for r in runs)),
        render.fmt_cost(None if None in costs else sum(c or 0.0 for c in costs)),
        render.fmt_ms(sum(r.latency_s for r in runs) * 1000),
        main.run_id,
    ]
