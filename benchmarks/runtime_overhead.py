"""Per-run wall time of one small agent run: Tether vs the OpenAI Agents SDK vs a plain loop.

The scenario is the same for every contender: two model turns and one tool call.

  turn 1: the model asks for ``get_weather(city="Paris")``;
  the tool returns a string;
  turn 2: the model answers with text.

Models are zero-latency fakes, so what is measured is each framework's own work per run:

  tether          ``tether.Agent`` (AgentSpec built in Python, the shipped ``ScriptedModel``,
                  an async ``@tool``), tracing persisted to a real SQLite file through the
                  batching writer. After every timed round the writer is flushed and the flush
                  time is charged to Tether ("amortized" = (runs + flushes) / runs).
  tether-notrace  the same agent with ``trace=False`` (shows what tracing itself costs).
  agents-sdk      ``agents.Runner.run`` with a fake ``agents.models.interface.Model``,
                  tracing disabled (``set_tracing_disabled(True)`` and
                  ``RunConfig(tracing_disabled=True)``).
  plain           a hand-written asyncio loop over a list of message dicts.

All contenders run in one process and one event loop; after a warm-up, rounds are interleaved
(tether, sdk, plain, ...) so that machine noise hits them alike. Overhead = time - plain loop.

Usage::

    python benchmarks/runtime_overhead.py [--runs 200] [--rounds 5] [--warmup 50] [--json]

No timing is asserted anywhere: this prints numbers, it does not pass or fail on them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

import tether
from tether import Agent, AgentSpec, ScriptedModel
from tether.spec.model import ModelConfig, PythonToolSpec
from tether.store import Store, tables
from tether.trace import BatchingWriter, close_writers

RunFn = Callable[[], Awaitable[str]]
EXPECTED_ANSWER = "The weather in Paris: sunny, 21 C."
TOOL_RESULT = "sunny, 21 C"
SPANS_PER_RUN = 4  # invoke_agent + chat (turn 1) + execute_tool + chat (turn 2)
TARGET_OVERHEAD_RATIO = 0.2  # issue target: Tether overhead <= 1/5 of the SDK's


# -- the tool, shared by all contenders -----------------------------------------------------


async def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: City name.
    """
    return TOOL_RESULT


# -- (a) Tether ---------------------------------------------------------------------------


def build_tether(trace: str | bool) -> Agent:
    spec = AgentSpec(
        name="bench_weather",
        instructions="Answer weather questions with the get_weather tool.",
        # The model is passed in below; the script path is never read.
        model=ModelConfig(provider="scripted", name="scripted-bench", script="unused.yaml"),
        tools=[PythonToolSpec(name="get_weather")],
    )
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"text": "The weather in Paris: {result:get_weather}."},
        ],
        name="scripted-bench",
    )
    return Agent(spec, tools=[tether.tool(get_weather)], model=model, trace=trace)


def tether_runner(agent: Agent) -> RunFn:
    async def run() -> str:
        result = await agent.run("What's the weather in Paris?")
        return result.output or ""

    return run


# -- (b) OpenAI Agents SDK ----------------------------------------------------------------


def build_sdk() -> RunFn | None:
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
        """Zero-latency model: a function call first, then a text answer once the tool output
        is in the input (stateless, like tether's ScriptedModel). Responses are built fresh on
        every call, as a real provider adapter would."""

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
            if not outputs:
                call = ResponseFunctionToolCall(
                    id="fc_1",
                    call_id="call_0_0",
                    type="function_call",
                    name="get_weather",
                    arguments=json.dumps({"city": "Paris"}),
                )
                return ModelResponse(output=[call], usage=usage, response_id=None)
            text = f"The weather in Paris: {outputs[-1]['output']}."
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
        instructions="Answer weather questions with the get_weather tool.",
        model=FakeModel(),
        tools=[agents.function_tool(get_weather)],
    )
    config = agents.RunConfig(tracing_disabled=True)

    async def run() -> str:
        result = await agents.Runner.run(agent, "What's the weather in Paris?", run_config=config)
        return str(result.final_output)

    return run


