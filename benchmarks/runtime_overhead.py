"""Per-run wall time of small agent runs: Tether vs the OpenAI Agents SDK vs a plain loop.

Two scenarios, each measured for every contender:

  2-turn   turn 1: the model asks for ``get_weather(city="Paris")``; the tool returns a
           string; turn 2: the model answers with text (2 model calls + 1 tool call).
  1-turn   the model answers at once with text (1 model call, no tool).

Models are zero-latency fakes, so what is measured is each framework's own work per run:

  tether          ``tether.Agent`` (``AgentSpec`` built in Python, the shipped ``ScriptedModel``,
                  an async ``@tool``), tracing persisted to a real SQLite file through the
                  batching writer and its crash journal. After every timed round the writer is
                  flushed and the flush time is charged to Tether: a round's time is its runs
                  plus that flush.
  tether-notrace  the same agent with ``trace=False``.
  agents-sdk      ``agents.Runner.run`` with a fake ``agents.models.interface.Model``,
                  tracing disabled (``set_tracing_disabled(True)`` and
                  ``RunConfig(tracing_disabled=True)``).
  plain           a hand-written asyncio loop over a list of message dicts (the floor).

All contenders run in one process and one event loop; after a warm-up, rounds are interleaved
(the order rotating each round) so that machine noise hits them alike.

Targets (issue 12), checked for each scenario in every round, not only on average:

  tether (flush counted) / agents-sdk mean   <= 0.10
  tether-notrace / agents-sdk mean           <= 0.05

The script prints each round's ratios and PASS/FAIL per target. It asserts nothing and its exit
status says only whether the store holds what the runs wrote (benchmarks never fail a build on
timings). It uses Tether's public API only (``tether.Agent`` and friends, ``tether.trace.
writer_for`` to flush), and reads the store back with ``sqlite3``.

Usage::

    python benchmarks/runtime_overhead.py [--runs 200] [--rounds 5] [--warmup 50]
        [--scenario 2-turn 1-turn] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tether
from tether import Agent, AgentSpec, ModelConfig, ScriptedModel
from tether.trace import close_writers, writer_for

RunFn = Callable[[], Awaitable[str]]
TOOL_RESULT = "sunny, 21 C"
QUESTION = "What's the weather in Paris?"
INSTRUCTIONS = "Answer weather questions with the get_weather tool."
TARGET_TRACED = 0.10
"""tether (tracing persisted, flush counted) / agents-sdk (tracing off), mean of each round."""
TARGET_UNTRACED = 0.05
"""tether-notrace / agents-sdk (tracing off), mean of each round."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    uses_tool: bool
    answer: str
    spans_per_run: int
    """invoke_agent + one chat span per model call + one execute_tool span per tool call."""


SCENARIOS = {
    "2-turn": Scenario(
        "2-turn",
        "2 model turns + 1 tool call",
        uses_tool=True,
        answer=f"The weather in Paris: {TOOL_RESULT}.",
        spans_per_run=4,
    ),
    "1-turn": Scenario(
        "1-turn",
        "1 model call, no tool",
        uses_tool=False,
        answer="Sunny in Paris, 21 C.",
        spans_per_run=2,
    ),
}


# -- the tool, shared by all contenders -----------------------------------------------------


