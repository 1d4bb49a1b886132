"""Streaming through a run: the answer as it comes, a stream cut midway, `tether run --stream`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakes.cli import run_cli
from fakes.openai_server import FakeOpenAIServer, Reply, completion_body, stream_chunk
from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import (
    Agent,
    Control,
    Decision,
    Harness,
    HookContext,
    ModelRequest,
    ModelResponse,
    OpenAIChatModel,
    Outcome,
    ScriptedModel,
)
from tether.providers import StreamEnd, StreamEvent, TextDelta, Usage, UsageUpdate
from tether.trace import semconv


def collector() -> tuple[list[StreamEvent], Callable[[StreamEvent], None]]:
    events: list[StreamEvent] = []
    return events, events.append


async def test_the_answer_streams_and_the_result_is_the_same(sqlite_url: str) -> None:
    events, on_event = collector()
    model = ScriptedModel(
        [{"tool_calls": [{"name": "nope"}]}, {"text": "one two three four"}], name="gpt-4.1-mini"
    )
    agent = Agent(make_spec(), model=model, trace=sqlite_url)
    result = await agent.run("hi", stream=on_event)
    assert result.ok and result.output == "one two three four"
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(texts) > 1 and "".join(texts) == result.output  # in pieces, as it came
    assert sum(isinstance(e, StreamEnd) for e in events) == 2  # one per model call
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    chats = [s for s in spans if s.kind == "model"]
    assert all(s.attributes[semconv.TETHER_COST_USD] > 0 for s in chats)


async def test_a_coroutine_handler_is_awaited() -> None:
    seen: list[str] = []

    async def on_event(event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            seen.append(event.text)

    agent = Agent(make_spec(), model=ScriptedModel([{"text": "a b c"}]), trace=False)
    result = await agent.run("hi", stream=on_event)
    assert "".join(seen) == result.output == "a b c"


async def test_a_stream_cut_midway_keeps_its_partial_reply_and_usage(sqlite_url: str) -> None:
    events, on_event = collector()
    primary = ScriptedModel(
        [{"text": "alpha beta gamma delta", "stream_cut_after": 2}], name="gpt-4.1-mini"
    )
    fallback = ScriptedModel([{"text": "from the fallback"}], name="gpt-4.1")
    agent = Agent(make_spec(), model=primary, fallback_models=[fallback], trace=sqlite_url)
    result = await agent.run("hi", stream=on_event)
    # Part of the answer was shown: no fallback that would print a second one after it.
    assert result.outcome == Outcome.ERROR and "broke off midway" in (result.error or "")
    shown = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert shown == "alpha beta "
    assert result.usage.input_tokens > 0  # the prompt usage reported before the cut is charged
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    [chat] = [s for s in spans if s.kind == "model"]
    assert chat.status == "error" and "stream cut off" in chat.status_message
    output = chat.attributes[semconv.GEN_AI_OUTPUT_MESSAGES]
    output = json.loads(output) if isinstance(output, str) else output
    assert output[0]["parts"][0]["content"] == "alpha beta "
    assert output[0]["finish_reason"] == "incomplete"
    assert chat.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.input_tokens


async def test_a_stream_failing_before_any_text_falls_back(sqlite_url: str) -> None:
    events, on_event = collector()
    primary = ScriptedModel([{"text": "never shown", "stream_cut_after": 0}], name="gpt-4.1-mini")
    fallback = ScriptedModel([{"text": "from the fallback"}], name="gpt-4.1")
    agent = Agent(make_spec(), model=primary, fallback_models=[fallback], trace=sqlite_url)
    result = await agent.run("hi", stream=on_event)
    assert result.ok and result.output == "from the fallback"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "from the fallback"


async def test_a_control_answer_is_streamed_too() -> None:
    class Canned(Control):
        name = "canned"

        async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
            return Decision.respond(ModelResponse(content="canned words here"), "canned")

    events, on_event = collector()
    agent = Agent(
        make_spec(), model=ScriptedModel([{"text": "x"}]), controls=[Canned()], trace=False
    )
    result = await agent.run("hi", stream=on_event)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == result.output


async def test_an_http_stream_cut_midway(sqlite_url: str) -> None:
    chunks: list[dict[str, Any] | str] = [
        stream_chunk({"role": "assistant", "content": "Hello"}),
        stream_chunk(None, usage={"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}),
        stream_chunk({"content": " world"}),
        stream_chunk({"content": " never sent"}),
    ]
    with FakeOpenAIServer() as server:
        server.enqueue(Reply(sse=chunks, sse_cut_after=3))
        model = OpenAIChatModel(
            "gpt-4.1-mini", base_url=server.base_url, api_key="sk-test", max_retries=0
        )
        agent = Agent(make_spec(), model=model, trace=sqlite_url)
        events, on_event = collector()
        try:
            result = await agent.run("hi", stream=on_event)
        finally:
            await agent.aclose()
        sent = server.requests[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert result.outcome == Outcome.ERROR
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello world"
    assert result.usage.input_tokens == 12  # known before the cut
    _, spans, _ = trace_of(sqlite_url, result.run_id)
    [chat] = [s for s in spans if s.kind == "model"]
    assert chat.status == "error"
    assert chat.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 12


def write_spec(folder: Path, script: list[dict[str, Any]]) -> Path:
    (folder / "script.json").write_text(json.dumps({"steps": script}))
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: streamer\nmodel:\n  provider: scripted\n  name: gpt-4.1-mini\n"
        "  script: script.json\n"
    )
    return spec


def test_tether_run_stream_prints_the_answer_once(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, [{"text": "streamed \u001b[31manswer"}])
    url = f"sqlite:///{tmp_path / 't.db'}"
    done = run_cli("--database-url", url, "run", str(spec), "-i", "hi", "--stream")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("streamed") == 1  # not printed again after the stream
    assert "\u001b" not in done.stdout and "\\x1b[31manswer" in done.stdout
    assert "outcome final_answer" in done.stdout


def test_tether_run_stream_says_when_the_stream_was_not_the_answer(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, [{"text": "partial answer text", "stream_cut_after": 1}])
    url = f"sqlite:///{tmp_path / 't.db'}"
    done = run_cli("--database-url", url, "run", str(spec), "-i", "hi", "--stream")
    assert done.returncode == 1
    assert "partial" in done.stdout and "not the answer" in done.stdout
    assert "broke off midway" in done.stdout


def test_stream_and_json_do_not_go_together(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, [{"text": "x"}])
    done = run_cli("run", str(spec), "-i", "hi", "--stream", "--json")
    assert done.returncode == 2 and "--stream" in (done.stdout + done.stderr)


SECRET = "AKIAIOSFODNN7EXAMPLE"


def guarded_spec(folder: Path, action: str) -> Path:
    spec = write_spec(folder, [{"text": f"the key is {SECRET} ok"}])
    spec.write_text(
        spec.read_text() + f"guards:\n  rules:\n    - guard: secrets\n      channels: [output]\n"
        f"      action: {action}\n"
    )
    return spec


def test_tether_run_stream_never_shows_what_an_output_guard_blocks(tmp_path: Path) -> None:
    """A streamed answer's text was printed before the output guards judged it: a secret an
    output guard blocks reached the terminal first. The text is held back when a control may
    block or mask the answer; the answer (or the block) prints once they have judged it."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    blocked = run_cli(
        "--database-url", url, "run", str(guarded_spec(tmp_path, "block")), "-i", "hi", "--stream"
    )
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    assert SECRET not in blocked.stdout + blocked.stderr
    assert "outcome blocked" in blocked.stdout
    masked = run_cli(
        "--database-url", url, "run", str(guarded_spec(tmp_path, "mask")), "-i", "hi", "--stream"
    )
    assert masked.returncode == 0, masked.stdout + masked.stderr
    assert SECRET not in masked.stdout and "the key is" in masked.stdout
    assert masked.stdout.count("the key is") == 1
    logged = run_cli(  # a guard that only logs cannot change the answer: the text streams
        "--database-url", url, "run", str(guarded_spec(tmp_path, "log")), "-i", "hi", "--stream"
    )
    assert logged.returncode == 0 and logged.stdout.count(SECRET) == 1


