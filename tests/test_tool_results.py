"""What a function tool's result or failure becomes for the model: clipped when huge, standard
JSON always, and a readable error for any exception, through real agent runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from fakes.specs import make_spec
from tether import Agent, Control, ScriptedModel, tool
from tether.core import describe_exception
from tether.spec import PythonToolSpec


def run_tool(func: Any, arguments: dict[str, Any] | None = None, **spec: Any) -> Any:
    """Run an agent that calls ``func`` once and answers with its result."""
    name = func.name if hasattr(func, "name") else func.__name__
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": name, "arguments": arguments or {}}]},
            {"text": f"{{result:{name}}}"},
        ]
    )
    agent = Agent(
        make_spec(tools=[PythonToolSpec(name=name, **spec)]),
        model=model,
        tools=[func],
        trace=False,
    )
    return agent.run_sync("go")


# --- huge results are clipped ------------------------------------------------------------------


@tool
def dump(size: int) -> str:
    """A result far too large for a model."""
    return "z" * size


def test_a_huge_function_result_is_clipped_and_the_model_told() -> None:
    result = run_tool(dump, {"size": 2_000_000})
    assert result.outcome == "final_answer"
    tool_message = next(m for m in result.state.messages if m.role == "tool")
    shown, note = tool_message.content.split("\n")
    assert shown == "z" * 16_000
    assert note == (
        "[result clipped: the full result is 2,000,000 characters; "
        "only the first 16,000 characters are shown]"
    )
    # The next model call got the clipped result, not two million characters.
    assert result.usage.input_tokens < 20_000


def test_max_result_chars_from_the_spec() -> None:
    result = run_tool(dump, {"size": 500}, max_result_chars=100)
    tool_message = next(m for m in result.state.messages if m.role == "tool")
    assert tool_message.content.startswith("z" * 100 + "\n[result clipped: the full result is 500")
    assert run_tool(dump, {"size": 100}, max_result_chars=100).output == "z" * 100


def test_max_result_chars_from_the_decorator_and_a_yaml_spec(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(
        "from tether import tool\n\n"
        "@tool(max_result_chars=10)\n"
        "def short() -> str:\n    return 'abcdefghijklmnop'\n\n"
        "def plain() -> str:\n    return 'abcdefghijklmnop'\n"
    )
    (tmp_path / "script.yaml").write_text(
        "steps:\n  - tool_calls: [{name: short}, {name: plain}]\n"
        "  - text: '{result:short}|{result:plain}'\n"
    )
    (tmp_path / "agent.yaml").write_text(
        "name: clipper\nmodel: {provider: scripted, name: m, script: script.yaml}\n"
        "tools:\n  - {name: short, function: tools.py:short}\n"
        "  - {name: plain, function: tools.py:plain, max_result_chars: 4}\n"
    )
    result = Agent.from_yaml(tmp_path / "agent.yaml", trace=False).run_sync("x")
    short, plain = (result.output or "").split("|")
    assert short.startswith("abcdefghij\n[result clipped: the full result is 16 characters")
    assert plain.startswith("abcd\n[result clipped")


# --- exceptions that cannot describe themselves ------------------------------------------------


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class NothingWorks(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class NotAString(Exception):
    def __str__(self) -> Any:
        return 42


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (StrRaises("order 7"), "Error: StrRaises: (str() failed; repr: StrRaises('order 7'))"),
        (NothingWorks(), "Error: NothingWorks: (its str() and repr() both failed)"),
        (NotAString(), "Error: NotAString: (str() failed; repr: NotAString())"),
        (ValueError(), "Error: ValueError"),
    ],
)
def test_a_tool_exception_that_cannot_be_described_goes_back_to_the_model(
    exc: Exception, expected: str
) -> None:
    @tool
    def broken() -> str:
        """Fails oddly."""
        raise exc

    result = run_tool(broken)  # before: "unexpected error", and run_sync raised
    assert result.outcome == "final_answer" and result.status == "completed"
    assert result.output == expected


def test_a_tool_exception_with_a_huge_message_is_bounded() -> None:
    @tool
    def verbose() -> str:
        """Fails at length."""
        raise ValueError("x" * 1_000_000)

    result = run_tool(verbose)
    assert result.output is not None
    assert result.output.startswith("Error: ValueError: xxx")
    assert len(result.output) < 2_100
    assert result.output.endswith("(998012 more characters)")


def test_describe_exception_never_raises() -> None:
    assert describe_exception(StrRaises("a")) == "StrRaises: (str() failed; repr: StrRaises('a'))"
    assert describe_exception(KeyError("k")) == "KeyError: 'k'"
    assert describe_exception(RuntimeError("")) == "RuntimeError"


# --- standard JSON ------------------------------------------------------------------------------


class Reading(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    value: float


@tool
def measure(kind: str) -> Any:
    """Numbers that standard JSON has no words for."""
    return {
        "nan": math.nan,
        "dict": {"high": math.inf, "low": [-math.inf, 1.5]},
        "model": Reading(value=math.nan),
    }[kind]


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {constant} in {text!r}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("nan", "NaN"),
        ("dict", {"high": "Infinity", "low": ["-Infinity", 1.5]}),
        ("model", {"value": "NaN"}),
    ],
)
def test_nan_and_infinity_reach_the_model_as_standard_json(kind: str, expected: Any) -> None:
    result = run_tool(measure, {"kind": kind})
    tool_message = next(m for m in result.state.messages if m.role == "tool")
    assert _strict_json(tool_message.content) == expected


# --- exceptions whose str() raises, from a control or a model of the user's own ----------------


class _BrokenControl(Control):
    name = "broken_control"

    async def on_input(self, ctx: Any, text: str) -> Any:
        raise StrRaises("control")


def test_a_control_exception_that_cannot_be_described_stops_the_run_cleanly(
    sqlite_url: str,
) -> None:
    agent = Agent(
        make_spec(),
        model=ScriptedModel([{"text": "hi"}]),
        controls=[_BrokenControl()],
        trace=sqlite_url,
    )
    result = agent.run_sync("go")  # before: the str() error escaped the pipeline
    assert result.outcome == "control_error" and result.status == "failed"
    assert "StrRaises: (str() failed; repr: StrRaises('control'))" in (result.stop_reason or "")


class _ModelRaisingOddly:
    provider = "test"
    name = "odd"

    async def complete(self, request: Any) -> Any:
        raise StrRaises("model")


def test_a_model_exception_that_cannot_be_described_is_the_one_raised_and_traced(
    sqlite_url: str,
) -> None:
    from tether.store import Store
    from tether.trace import writer_for

    agent = Agent(make_spec(), model=_ModelRaisingOddly(), trace=sqlite_url)
    # The run crashes with the model's own exception (not a RuntimeError from describing it),
    # and its trace records the crash.
    with pytest.raises(StrRaises):
        agent.run_sync("go")
    writer_for(sqlite_url).flush()
    store = Store(sqlite_url)
    try:
        (run,) = store.list_runs()
        assert run.status == "failed"
        assert "StrRaises: (str() failed" in (run.error or "")
        model_span = next(s for s in store.get_spans(run.run_id) if s.kind == "model")
        assert "StrRaises" in (model_span.status_message or "")
    finally:
        store.close()


def test_the_clip_does_not_cut_a_token_in_half() -> None:
    """A tool result was cut at exactly ``max_chars``: a key across the cut reached the model,
    the guards and the trace as its first half, which no secrets rule recognizes (a 16-character
    'ghp_...' start is no GitHub token), so nothing masked it."""
    from tether.guards import GuardStack
    from tether.tools.base import clip_result

    token = "ghp_" + "Q7r8A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
    for into in (1, 12, 30, 39):
        text = '{"rows": 3, "token": "' + token + '", "next": null}'
        limit = text.index(token) + into
        clipped = clip_result(text, limit)
        shown = clipped.split("\n[result clipped")[0]
        assert shown == text[: text.index(token)], shown
        assert GuardStack().check(clipped, "tool_output").redacted is None  # nothing half-kept
    # Where no token boundary is near, the cut stays at the limit.
    assert clip_result("z" * 1000, 100).startswith("z" * 100 + "\n[result clipped")
    assert clip_result("a b" + "c" * 500, 300).startswith("a b" + "c" * 297 + "\n")