async def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: City name.
    """
    return TOOL_RESULT


# -- (a) Tether ---------------------------------------------------------------------------


def build_tether(scenario: Scenario, trace: str | bool) -> Agent:
    spec = AgentSpec(
        name="bench_weather",
        instructions=INSTRUCTIONS,
        # The model is passed in below; the script path is never read.
        model=ModelConfig(provider="scripted", name="scripted-bench", script="unused.yaml"),
        tools=[{"name": "get_weather"}] if scenario.uses_tool else [],
    )
    if scenario.uses_tool:
        script: list[dict[str, Any]] = [
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"text": "The weather in Paris: {result:get_weather}."},
        ]
        tools = [tether.tool(get_weather)]
    else:
        script, tools = [{"text": scenario.answer}], []
    model = ScriptedModel(script, name="scripted-bench")
    return Agent(spec, tools=tools, model=model, trace=trace)


def tether_runner(agent: Agent) -> RunFn:
    async def run() -> str:
        result = await agent.run(QUESTION)
        return result.output or ""

    return run


# -- (b) OpenAI Agents SDK ----------------------------------------------------------------


def build_sdk(scenario: Scenario) -> RunFn | None:
    """A runner for the Agents SDK, or None when it is not installed."""
    try:
        import agents
        from agents.items import ModelResponse
        from agents.models.interface import Model
        from agents.usage import Usage
        from openai.types.responses import (
            ResponseFunctionToolCall,
            ResponseOutputMessage,
            ResponseOutputText,
        )
    except ImportError:
        return None

    agents.set_tracing_disabled(True)

    class FakeModel(Model):
        """Zero-latency model: (2-turn) a function call first, then a text answer once the
        tool output is in the input (stateless, like tether's ScriptedModel); (1-turn) a text
        answer at once. Responses are built fresh on every call, as a real provider adapter
        would."""

        async def get_response(
            self,
            system_instructions: str | None,
            input: str | list[Any],
            model_settings: Any,
            tools: list[Any],
            output_schema: Any,
            handoffs: list[Any],
            tracing: Any,
            *,
            previous_response_id: str | None = None,
            conversation_id: str | None = None,
            prompt: Any = None,
        ) -> ModelResponse:
            items = [] if isinstance(input, str) else input
            outputs = [
                it
                for it in items
                if isinstance(it, dict) and it.get("type") == "function_call_output"
            ]
            usage = Usage(requests=1, input_tokens=20, output_tokens=8, total_tokens=28)
            if scenario.uses_tool and not outputs:
                call = ResponseFunctionToolCall(
                    id="fc_1",
                    call_id="call_0_0",
                    type="function_call",
                    name="get_weather",
                    arguments=json.dumps({"city": "Paris"}),
                )
                return ModelResponse(output=[call], usage=usage, response_id=None)
            text = (
                f"The weather in Paris: {outputs[-1]['output']}."
                if scenario.uses_tool
                else scenario.answer
            )
            message = ResponseOutputMessage(
                id="msg_1",
                type="message",
                role="assistant",
                content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
                status="completed",
            )
            return ModelResponse(output=[message], usage=usage, response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("the benchmark does not stream")

    agent = agents.Agent(
        name="bench_weather",
        instructions=INSTRUCTIONS,
        model=FakeModel(),
        tools=[agents.function_tool(get_weather)] if scenario.uses_tool else [],
    )
    config = agents.RunConfig(tracing_disabled=True)

    async def run() -> str:
        result = await agents.Runner.run(agent, QUESTION, run_config=config)
        return str(result.final_output)

    return run


# -- (c) plain asyncio loop ---------------------------------------------------------------


def plain_runner(scenario: Scenario) -> RunFn:
    async def model(messages: list[dict[str, Any]]) -> dict[str, Any]:
        if scenario.uses_tool and messages[-1]["role"] != "tool":
            return {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_0_0", "name": "get_weather", "arguments": '{"city": "Paris"}'}
                ],
            }
        if scenario.uses_tool:
            return {
                "role": "assistant",
                "content": f"The weather in Paris: {messages[-1]['content']}.",
            }
        return {"role": "assistant", "content": scenario.answer}

    async def run() -> str:
        tools = {"get_weather": get_weather}
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": QUESTION},
        ]
        while True:
            reply = await model(messages)
            messages.append(reply)
            calls = reply.get("tool_calls")
            if not calls:
                return str(reply["content"])
            for call in calls:
                result = await tools[call["name"]](**json.loads(call["arguments"]))
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})

    return run


# -- measurement ----------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def timed_round(fn: RunFn, runs: int, samples: list[float]) -> float:
    """Run ``fn`` ``runs`` times, appending each run's wall time (µs); returns the total (µs)."""
    total = 0
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        await fn()
        dt = time.perf_counter_ns() - t0
        total += dt
        samples.append(dt / 1000)
    return total / 1000


def summarize(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "runs": len(s),
        "p50_us": percentile(s, 50),
        "p99_us": percentile(s, 99),
        "mean_us": sum(s) / len(s),
        "min_us": s[0],
    }


def count_rows(path: Path, agent_name: str) -> tuple[int, int, int]:
    """Runs, completed runs and spans in the SQLite file (read with the stdlib, so that the
    check does not depend on Tether's store API)."""
    conn = sqlite3.connect(path)
    try:
        runs, done = conn.execute(
            "SELECT count(*), sum(status = 'completed') FROM tether_runs WHERE agent_name = ?",
            (agent_name,),
        ).fetchone()
        (spans,) = conn.execute(
            "SELECT count(*) FROM tether_spans WHERE run_id IN "
            "(SELECT run_id FROM tether_runs WHERE agent_name = ?)",
            (agent_name,),
        ).fetchone()
    finally:
        conn.close()
    return int(runs), int(done or 0), int(spans)


async def bench_scenario(
    scenario: Scenario, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    db = workdir / f"bench-{scenario.name}.db"
    url = f"sqlite:///{db}"
    traced = build_tether(scenario, url)
    writer = writer_for(url)  # the writer the agent writes through
    contenders: dict[str, RunFn] = {
        "tether": tether_runner(traced),
        "tether-notrace": tether_runner(build_tether(scenario, False)),
    }
    sdk = build_sdk(scenario)
    if sdk is not None:
        contenders["agents-sdk"] = sdk
    contenders["plain"] = plain_runner(scenario)

    # Warm-up, and check that every contender really runs the scenario.
    for name, fn in contenders.items():
        answer = await fn()
        if answer != scenario.answer:
            raise SystemExit(f"{name}: unexpected answer {answer!r} (want {scenario.answer!r})")
        for _ in range(args.warmup - 1):
            await fn()
    if not writer.flush(timeout=None):
        raise SystemExit("the trace writer did not flush")

    samples: dict[str, list[float]] = {name: [] for name in contenders}
    # Per-round totals (µs): the wall time of the round's runs, and (tether) the flush after it.
    rounds: list[dict[str, float]] = []
    gc.collect()
    for r in range(args.rounds):
        totals: dict[str, float] = {}
        # Rotate the order each round so no contender always runs right after another.
        names = list(contenders)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            totals[name] = await timed_round(contenders[name], args.runs, samples[name])
            if name == "tether":
                # Charge the writer's persistence to Tether, and keep its thread from writing
                # while the other contenders are timed.
                t0 = time.perf_counter_ns()
                ok = writer.flush(timeout=None)
                totals["flush"] = (time.perf_counter_ns() - t0) / 1000
                assert ok
        rounds.append(totals)

    results: dict[str, Any] = {name: summarize(samples[name]) for name in contenders}
    n = args.runs * args.rounds
    flush_us = sum(t["flush"] for t in rounds)
    results["tether"]["amortized_mean_us"] = (sum(t["tether"] for t in rounds) + flush_us) / n
    results["tether"]["flush_total_us"] = flush_us
    results["tether"]["flush_per_run_us"] = flush_us / n

    expected_runs = args.warmup + n
    dropped = writer.dropped
    close_writers()
    runs_in_db, completed, spans_in_db = count_rows(db, "bench_weather")
    sanity = {
        "expected_runs": expected_runs,
        "runs": runs_in_db,
        "completed_runs": completed,
        "expected_spans": expected_runs * scenario.spans_per_run,
        "spans": spans_in_db,
        "writer_dropped": dropped,
        "ok": runs_in_db == completed == expected_runs
        and spans_in_db == expected_runs * scenario.spans_per_run
        and dropped == 0,
    }

    per_round: list[dict[str, float]] = []
    if sdk is not None:
        for t in rounds:
            per_round.append(
                {
                    "tether_us": (t["tether"] + t["flush"]) / args.runs,
                    "flush_us": t["flush"] / args.runs,
                    "notrace_us": t["tether-notrace"] / args.runs,
                    "sdk_us": t["agents-sdk"] / args.runs,
                    "traced_ratio": (t["tether"] + t["flush"]) / t["agents-sdk"],
                    "untraced_ratio": t["tether-notrace"] / t["agents-sdk"],
                }
            )
    targets = (
        {
            "traced": {
                "limit": TARGET_TRACED,
                "worst": max(p["traced_ratio"] for p in per_round),
                "pass": all(p["traced_ratio"] <= TARGET_TRACED for p in per_round),
            },
            "untraced": {
                "limit": TARGET_UNTRACED,
                "worst": max(p["untraced_ratio"] for p in per_round),
                "pass": all(p["untraced_ratio"] <= TARGET_UNTRACED for p in per_round),
            },
        }
        if per_round
        else {}
    )
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "results": results,
        "rounds": per_round,
        "targets": targets,
        "sanity": sanity,
    }


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    scenarios = [await bench_scenario(SCENARIOS[name], args, workdir) for name in args.scenario]
    return {
        "runs_per_round": args.runs,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions(),
        "sdk_available": all(s["targets"] for s in scenarios),
        "scenarios": scenarios,
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tether", "openai-agents", "openai", "pydantic", "sqlalchemy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def report(data: dict[str, Any]) -> None:
    print(
        f"runtime overhead: {data['rounds']} rounds x {data['runs_per_round']} runs, "
        f"interleaved, after {data['warmup']} warm-up runs each; python {data['python']}"
    )
    print("  versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))
    if not data["sdk_available"]:
        print(
            "  NOTE: the OpenAI Agents SDK ('agents') is not importable in this environment, so "
            "it is not measured and no target is checked. Run 'make bench' to measure it in "
            ".bench-venv."
        )
    for sc in data["scenarios"]:
        print(f"\n== {sc['scenario']}: {sc['description']}, zero-latency models")
        header = f"  {'contender':<16}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}"
        print(header)
        for name, r in sc["results"].items():
            print(f"  {name:<16}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['mean_us']:>10.0f}")
        tet = sc["results"]["tether"]
        print(
            f"  tether incl. writer flushes: {tet['amortized_mean_us']:.0f} µs/run "
            f"(flush {tet['flush_per_run_us']:.0f} µs/run)"
        )
        if sc["rounds"]:
            print(
                f"\n  {'round':<7}{'tether+flush':>13}{'(flush)':>9}{'notrace':>9}{'sdk':>8}"
                f"{'traced/sdk':>12}{'notrace/sdk':>13}"
            )
            for i, p in enumerate(sc["rounds"], start=1):
                print(
                    f"  {i:<7}{p['tether_us']:>13.0f}{p['flush_us']:>9.0f}{p['notrace_us']:>9.0f}"
                    f"{p['sdk_us']:>8.0f}{p['traced_ratio']:>12.3f}{p['untraced_ratio']:>13.3f}"
                )
            for label, key in (("traced (flush counted)", "traced"), ("untraced", "untraced")):
                t = sc["targets"][key]
                verdict = "PASS" if t["pass"] else "FAIL"
                print(
                    f"  target {label} / sdk <= {t['limit']:.2f} in every round: {verdict} "
                    f"(worst round {t['worst']:.3f})"
                )
        s = sc["sanity"]
        print(
            f"  store check: {s['runs']} runs ({s['completed_runs']} completed, expected "
            f"{s['expected_runs']}), {s['spans']} spans (expected {s['expected_spans']}), "
            f"dropped {s['writer_dropped']}: {'OK' if s['ok'] else 'MISMATCH'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="runs per round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up runs each (default 50)")
    parser.add_argument(
        "--scenario",
        nargs="+",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
        help="scenarios to measure (default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.rounds < 1 or args.warmup < 1:
        parser.error("--runs, --rounds and --warmup must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        data = asyncio.run(bench(args, Path(tmp)))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        report(data)
    return 0 if all(sc["sanity"]["ok"] for sc in data["scenarios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
