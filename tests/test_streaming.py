"""Streamed replies without a network: the events, ``StreamAccumulator``, ``stream_of`` for
models with and without ``stream``, and ``ScriptedModel.stream``."""

from __future__ import annotations

import gc
import random
import re
import string
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tether.core import ProviderError, SpecError
from tether.providers import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    StreamingModel,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageUpdate,
    response_events,
    stream_of,
)
from tether.providers.streaming import INCOMPLETE
from tether.providers.types import RAW_ARGUMENTS_KEY


def request(text: str = "hello", *history: Message) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text), *history])


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


def fold(events: list[StreamEvent]) -> StreamAccumulator:
    accumulator = StreamAccumulator(model="m")
    for event in events:
        accumulator.add(event)
    return accumulator


# --------------------------------------------------------------------------- accumulator


def test_accumulator_partial_then_final() -> None:
    acc = StreamAccumulator(model="gpt-x")
    assert acc.response() == ModelResponse(
        model="gpt-x", finish_reason=INCOMPLETE, usage_known=False
    )
    assert not acc.usage_known

    acc.add(TextDelta("Let me "))
    acc.add(ToolCallDelta(0, "call_a", "search", '{"q": "Par'))
    acc.add(TextDelta("look."))
    acc.add(ToolCallDelta(1, None, "fetch"))
    partial = acc.response()

    assert partial.content == "Let me look."
    assert partial.finish_reason == INCOMPLETE
    # Arguments cut short are kept as the text they are, complete ones parsed.
    assert partial.tool_calls == [
        ToolCall(id="call_a", name="search", arguments={RAW_ARGUMENTS_KEY: '{"q": "Par'}),
        ToolCall(id="", name="fetch", arguments={}),
    ]
    assert partial.usage == Usage() and not acc.usage_known

    acc.add(ToolCallDelta(0, arguments_delta='is"}'))
    acc.add(ToolCallDelta(1, "call_b", "ignored: the first name stands", "{}"))
    acc.add(UsageUpdate(Usage(input_tokens=7)))
    acc.add(UsageUpdate(Usage(input_tokens=7, output_tokens=3)))  # replaces, not adds
    partial = acc.response()

    assert partial.tool_calls == [
        ToolCall(id="call_a", name="search", arguments={"q": "Paris"}),
        ToolCall(id="call_b", name="fetch", arguments={}),
    ]
    assert (partial.usage.input_tokens, partial.usage.output_tokens) == (7, 3)
    assert acc.usage_known and not acc.ended

    final = ModelResponse(content="Let me look.", model="gpt-x-2025", finish_reason="tool_calls")
    acc.add(StreamEnd(final, usage_known=False))

    assert acc.ended and acc.response() is final
    assert acc.usage == Usage() and not acc.usage_known  # the end has the last word
    assert acc.events == 9


def test_accumulator_orders_calls_by_index_not_arrival() -> None:
    acc = StreamAccumulator()
    acc.add(ToolCallDelta(2, "c2", "late", "{}"))
    acc.add(ToolCallDelta(0, "c0", "early", "{}"))

    assert [c.name for c in acc.response().tool_calls] == ["early", "late"]
    assert [c.index for c in acc.tool_calls()] == [0, 2]


@pytest.mark.parametrize("pieces", [False, True])
def test_response_events_fold_back_to_the_response(pieces: bool) -> None:
    response = ModelResponse(
        content="  two  words\nand a line ",
        tool_calls=[
            ToolCall(id="a", name="search", arguments={"q": "x" * 40, "n": [1, 2]}),
            ToolCall(id="b", name="broken", arguments={RAW_ARGUMENTS_KEY: "[1, 2"}),
        ],
        usage=Usage(input_tokens=3, output_tokens=4),
        model="m",
        finish_reason="tool_calls",
        response_id="r1",
    )
    events = list(response_events(response, pieces=pieces))
    acc = StreamAccumulator()
    for event in events[:-1]:
        acc.add(event)

    assert isinstance(events[-1], StreamEnd) and events[-1].response == response
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(texts) == (5 if pieces else 1)
    # The deltas alone, before the end, already give the text and the calls.
    assert acc.response().content == response.content
    assert acc.response().tool_calls == response.tool_calls


# --------------------------------------------------------------------------- stream_of


class CompleteOnly:
    """A user model written before streaming existed."""

    provider = "mine"
    name = "complete-only"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(
            content="whole answer",
            tool_calls=[ToolCall(id="c", name="t", arguments={"a": 1})],
            usage=Usage(input_tokens=5, output_tokens=2),
            model=self.name,
            finish_reason="tool_calls",
        )


class StreamFlag(CompleteOnly):
    """A model with a ``stream`` setting that is not a method (as ``OpenAIChatModel`` once had)."""

    stream = True


class CoroutineStream(CompleteOnly):
    async def stream(self, request: ModelRequest) -> list[StreamEvent]:
        return []


async def test_stream_of_a_model_without_stream_completes_in_one_piece() -> None:
    for model in (CompleteOnly(), StreamFlag()):
        assert isinstance(model, Model)
        events = await collect(stream_of(model, request()))

        assert events == list(response_events(await model.complete(request())))
        assert [type(e) for e in events] == [TextDelta, ToolCallDelta, StreamEnd]
        assert isinstance(events[-1], StreamEnd) and events[-1].usage_known