# -- (c) plain asyncio loop ---------------------------------------------------------------


async def plain_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    if messages[-1]["role"] != "tool":
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_0_0", "name": "get_weather", "arguments": '{"city": "Paris"}'}
            ],
        }
    return {"role": "assistant", "content": f"The weather in Paris: {messages[-1]['content']}."}


async def plain_run() -> str:
    tools = {"get_weather": get_weather}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Answer weather questions with the get_weather tool."},
        {"role": "user", "content": "What's the weather in Paris?"},
    ]
    while True:
        reply = await plain_model(messages)
        messages.append(reply)
        calls = reply.get("tool_calls")
        if not calls:
            return str(reply["content"])
        for call in calls:
            result = await tools[call["name"]](**json.loads(call["arguments"]))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})


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


def count_rows(url: str) -> tuple[int, int, int]:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            runs = conn.execute(select(func.count()).select_from(tables.runs)).scalar_one()
            done = conn.execute(
                select(func.count())
                .select_from(tables.runs)
                .where(tables.runs.c.status == "completed")
            ).scalar_one()
            spans = conn.execute(select(func.count()).select_from(tables.spans)).scalar_one()
    finally:
        store.close()
    return int(runs), int(done), int(spans)


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    url = f"sqlite:///{workdir / 'bench.db'}"
    traced = build_tether(url)
    writer = traced.sink
    assert isinstance(writer, BatchingWriter), type(writer)
    contenders: dict[str, RunFn] = {
        "tether": tether_runner(traced),
        "tether-notrace": tether_runner(build_tether(False)),
    }
    sdk = build_sdk()
    if sdk is not None:
        contenders["agents-sdk"] = sdk
    contenders["plain"] = plain_run

    # Warm-up, and check that every contender really runs the scenario.
    for name, fn in contenders.items():
        answer = await fn()
        if answer != EXPECTED_ANSWER:
            raise SystemExit(f"{name}: unexpected answer {answer!r} (want {EXPECTED_ANSWER!r})")
        for _ in range(args.warmup - 1):
            await fn()
    writer.flush(timeout=None)
    warm_traced_runs = args.warmup

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

    results: dict[str, Any] = {}
    for name in contenders:
        results[name] = summarize(samples[name])
    n = args.runs * args.rounds
    flush_us = sum(t["flush"] for t in rounds)
    results["tether"]["amortized_mean_us"] = (sum(t["tether"] for t in rounds) + flush_us) / n
    results["tether"]["flush_total_us"] = flush_us

    expected_runs = warm_traced_runs + n
    runs_in_db, completed, spans_in_db = count_rows(url)
    sanity = {
        "expected_runs": expected_runs,
        "runs": runs_in_db,
        "completed_runs": completed,
        "expected_spans": expected_runs * SPANS_PER_RUN,
        "spans": spans_in_db,
        "writer_dropped": writer.dropped,
        "ok": runs_in_db == completed == expected_runs
        and spans_in_db == expected_runs * SPANS_PER_RUN
        and writer.dropped == 0,
    }
    close_writers()

    plain = results["plain"]
    tet = results["tether"]
    ratios: dict[str, Any] = {
        "tether_overhead_p50_us": tet["p50_us"] - plain["p50_us"],
        "tether_overhead_amortized_us": tet["amortized_mean_us"] - plain["mean_us"],
        "tether_notrace_overhead_p50_us": results["tether-notrace"]["p50_us"] - plain["p50_us"],
    }
    if "agents-sdk" in results:
        sdk_r = results["agents-sdk"]
        sdk_over_p50 = sdk_r["p50_us"] - plain["p50_us"]
        sdk_over_mean = sdk_r["mean_us"] - plain["mean_us"]
        ratios.update(
            {
                "sdk_overhead_p50_us": sdk_over_p50,
                "sdk_overhead_mean_us": sdk_over_mean,
                "tether_over_sdk_wall_p50": tet["p50_us"] / sdk_r["p50_us"],
                "tether_over_sdk_wall_amortized": tet["amortized_mean_us"] / sdk_r["mean_us"],
                "overhead_ratio_p50": ratios["tether_overhead_p50_us"] / sdk_over_p50,
                "overhead_ratio_amortized": ratios["tether_overhead_amortized_us"] / sdk_over_mean,
            }
        )
        # The same ratio per round: a round disturbed by another process shows up as an outlier
        # here instead of shifting the whole-run mean.
        per_round = sorted(
            ((t["tether"] + t["flush"] - t["plain"]) / (t["agents-sdk"] - t["plain"]))
            for t in rounds
        )
        ratios["overhead_ratio_amortized_by_round"] = {
            "median": statistics.median(per_round),
            "min": per_round[0],
            "max": per_round[-1],
        }
        ratios["target_met_p50"] = ratios["overhead_ratio_p50"] <= TARGET_OVERHEAD_RATIO
        ratios["target_met_amortized"] = ratios["overhead_ratio_amortized"] <= TARGET_OVERHEAD_RATIO
    return {
        "scenario": "2 model turns + 1 tool call, zero-latency models",
        "runs_per_round": args.runs,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions(),
        "sdk_available": sdk is not None,
        "results": results,
        "ratios": ratios,
        "sanity": sanity,
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
    print(f"runtime overhead: {data['scenario']}")
    print(
        f"  {data['rounds']} rounds x {data['runs_per_round']} runs, interleaved, "
        f"after {data['warmup']} warm-up runs each; python {data['python']}"
    )
    print("  versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()))
    if not data["sdk_available"]:
        print(
            "  NOTE: the OpenAI Agents SDK ('agents') is not importable in this environment, so "
            "it is not measured. Run 'make bench' to measure it in .bench-venv."
        )
    print()
    plain = data["results"]["plain"]
    header = f"  {'contender':<16}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}{'overhead p50':>14}"
    print(header)
    for name, r in data["results"].items():
        over = "" if name == "plain" else f"{r['p50_us'] - plain['p50_us']:.0f}"
        print(
            f"  {name:<16}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['mean_us']:>10.0f}{over:>14}"
        )
    tet = data["results"]["tether"]
    print(
        f"\n  tether amortized incl. writer flushes: {tet['amortized_mean_us']:.0f} µs/run "
        f"(flushes {tet['flush_total_us'] / 1000:.1f} ms in total)"
    )
    rt = data["ratios"]
    if "overhead_ratio_p50" in rt:
        print(
            f"  Tether/SDK wall time: p50 {rt['tether_over_sdk_wall_p50']:.2f}, "
            f"amortized mean {rt['tether_over_sdk_wall_amortized']:.2f}"
        )
        print(
            f"  Tether overhead / SDK overhead: p50 {rt['tether_overhead_p50_us']:.0f} / "
            f"{rt['sdk_overhead_p50_us']:.0f} = {rt['overhead_ratio_p50']:.3f}; amortized "
            f"{rt['tether_overhead_amortized_us']:.0f} / {rt['sdk_overhead_mean_us']:.0f} = "
            f"{rt['overhead_ratio_amortized']:.3f}"
        )
        by_round = rt["overhead_ratio_amortized_by_round"]
        print(
            f"  amortized overhead ratio per round: median {by_round['median']:.3f} "
            f"(min {by_round['min']:.3f}, max {by_round['max']:.3f})"
        )
        verdicts = {k: "MET" if rt[f"target_met_{k}"] else "NOT MET" for k in ("p50", "amortized")}
        print(
            f"  target (overhead ratio <= {TARGET_OVERHEAD_RATIO}): per-run p50 "
            f"{verdicts['p50']}; amortized incl. persistence {verdicts['amortized']}"
        )
    s = data["sanity"]
    print(
        f"\n  store check: {s['runs']} runs ({s['completed_runs']} completed, expected "
        f"{s['expected_runs']}), {s['spans']} spans (expected {s['expected_spans']}), "
        f"dropped {s['writer_dropped']}: {'OK' if s['ok'] else 'MISMATCH'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="runs per round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up runs each (default 50)")
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
    return 0 if data["sanity"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
