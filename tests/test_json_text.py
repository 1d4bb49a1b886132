"""Compact JSON from encoders built once: the same text as ``json.dumps`` with the same options."""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tether.core.jsontext import compact_json_encoder, json_bytes, json_text
from tether.store import dumps_attributes
from tether.store.records import RunRecord, SpanRecord
from tether.trace.journal import CHECKPOINT, EVENT, RUN_START, SPAN, _decode, encode, encode_line


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    pass


VALUES: list[Any] = [
    "plain",
    'é 世界 \n \t " \\ \x00 \x1f \u2028',
    "lone \ud800 surrogate",
    0,
    -1,
    2**70,
    1.5,
    1e300,
    -0.0,
    math.inf,
    -math.inf,
    True,
    False,
    None,
    [],
    {},
    (1, "two", None),
    {"a": [1, {"b": ("c", 2.5)}], "d": {"e": {}}},
    {7: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    {"object": object, "set": {1}, "bytes": b"x", "enum": Color.RED, "int_enum": Level.HIGH},
    {"str_subclass": Tag("tagged"), Tag("key"): 1},
    [[[[[[["deep"]]]]]]],
]


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_prebuilt_encoder_writes_what_json_dumps_writes(value: Any, ensure_ascii: bool) -> None:
    encode_ = compact_json_encoder(ensure_ascii=ensure_ascii)
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, default=str)
    assert encode_(value) == expected


def _finite(value: Any) -> bool:
    text = json.dumps(value, default=str)
    return "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("value", [v for v in VALUES if _finite(v)], ids=lambda v: type(v).__name__)
def test_json_text_means_what_json_dumps_means(value: Any) -> None:
    expected = json.loads(json.dumps(value, default=str).replace("\\ud800", "\\ufffd"))
    if isinstance(value, dict) and "enum" in value:
        expected["enum"] = "red"  # an Enum is written as its value
    text = json_text(value)
    assert json.loads(text) == expected
    assert json_bytes(value) == text.encode()
    text.encode("utf-8")  # valid UTF-8, whatever the value held


def test_json_text_writes_no_number_json_has_not() -> None:
    assert json_text([math.nan, math.inf, -math.inf, 1.5]) == "[null,null,null,1.5]"


def test_json_text_falls_back_for_what_orjson_refuses() -> None:
    assert json_text({"big": 2**70}) == '{"big":1180591620717411303424}'
    assert json_text({"t": "a\ud800b"}) == '{"t":"a\ufffdb"}'
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    assert json.loads(json_text(deep)) == deep
    assert dumps_attributes({"t": "a\ud800b"}) == '{"t":"a\ufffdb"}'


def test_a_value_containing_itself_raises_instead_of_looping() -> None:
    value: dict[str, Any] = {}
    value["self"] = value
    with pytest.raises(RecursionError):
        compact_json_encoder(ensure_ascii=False)(value)


class _Broken:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_attributes_that_cannot_be_written_become_a_note_not_an_error() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    attributes = {"ok": 1, "looped": looped, "deep": deep, "broken": _Broken()}
    written = json.loads(json_text(attributes))
    assert written["ok"] == 1
    assert written["looped"] == "<not serializable: dict: RecursionError>"
    assert written["deep"] == "<not serializable: list: RecursionError>"
    assert written["broken"] == "<not serializable: _Broken: RuntimeError>"
    assert json.loads(json_bytes(attributes)) == written


def test_a_run_with_unwritable_metadata_completes_and_is_traced(sqlite_url: str) -> None:
    from tether import Agent, AgentSpec, ModelConfig, ScriptedModel
    from tether.store import Store
    from tether.trace import writer_for

    spec = AgentSpec(name="m", model=ModelConfig(provider="scripted", name="s", script="u.yaml"))
    agent = Agent(spec, model=ScriptedModel([{"text": "ok"}]), trace=sqlite_url)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    result = agent.run_sync("hi", metadata={"looped": looped, "team": "a"})
    assert result.ok
    assert writer_for(sqlite_url).flush() and writer_for(sqlite_url).dropped == 0
    store = Store(sqlite_url)
    try:
        run = store.get_run(result.run_id)
    finally:
        store.close()
    assert run.status == "completed" and run.attributes["team"] == "a"
    assert run.attributes["looped"].startswith("<not serializable")


def _reference_line(op: int, record: Any, fields: tuple[str, ...]) -> bytes:
    """A journal line as the first version of the journal wrote it (``json.dumps``)."""
    head = json.dumps([getattr(record, f) for f in fields], separators=(",", ":"), default=str)
    attributes = getattr(record, "attributes", None)
    text = "null" if attributes is None else dumps_attributes(attributes)
    return f"[{op},{head},{text}]\n".encode()


def test_journal_lines_read_back_as_lines_of_format_version_1_do() -> None:
    from tether.store import CheckpointRecord
    from tether.trace.journal import _FIELDS

    run = RunRecord(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        run_id="b7ad6b7169203331",
        agent_name="agent é",
        agent_version="v1",
        started_ns=1,
        input="in \ud800 put 世界",
        cost_usd=0.25,
        attributes={"tether.agent.paradigm": "react", "x": [1, 2.5, None]},
    )
    span = SpanRecord(
        trace_id=run.trace_id,
        run_id=run.run_id,
        span_id="00f067aa0ba902b7",
        parent_id=run.run_id,
        name="chat m",
        kind="model",
        start_ns=2,
        end_ns=3,
        attributes={"gen_ai.input.messages": [{"role": "user", "parts": []}], "n": 2**70},
    )
    checkpoint = CheckpointRecord(
        trace_id=run.trace_id, run_id=run.run_id, schema_version=1, created_ns=4, state_json="{}"
    )
    header = json.dumps({"tether_journal": 1, "fields": _FIELDS}, separators=(",", ":"))
    for op, record in ((RUN_START, run), (SPAN, span), (CHECKPOINT, checkpoint)):
        line, attributes_json = encode(op, record)
        line.decode("utf-8")  # valid UTF-8 even with a lone surrogate in user text
        if attributes_json is not None:
            assert line.endswith(f",{attributes_json}]\n".encode())
        old = _reference_line(op, record, _FIELDS[op])  # as the first journal wrote it
        [(new_op, new)] = _decode(Path("new"), header.encode() + b"\n" + line)
        [(old_op, was)] = _decode(Path("old"), header.encode() + b"\n" + old)
        assert new_op == old_op == op
        if isinstance(record, RunRecord):  # user text: its lone surrogate is replaced now
            assert was.input == record.input and new.input == "in \ufffd put 世界"
            was.input = new.input
        assert new == was


@pytest.mark.parametrize(
    "attributes",
    [
        {"gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "é"}]}]},
        {"lone": "a \udc80 surrogate"},  # orjson refuses it: the careful path
        {"big": 2**70, "nan": math.nan, "when": object()},
        {},
    ],
)
def test_a_journal_line_made_in_one_go_is_the_line_of_encode(attributes: dict[str, Any]) -> None:
    from tether.store import EventRecord

    span = SpanRecord(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        run_id="b7ad6b7169203331",
        span_id="00f067aa0ba902b7",
        parent_id=None,
        name="chat \ud800 m",
        kind="model",
        start_ns=2,
        end_ns=3,
        attributes=attributes,
    )
    event = EventRecord(span.trace_id, span.span_id, "tether.x", 5, attributes, run_id=span.run_id)
    for op, record in ((SPAN, span), (EVENT, event)):
        line = encode_line(op, record)
        assert line == encode(op, record)[0]
        line.decode("utf-8")  # valid UTF-8, the surrogate replaced