async def test_a_control_judging_the_answer_holds_its_text_back() -> None:
    class Judge(Control):
        name = "judge"

        async def on_output(self, ctx: HookContext, text: str) -> Decision:
            return Decision.block("no")

    events, on_event = collector()
    model = ScriptedModel([{"text": "words the judge blocks"}])
    agent = Agent(make_spec(), model=model, controls=[Judge()], trace=False)
    result = await agent.run("hi", stream=on_event)
    assert result.outcome == Outcome.BLOCKED
    assert not [e for e in events if isinstance(e, (TextDelta, StreamEnd))]  # StreamEnd: the text


async def test_a_control_masking_replies_holds_their_text_back() -> None:
    # A control of the app's that masks each reply (after_model) changes the answer too:
    # the text it masks must not have streamed first.
    class Masker(Control):
        name = "masker"

        async def after_model(self, ctx: HookContext, response: ModelResponse) -> Decision:
            masked = response.content.replace(SECRET, "[key]")
            return Decision.modify(response.model_copy(update={"content": masked}), "masked")

    events, on_event = collector()
    model = ScriptedModel([{"text": f"the key is {SECRET} ok"}])
    agent = Agent(make_spec(), model=model, controls=[Masker()], trace=False)
    result = await agent.run("hi", stream=on_event)
    assert result.output == "the key is [key] ok"
    assert SECRET not in "".join(str(e) for e in events)


