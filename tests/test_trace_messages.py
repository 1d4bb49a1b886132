"""``gen_ai.input/output.messages``: stored structured, read from either stored shape."""

from __future__ import annotations

import json
from typing import Any

from tether import Agent, ScriptedModel
from tether.cli.render import trace_view
from tether.core import new_span_id, new_trace_id, now_ns
from tether.providers import Message, ToolCall
from tether.runtime.telemetry import (
    MAX_INPUT_MESSAGES_CHARS,
    MessageCache,
    input_messages,
)
from tether.spec import AgentSpec, ModelConfig
from tether.store import RunRecord, SpanRecord, Store, TraceBatch
from tether.trace import semconv, writer_for
from tether.trace.messages import messages_json, stored_messages

MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "parts": [{"type": "text", "content": 'say "hi" \\ 世界'}]},
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "c1", "name": "t", "arguments": {"q": "x"}}],
        "finish_reason": "tool_calls",
    },
]


def test_stored_messages_reads_both_shapes() -> None:
    assert stored_messages(MESSAGES) == MESSAGES
    assert stored_messages(json.dumps(MESSAGES)) == MESSAGES  # a store written before


def test_stored_messages_gives_none_for_what_is_not_messages() -> None:
    for value in (None, "not json", "{}", '"text"', "[1, 2]", 42, {"role": "user"}, ["a"]):
        assert stored_messages(value) is None


def test_messages_json_stringifies_once() -> None:
    assert json.loads(messages_json(MESSAGES)) == MESSAGES
    old = json.dumps(MESSAGES)
    assert messages_json(old) is old  # text already: not escaped a second time


def _store_span(url: str, messages: Any) -> str:
    """A run with one chat span holding ``messages`` as given (list, or text as older
    Tether wrote it), written straight to the store; returns the run id."""
    store = Store(url)
    trace_id, run_id = new_trace_id(), new_span_id()
    run = RunRecord(
        trace_id=trace_id, run_id=run_id, agent_name="a", agent_version="v", started_ns=now_ns()
    )
    span = SpanRecord(
        trace_id=trace_id,
        run_id=run_id,
        span_id=new_span_id(),
        parent_id=run_id,
        name="chat m",
        kind="model",
        start_ns=now_ns(),
        end_ns=now_ns(),
        attributes={semconv.GEN_AI_INPUT_MESSAGES: messages},
    )
    store.write(TraceBatch(runs_started=[run], spans=[span]))
    store.close()
    return run_id


def test_a_store_holding_either_shape_reads_back_the_same_messages(store_url: str) -> None:
    old = _store_span(store_url, json.dumps(MESSAGES))
    new = _store_span(store_url, MESSAGES)
    store = Store(store_url)
    try:
        read = {}
        for run_id in (old, new):
            [span] = store.get_spans(run_id)
            read[run_id] = stored_messages(span.attributes[semconv.GEN_AI_INPUT_MESSAGES])
            # The CLI's JSON view passes the stored value through, whatever its shape.
            view = trace_view(store.get_trace(run_id))
            json.dumps(view)
        assert read[old] == read[new] == MESSAGES
    finally:
        store.close()


def test_messages_are_stored_once_not_as_escaped_text(sqlite_url: str) -> None:
    spec = AgentSpec(
        name="m", model=ModelConfig(provider="scripted", name="s", script="unused.yaml")
    )
    agent = Agent(spec, model=ScriptedModel([{"text": 'a "quoted" answer'}]), trace=sqlite_url)
    result = agent.run_sync('a "quoted" question')
    assert result.ok
    assert writer_for(sqlite_url).flush()
    import sqlite3

    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        [(text,)] = conn.execute(
            "SELECT attributes FROM tether_spans WHERE run_id = ? AND kind = 'model'",
            (result.run_id,),
        ).fetchall()
    finally:
        conn.close()
    attributes = json.loads(text)
    assert isinstance(attributes[semconv.GEN_AI_INPUT_MESSAGES], list)
    assert attributes[semconv.GEN_AI_OUTPUT_MESSAGES][0]["parts"] == [
        {"type": "text", "content": 'a "quoted" answer'}
    ]
    assert '\\"' not in text.replace('\\"quoted\\"', "")  # no JSON text escaped inside JSON


def _conversation(n: int, size: int = 10) -> list[Message]:
    messages = [Message(role="system", content="be brief")]
    for i in range(n):
        messages.append(Message(role="user", content=f"q{i} " + "x" * size))
        call = ToolCall(id=f"c{i}", name="t", arguments={"i": i})
        messages.append(Message(role="assistant", content="", tool_calls=[call]))
        messages.append(Message(role="tool", content="r" * size, tool_call_id=f"c{i}"))
    return messages


def test_the_message_cache_converts_each_message_once_per_run() -> None:
    cache: MessageCache = {}
    messages = _conversation(2)
    first, omitted = input_messages(messages[:4], cache)
    assert omitted == 0 and len(cache) == 4
    second, _ = input_messages(messages, cache)
    assert len(cache) == len(messages)
    # The earlier messages are the very entries converted for the first span.
    assert all(a is b for a, b in zip(first, second[:4], strict=True))
    assert second == input_messages(messages)[0]  # the same as without a cache


def test_input_messages_stay_within_their_budget_as_stored() -> None:
    cache: MessageCache = {}
    messages = _conversation(40, size=600)
    kept, omitted = input_messages(messages, cache)
    assert omitted > 0
    assert len(messages_json(kept)) <= MAX_INPUT_MESSAGES_CHARS
    assert kept[0]["role"] == "system" and kept[-1] == input_messages(messages[-1:])[0][0]
    assert len(kept) + omitted == len(messages)


async def test_a_message_the_loop_edits_in_place_is_stored_as_the_model_got_it(
    sqlite_url: str,
) -> None:
    """A hand-written loop that edits a message of its own list between two calls (its system
    prompt, a tool call appended to its last reply): before, the run's message cache matched
    the message by identity alone, and the second chat span showed what the first call sent."""
    from tether import Harness, ModelRequest

    model = ScriptedModel([{"text": "ok"}], name="m")
    harness = Harness(models=[model], trace=sqlite_url)
    messages = [
        Message(role="system", content="prompt v1"),
        Message(role="user", content="question"),
        Message(role="assistant", content="thinking"),
    ]
    async with harness.open_run("question") as run:
        await run.model_call(ModelRequest(messages=list(messages)))
        messages[0].content = "prompt v2"
        messages[2].tool_calls.append(ToolCall(id="c1", name="t", arguments={}))
        await run.model_call(ModelRequest(messages=list(messages)))
        await run.output("done")
    writer_for(sqlite_url).flush()
    chats = [s for s in Store(sqlite_url).get_spans(run.run_id) if s.kind == "model"]
    sent = [stored_messages(s.attributes[semconv.GEN_AI_INPUT_MESSAGES]) for s in chats]
    assert [m[0]["parts"][0]["content"] for m in sent] == ["prompt v1", "prompt v2"]
    assert [[p["type"] for p in m[2]["parts"]] for m in sent] == [
        ["text"],
        ["text", "tool_call"],
    ]
