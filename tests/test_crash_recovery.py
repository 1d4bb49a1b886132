"""A run whose process is killed mid-run is closed from its journal with the totals its
recorded spans hold (tokens, cost, turns, tool calls, end time), and unknown where they cannot
say: never a false zero."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes.children import kill_when_it_says
from tether.cli import cli
from tether.core import new_trace_id
from tether.store import Store
from tether.trace import semconv, writer_for

CHILD = textwrap.dedent(
    """
    import asyncio
    import sys
    import time

    from tether import Agent, AgentSpec, Limits, ModelConfig, ScriptedModel, tool

    url, trace_id, model_name = sys.argv[1], sys.argv[2], sys.argv[3]


    @tool
    def fast_tool() -> str:
        return "fast result"


    @tool(timeout_s=3600)
    def hang_tool() -> str:
        print("hanging", flush=True)  # every span before this call is journaled
        time.sleep(3600)
        return "never"


    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "fast_tool"}]},
            {"tool_calls": [{"name": "hang_tool"}]},
            {"text": "done"},
        ],
        name=model_name,
    )
    spec = AgentSpec(
        name="crashy",
        model=ModelConfig(provider="scripted", name=model_name, script="unused.yaml"),
        limits=Limits(timeout_s=3600),
    )
    agent = Agent(spec, model=model, tools=[fast_tool, hang_tool], trace=url)
    asyncio.run(agent.run("go", trace_id=trace_id))
    """
)


def _kill_mid_run(tmp_path: Path, url: str, model_name: str) -> tuple[str, int]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    trace_id = new_trace_id()
    child = kill_when_it_says(script, [url, trace_id, model_name], "hanging", "its hanging tool")
    assert child.returncode == -signal.SIGKILL
    return trace_id, child.pid


@pytest.mark.parametrize("model_name", ["gpt-4.1-mini", "my-finetune"])
def test_a_killed_run_is_closed_with_the_totals_of_its_spans(
    tmp_path: Path, store_url: str, model_name: str
) -> None:
    Store(store_url).close()
    trace_id, pid = _kill_mid_run(tmp_path, store_url, model_name)

    writer = writer_for(store_url)  # replays the journal, closes the dead process's run
    assert writer.flush(timeout=60)
    store = writer.store
    run = store.get_run(trace_id)
    spans = store.get_spans(run.run_id)
    models = [s for s in spans if s.kind == "model"]
    assert len(models) == 2 and [s.kind for s in spans].count("tool") == 1
    assert (run.status, run.outcome) == ("failed", "error")
    assert run.error is not None and f"pid {pid}" in run.error
    assert run.turns == 2 and run.tool_calls == 1
    tokens_in = sum(s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for s in models)
    tokens_out = sum(s.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] for s in models)
    assert tokens_in > 0 and tokens_out > 0
    assert (run.input_tokens, run.output_tokens) == (tokens_in, tokens_out)
    assert run.ended_ns == max(s.end_ns for s in spans)
    assert run.latency_ms is not None and run.latency_ms > 0
    if model_name == "gpt-4.1-mini":
        expected = sum(s.attributes[semconv.TETHER_COST_USD] for s in models)
        assert expected > 0 and run.cost_usd == pytest.approx(expected)
        assert semconv.TETHER_COST_UNPRICED not in run.attributes
    else:  # the cost of these calls is unknown: said so, not counted as free
        assert run.attributes[semconv.TETHER_COST_UNPRICED] == 2

    listed = CliRunner().invoke(cli, ["--database-url", store_url, "traces", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (shown,) = [r for r in json.loads(listed.stdout)["runs"] if r["trace_id"] == trace_id]
    assert shown["status"] == "failed"
    if model_name == "gpt-4.1-mini":
        assert shown["cost_usd"] == pytest.approx(run.cost_usd)
    else:
        assert shown["cost_usd"] is None


def test_a_run_killed_before_any_model_call_has_an_unknown_cost(
    tmp_path: Path, sqlite_url: str
) -> None:
    """No span recorded: the tokens are zero as far as anyone knows, the cost is unknown (a
    model call may have been under way), and the run ends when its process last wrote."""
    from tether.core import new_span_id, now_ns
    from tether.store import RunRecord
    from tether.trace.journal import RUN_START, Journal, encode, journal_dir

    Store(sqlite_url).close()
    dead = Journal(journal_dir(Path(os.environ["TETHER_HOME"]), f"sqlite:///{tmp_path}/tether.db"))
    trace_id = new_trace_id()
    run = RunRecord(
        trace_id=trace_id,
        run_id=new_span_id(),
        agent_name="a",
        agent_version="v1",
        started_ns=now_ns(),
    )
    run.attributes[semconv.TETHER_WRITER_ID] = dead.writer_id
    dead.append(encode(RUN_START, run)[0])
    dead.close()
    writer = writer_for(sqlite_url)
    assert writer.flush(timeout=60)
    closed = writer.store.get_run(trace_id)
    assert closed.status == "failed" and closed.turns == 0
    assert closed.attributes[semconv.TETHER_COST_UNPRICED] is True
    assert closed.ended_ns is not None and closed.ended_ns >= closed.started_ns
