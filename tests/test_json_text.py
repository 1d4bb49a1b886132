"""Compact JSON from encoders built once: the same text as ``json.dumps`` with the same options."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest

from tether.core.jsontext import compact_json_encoder
from tether.store import dumps_attributes
from tether.store.records import RunRecord, SpanRecord
from tether.trace.journal import CHECKPOINT, RUN_START, SPAN, _decode, encode


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
def test_same_text_as_json_dumps(value: Any, ensure_ascii: bool) -> None:
    encode_ = compact_json_encoder(ensure_ascii=ensure_ascii)
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, default=str)
    assert encode_(value) == expected


def test_nan_as_json_dumps_writes_it() -> None:
    encode_ = compact_json_encoder(ensure_ascii=False)
    assert encode_([math.nan]) == "[NaN]"


def test_a_value_containing_itself_raises_instead_of_looping() -> None:
    value: dict[str, Any] = {}
    value["self"] = value
    with pytest.raises(RecursionError):
        compact_json_encoder(ensure_ascii=False)(value)


def test_dumps_attributes_scrubs_lone_surrogates() -> None:
    assert dumps_attributes({"t": "a\ud800b"}) == '{"t":"a\ufffdb"}'


def _reference_line(op: int, record: Any, fields: tuple[str, ...]) -> bytes:
    """A journal line as the first version of the journal wrote it (``json.dumps``)."""
    head = json.dumps([getattr(record, f) for f in fields], separators=(",", ":"), default=str)
    attributes = getattr(record, "attributes", None)
    text = "null" if attributes is None else dumps_attributes(attributes)
    return f"[{op},{head},{text}]\n".encode()


def test_journal_lines_are_byte_for_byte_those_of_format_version_1() -> None:
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
    for op, record in ((RUN_START, run), (SPAN, span), (CHECKPOINT, checkpoint)):
        line, attributes_json = encode(op, record)
        assert line == _reference_line(op, record, _FIELDS[op])
        assert line.decode("utf-8")  # valid UTF-8 even with a lone surrogate in user text
        if attributes_json is not None:
            assert line.endswith(f",{attributes_json}]\n".encode())
    # And a reader gets the records back, messages structured.
    header = json.dumps({"tether_journal": 1, "fields": _FIELDS}, separators=(",", ":")).encode()
    items = _decode(None, header + b"\n" + encode(SPAN, span)[0])  # type: ignore[arg-type]
    [(op, back)] = items
    assert op == SPAN and back == span
