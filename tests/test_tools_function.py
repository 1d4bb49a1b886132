"""Function tools: ``@tool`` schemas and metadata from type hints and docstrings, calls, and
parameter names."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

import pytest

from fakes.sample_tools import Address, Order, refund, search, ship
from tether.core import SpecError, ToolArgumentsError, ToolError
from tether.spec import HttpToolSpec
from tether.tools import FunctionTool, Tool, ToolResult, definition_of, tool

# --- @tool: schema and metadata ----------------------------------------------------------------


def test_schema_from_type_hints_and_docstring() -> None:
    assert search.name == "search"
    assert search.description == "Search the catalogue.\n\nMatches titles and descriptions."
    params = search.parameters
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert set(props) == {"query", "limit", "exact", "tags"}
    assert props["query"]["type"] == "string"
    assert props["query"]["description"] == "Words to look for."
    assert props["limit"]["type"] == "integer"
    assert props["limit"]["default"] == 5
    assert props["limit"]["description"] == "Most results to return."
    assert props["exact"] == {
        "type": "boolean",
        "default": False,
        "description": "Match whole words only.",
        "title": "Exact",
    }
    assert {"type": "array", "items": {"type": "string"}} in props["tags"]["anyOf"]
    assert "description" not in props["tags"]  # not documented: no description invented
    assert "Returns" not in json.dumps(params)


def test_nested_model_argument_schema() -> None:
    params = ship.parameters
    assert params["required"] == ["address"]
    address = params["$defs"]["Address"]
    assert address["required"] == ["city"]
    assert params["properties"]["address"] == {"$ref": "#/$defs/Address"}


def test_default_metadata() -> None:
    assert isinstance(search, FunctionTool)
    assert isinstance(search, Tool)
    assert search.side_effects == "external"  # undeclared: the riskiest class
    assert search.scopes == ()
    assert search.timeout_s == 30.0


def test_decorator_metadata() -> None:
    assert refund.name == "refund_order"
    assert refund.description == "Refund an order."
    assert refund.side_effects == "write"
    assert refund.scopes == ("orders:write",)
    assert refund.timeout_s == 5
    definition = definition_of(refund)
    assert definition.name == "refund_order"
    assert definition.parameters["required"] == ["order_id", "amount"]
    assert definition.parameters["properties"]["amount"]["type"] == "number"


def test_explicit_description_and_undocumented_function() -> None:
    def bare(x: int) -> int:
        return x

    assert FunctionTool(bare).description == ""
    assert FunctionTool(bare, description="Echo x.").description == "Echo x."
    assert tool(description="Given.")(bare).description == "Given."


def test_unannotated_argument_accepts_anything() -> None:
    def loose(x, y: int = 1):  # type: ignore[no-untyped-def]
        return [x, y]

    t = FunctionTool(loose)
    assert t.parameters["required"] == ["x"]
    assert "type" not in t.parameters["properties"]["x"]


def test_varargs_are_refused() -> None:
    def star(*names: str) -> str:
        return ""

    def kw(**options: str) -> str:
        return ""

    with pytest.raises(SpecError, match=r"tool 'star': \*args and \*\*kwargs"):
        FunctionTool(star)
    with pytest.raises(SpecError, match="tool 'kw'"):
        FunctionTool(kw)


def test_unresolvable_type_hint_is_a_spec_error() -> None:
    def broken(x: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821
        return ""

    with pytest.raises(SpecError, match="tool 'broken': cannot read its type hints"):
        FunctionTool(broken)


def test_direct_call_passes_through() -> None:
    assert search("x", limit=2) == "x|2|False|None"
    assert refund(1, 2.5) == {"order_id": 1, "amount": 2.5}


# --- @tool: calls ------------------------------------------------------------------------------


async def test_sync_function_call_runs_off_the_event_loop_thread() -> None:
    @tool
    def where() -> int:
        """Which thread runs me."""
        return threading.get_ident()

    result = await where.call({})
    assert isinstance(result, ToolResult)
    assert result.is_error is False
    assert result.data != threading.get_ident()
    assert result.content == str(result.data)


async def test_sync_call_with_defaults_and_coercion() -> None:
    result = await search.call({"query": "boots", "limit": "3", "tags": ["a"]})
    assert result.content == "boots|3|False|['a']"
    assert result.data == "boots|3|False|['a']"


async def test_async_function_call_and_model_argument() -> None:
    result = await ship.call({"address": {"city": "Oslo"}, "express": True})
    assert result.data == Order(id=7, items=["Oslo", "True"])
    assert json.loads(result.content) == {"id": 7, "items": ["Oslo", "True"]}


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ([1, "two", None], '[1,"two",null]'),
        (Address(city="Rome", zip="00100"), '{"city":"Rome","zip":"00100"}'),
        ([Address(city="A")], '[{"city":"A","zip":""}]'),
        ("plain text", "plain text"),
        (42, "42"),
        (None, "null"),
    ],
)
async def test_return_values_serialize_to_json_text(value: Any, content: str) -> None:
    @tool
    def give() -> Any:
        return value

    result = await give.call({})
    assert result.content == content
    assert result.data == value


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"query": "x", "limit": "many"}, "limit: Input should be a valid integer"),
        ({"limit": 3}, "query: Field required"),
        ({"query": "x", "exact": "perhaps"}, "exact: Input should be a valid boolean"),
        ({"query": ["not", "a", "string"]}, "query: Input should be a valid string"),
        ({"query": "x", "tags": "a"}, "tags: Input should be a valid list"),
    ],
)
async def test_bad_arguments_name_the_argument(arguments: dict[str, Any], expected: str) -> None:
    with pytest.raises(ToolArgumentsError) as info:
        await search.call(arguments)
    assert "invalid arguments for tool 'search'" in str(info.value)
    assert expected in str(info.value)


async def test_nested_argument_errors_name_the_path() -> None:
    with pytest.raises(ToolArgumentsError, match=r"address\.city: Field required"):
        await ship.call({"address": {"zip": "1"}})


async def test_extra_arguments_are_rejected() -> None:
    with pytest.raises(ToolArgumentsError, match="bogus: Extra inputs are not permitted"):
        await search.call({"query": "x", "bogus": 1})


async def test_raw_arguments_from_a_model_are_rejected() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        await search.call({"__raw__": '{"query": "x"'})
    message = str(info.value)
    assert "invalid arguments for tool 'search': not valid JSON" in message
    assert '{"query": "x"' in message


async def test_raw_arguments_are_truncated_in_the_message() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        await search.call({"__raw__": "{" + "x" * 5000})
    assert len(str(info.value)) < 400


async def test_exceptions_from_the_function_propagate() -> None:
    @tool
    async def fails(x: int) -> None:
        raise ToolError(f"no such thing: {x}")

    @tool
    def crashes() -> None:
        raise ValueError("bad state")

    with pytest.raises(ToolError, match="no such thing: 4"):
        await fails.call({"x": 4})
    with pytest.raises(ValueError, match="bad state"):
        await crashes.call({})


# --- parameter names pydantic reserves, default side effects -----------------------------------


async def test_sync_tool_raising_stop_iteration_is_an_error_not_a_hang() -> None:
    @tool(timeout_s=60)
    def exhausted() -> str:
        """Reads past the end of an iterator."""
        return next(iter([]))

    with pytest.raises(RuntimeError, match="StopIteration"):
        async with asyncio.timeout(10):
            await exhausted.call({})


def reserved_names(_token: str, model_config: str, model_dump: int = 2, json: bool = False) -> str:
    """Parameters named like pydantic's own attributes.

    Args:
        _token: A leading underscore.
        model_config: The name of BaseModel's configuration.
    """
    return f"{_token}|{model_config}|{model_dump}|{json}"


async def test_parameters_named_like_pydantic_attributes_work_end_to_end() -> None:
    t = FunctionTool(reserved_names)
    params = t.parameters
    assert list(params["properties"]) == ["_token", "model_config", "model_dump", "json"]
    assert params["required"] == ["_token", "model_config"]
    assert params["properties"]["_token"]["description"] == "A leading underscore."
    result = await t.call({"_token": "t", "model_config": "c", "json": True})
    assert result.content == "t|c|2|True"
    with pytest.raises(ToolArgumentsError) as info:
        await t.call({"_token": "t", "model_config": "c", "arg_0": "internal name"})
    assert "arg_0: Extra inputs are not permitted" in info.value.message


def test_positional_only_parameters_are_refused_when_built() -> None:
    def f(x: int, /) -> int:
        return x

    with pytest.raises(SpecError, match="tool 'f': parameter 'x' is positional-only"):
        FunctionTool(f)


def test_unsupported_parameter_type_is_a_spec_error() -> None:
    def f(sock: socket.socket) -> None:
        pass

    with pytest.raises(SpecError, match="tool 'f': unsupported parameter type"):
        FunctionTool(f)


def test_side_effects_default_to_external() -> None:
    def plain(q: str) -> str:
        return q

    assert FunctionTool(plain).side_effects == "external"
    assert tool(plain).side_effects == "external"
    assert tool(scopes=["s"])(plain).side_effects == "external"
    assert tool(side_effects="read")(plain).side_effects == "read"
    spec = HttpToolSpec(kind="http", name="h", url="http://127.0.0.1/", allowed_hosts=["x"])
    assert spec.side_effects == "external"