class _OwnStream(ScriptedModel):
    """A model integration whose own ``stream()`` yields what it yields."""

    def __init__(self, events: list[Any]) -> None:
        super().__init__([{"text": "unused"}], name="gpt-4.1-mini")
        self.events = events

    async def stream(self, request: ModelRequest) -> Any:
        for event in self.events:
            yield event


@pytest.mark.parametrize(
    ("events", "said"),
    [
        (["hello ", "world"], "a str, not a stream event"),
        ([TextDelta("a"), StreamEnd(None)], "StreamEnd whose reply is a NoneType"),  # type: ignore[arg-type]
        ([TextDelta(None)], "TextDelta whose text is not text"),  # type: ignore[arg-type]
        ([TextDelta("a"), UsageUpdate(Usage(input_tokens=10**20))], "usage.input_tokens"),
    ],
)
async def test_a_model_s_own_stream_sending_what_is_no_event_fails_the_model(
    sqlite_url: str, events: list[Any], said: str
) -> None:
    """Anything but a stream event (a plain string), or an event holding what it must not,
    crashed the run with an AttributeError out of the step; a usage past the store's columns
    had the run's end refused (it stayed ``running``). It is the model failing."""
    harness = Harness(models=[_OwnStream(events)], trace=sqlite_url)
    shown: list[StreamEvent] = []
    async with harness.open_run("hi", agent="a") as run:
        await run.input()
        assert (await run.model_call(stream=shown.append)).stopped
    result = run.result()
    assert result.outcome == Outcome.ERROR and said in (result.error or "")
    record, _, _ = trace_of(sqlite_url, run.run_id)
    assert record.status == "failed" and said in record.error


async def test_a_call_whose_usage_went_unreported_costs_unknown_not_nothing(
    sqlite_url: str,
) -> None:
    """A server that ignores ``stream_options.include_usage`` (or leaves ``usage`` out of a
    completion), and a stream cut off before its usage came: the call's zeros were recorded
    as a count, so the run cost "$0.000000" and its limits and budgets counted nothing."""
    no_usage = [
        stream_chunk({"role": "assistant", "content": "Hello"}),
        stream_chunk({}, finish_reason="stop"),
    ]
    body = completion_body(content="Hello")
    del body["usage"]
    with FakeOpenAIServer() as server:
        server.enqueue(Reply(sse=no_usage))
        server.enqueue(Reply(json=body))
        cut_off = [
            *no_usage[:1],
            stream_chunk({"content": " more"}),
            stream_chunk({"content": "!"}),
        ]
        server.enqueue(Reply(sse=cut_off, sse_cut_after=2))
        model = OpenAIChatModel(
            "gpt-4.1-mini", base_url=server.base_url, api_key="sk-test", max_retries=0
        )
        agent = Agent(make_spec(), model=model, trace=sqlite_url)
        try:
            streamed = await agent.run("hi", stream=collector()[1])
            completed = await agent.run("hi")
            cut = await agent.run("hi", stream=collector()[1])
        finally:
            await agent.aclose()
    for result in (streamed, completed, cut):
        assert result.cost_usd is None, result.outcome  # unknown, not 0.0
        record, spans, _ = trace_of(sqlite_url, result.run_id)
        [chat] = [s for s in spans if s.kind == "model"]
        assert chat.attributes[semconv.TETHER_USAGE_UNKNOWN] is True
        assert chat.attributes[semconv.TETHER_COST_UNPRICED] is True
        assert semconv.TETHER_COST_USD not in chat.attributes
        assert record.attributes[semconv.TETHER_COST_UNPRICED] == 1
    assert streamed.ok and completed.ok and cut.outcome == Outcome.ERROR
