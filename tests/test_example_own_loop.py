"""examples/own_loop: a hand-written loop over an OpenAI-compatible model, wrapped by a run
scope so that its calls pass Tether's controls and land in Tether's trace."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from fakes.openai_server import FakeOpenAIServer, Reply, tool_call_json
from fakes.traces import trace_of
from tether import OpenAIChatModel
from tether.trace import semconv

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_loop" / "agent_loop.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("own_loop_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_wrapped_loop_against_an_openai_compatible_server(sqlite_url: str) -> None:
    example = load_example()
    with FakeOpenAIServer() as server:
        server.enqueue(
            Reply.completion(
                content=None,
                tool_calls=[tool_call_json("c1", "order_status", '{"order_id": "A-1002"}')],
            ),
            Reply.completion(
                content=None, tool_calls=[tool_call_json("c2", "refund", '{"order_id": "A-1002"}')]
            ),
            Reply.completion(content="A-1002 is being packed.", model="gpt-4.1-mini"),
        )
        model = OpenAIChatModel("gpt-4.1-mini", base_url=server.base_url, api_key="sk-test")
        harness = example.make_harness(model, trace=sqlite_url)
        try:
            result = await example.answer("Where is A-1002?", harness, user="customer-7")
        finally:
            await harness.aclose()
        sent = [r.json for r in server.requests]
        port = server.port

    assert result.ok and result.output == "A-1002 is being packed."
    # The loop's own conversation went to the server, tools included, and the refused refund
    # came back to the model as a tool message saying why.
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["order_status", "refund"]
    last = sent[2]["messages"]
    assert last[2]["tool_calls"][0]["function"]["name"] == "order_status"
    assert last[3]["role"] == "tool" and last[3]["content"] == "being packed"
    assert "refused by policy" in last[5]["content"]

    record, spans, events = trace_of(sqlite_url, result.run_id)
    assert record.status == "completed" and record.agent_name == "order-helper"
    kinds = [s.kind for s in sorted(spans, key=lambda s: s.start_ns)]
    assert kinds == ["agent", "model", "tool", "model", "tool", "model"]
    root = next(s for s in spans if s.parent_id is None)
    assert root.attributes[semconv.TETHER_ENTRY_POINT] == "sdk"
    assert root.attributes[semconv.ENDUSER_ID] == "customer-7"
    chats = [s for s in spans if s.kind == "model"]
    assert all(s.attributes[semconv.SERVER_PORT] == port for s in chats)
    assert all(s.attributes[semconv.TETHER_COST_USD] > 0 for s in chats)  # priced
    [refusal] = [e for e in events if e.name == semconv.EVENT_CONTROL_DECISION]
    assert refusal.attributes[semconv.TETHER_CONTROL_NAME] == "no_refunds"
    assert "customer-7" in refusal.attributes[semconv.TETHER_DECISION_REASON]


def test_the_example_runs_offline_as_a_script(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    env["TETHER_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "Where is order A-1001?"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "ParcelCo" in done.stdout and "outcome: final_answer" in done.stdout
    run_id = done.stdout.split("run: ")[1].split()[0]
    shown = subprocess.run(
        [sys.executable, "-m", "tether", "traces", "show", run_id, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    trace = json.loads(shown.stdout)
    assert "no_refunds" in json.dumps(trace)