async def test_stream_of_uses_the_models_stream() -> None:
    model = ScriptedModel([{"text": "one two three"}])

    events = await collect(stream_of(model, request()))

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two ", "three"]


async def test_stream_that_is_no_async_iterator_is_a_provider_error() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ProviderError) as info:
            stream_of(CoroutineStream(), request())
        gc.collect()

    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert "stream() returned coroutine, not an async iterator" in str(info.value)
    assert info.value.hint is not None and "async generator" in info.value.hint


def test_streaming_protocol_is_separate_from_model() -> None:
    assert isinstance(CompleteOnly(), Model)
    assert not isinstance(CompleteOnly(), StreamingModel)
    assert isinstance(ScriptedModel([{"text": "x"}]), StreamingModel)


# --------------------------------------------------------------------------- scripted


THREE_STEPS: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "search", "arguments": {"q": "{input}", "deep": {"k": [1, 2]}}}]},
    {"text": "Found it:  {result:search}\n\nbye", "tool_calls": [{"name": "log"}]},
    {"text": "done"},
]


async def test_scripted_stream_ends_with_what_complete_returns() -> None:
    model = ScriptedModel(THREE_STEPS)
    history: list[Message] = []
    for _ in range(3):
        req = request("where is order 42?", *history)
        events = await collect(model.stream(req))
        expected = await model.complete(req)

        assert isinstance(events[0], UsageUpdate)
        assert events[0].usage == Usage(input_tokens=expected.usage.input_tokens)
        assert isinstance(events[-1], StreamEnd) and events[-1].response == expected
        acc = fold(events[:-1])
        assert acc.response().content == expected.content
        assert acc.response().tool_calls == expected.tool_calls
        words = len(expected.content.split())
        assert sum(isinstance(e, TextDelta) for e in events) == words
        history += [
            expected.as_message(),
            *(
                Message(role="tool", name=c.name, tool_call_id=c.id, content='{"at": "Oslo"}')
                for c in expected.tool_calls
            ),
        ]


def _random_step(rng: random.Random) -> dict[str, Any]:
    alphabet = string.ascii_letters + " \n\t{}\"'é😀"
    step: dict[str, Any] = {}
    if rng.random() < 0.8:
        step["text"] = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120)))
        step["text"] = step["text"].replace("{", "(").replace("}", ")")
    if rng.random() < 0.5 or "text" not in step:
        step["tool_calls"] = [
            {"name": f"t{i}", "arguments": {"s": "x" * rng.randrange(0, 50), "n": i}}
            for i in range(rng.randrange(1, 4))
        ]
    return step


@pytest.mark.parametrize("seed", range(20))
async def test_property_scripted_stream_equals_complete(seed: int) -> None:
    rng = random.Random(seed)
    model = ScriptedModel([_random_step(rng)])
    req = request("x" * rng.randrange(0, 300))

    events = await collect(model.stream(req))
    acc = fold(events[:-1])

    assert events[-1] == StreamEnd(await model.complete(req))
    assert acc.response().content == (await model.complete(req)).content
    assert acc.response().tool_calls == (await model.complete(req)).tool_calls


async def test_scripted_stream_cut_keeps_what_came_and_the_prompt_usage() -> None:
    model = ScriptedModel([{"text": "one two three four", "stream_cut_after": 2}])
    acc = StreamAccumulator(model=model.name)

    with pytest.raises(ProviderError) as info:
        async for event in model.stream(request()):
            acc.add(event)

    assert info.value.retryable
    assert "cut after 2 piece(s)" in str(info.value)
    partial = acc.response()
    assert partial.content == "one two "
    assert partial.finish_reason == INCOMPLETE
    assert partial.usage.input_tokens > 0 and acc.usage_known
    # complete() is not affected.
    assert (await model.complete(request())).content == "one two three four"


async def test_scripted_stream_cut_after_every_piece_still_never_ends() -> None:
    model = ScriptedModel([{"text": "a b", "stream_cut_after": 2}])

    events: list[StreamEvent] = []
    with pytest.raises(ProviderError):
        async for event in model.stream(request()):
            events.append(event)

    assert not any(isinstance(e, StreamEnd) for e in events)
    assert fold(events).response().content == "a b"


async def test_scripted_error_step_fails_before_any_event() -> None:
    model = ScriptedModel([{"error": "overloaded"}])
    events: list[StreamEvent] = []

    with pytest.raises(ProviderError, match="overloaded"):
        async for event in model.stream(request()):
            events.append(event)

    assert events == []


def test_stream_cut_on_an_error_step_is_refused_with_its_line(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("steps:\n  - text: hi\n  - error: boom\n    stream_cut_after: 1\n")

    with pytest.raises(SpecError) as info:
        ScriptedModel.from_yaml(script)

    message = str(info.value)
    assert "s.yaml:3: steps[1]" in message
    assert "stream_cut_after" in message


def test_stream_cut_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ScriptedModel([{"text": "hi", "stream_cut_after": -1}])


def test_readme_streaming_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = Path(__file__).parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    example = next(b for b in blocks if "stream_of" in b)

    exec(compile(example, "README.md", "exec"), {})

    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Your order ships tomorrow."
    assert printed[1].startswith("input_tokens=") and "output_tokens=7" in printed[1]
