"""``build_tools``: tools from a spec (Python functions by file or module, HTTP tools), tools
given by the caller, and tool names."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.sample_tools import refund, search
from tether.core import SpecError
from tether.spec import HttpToolSpec, PythonToolSpec
from tether.tools import FunctionTool, HttpTool, ToolResult, build_tools, tool

# --- build_tools -------------------------------------------------------------------------------


PLAIN_TOOLS = '''
def lookup(query: str, limit: int = 3) -> dict:
    """Look something up.

    Args:
        query: What to look for.
    """
    return {"query": query, "limit": limit}

NOT_CALLABLE = 3
'''


DECORATED_TOOLS = '''
from tether.tools import tool

@tool(side_effects="write", scopes=["orders:write"], timeout_s=5)
def refund(order_id: int) -> str:
    """Refund an order."""
    return f"refunded {order_id}"
'''


@pytest.fixture
def module_name() -> Iterator[str]:
    """A fresh importable module name; the module is forgotten afterwards."""
    name = f"tether_test_tools_{uuid.uuid4().hex[:10]}"
    yield name
    sys.modules.pop(name, None)


async def test_python_tool_by_file_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "my_tools.py").write_text(PLAIN_TOOLS)
    tools = build_tools(
        [PythonToolSpec(name="lookup", function="pkg/my_tools.py:lookup")], base_dir=tmp_path
    )
    t = tools["lookup"]
    assert isinstance(t, FunctionTool)
    assert t.description == "Look something up."
    assert t.parameters["properties"]["query"]["description"] == "What to look for."
    result = await t.call({"query": "boots"})
    assert result.data == {"query": "boots", "limit": 3}


async def test_python_tool_by_absolute_file(tmp_path: Path) -> None:
    path = tmp_path / "abs_tools.py"
    path.write_text(PLAIN_TOOLS)
    tools = build_tools([PythonToolSpec(name="find", function=f"{path}:lookup")], base_dir=None)
    assert tools["find"].name == "find"  # the spec's name is the one the model sees
    assert (await tools["find"].call({"query": "a", "limit": 1})).data == {"query": "a", "limit": 1}


async def test_python_tool_by_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module_name: str
) -> None:
    (tmp_path / f"{module_name}.py").write_text(PLAIN_TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    tools = build_tools([PythonToolSpec(name="lookup", function=f"{module_name}:lookup")])
    assert (await tools["lookup"].call({"query": "q"})).data == {"query": "q", "limit": 3}


async def test_decorated_function_imported_by_path(tmp_path: Path) -> None:
    (tmp_path / "deco.py").write_text(DECORATED_TOOLS)
    tools = build_tools(
        [PythonToolSpec(name="refund", function="deco.py:refund")], base_dir=tmp_path
    )
    t = tools["refund"]
    # The spec declares no metadata, so the decorator's stands.
    assert (t.side_effects, t.scopes, t.timeout_s) == ("write", ("orders:write",), 5)
    assert t.description == "Refund an order."
    assert (await t.call({"order_id": "12"})).content == "refunded 12"


def test_spec_metadata_overrides_decorator_metadata() -> None:
    spec = PythonToolSpec(
        name="refund_order",
        description="Refund a customer's order.",
        side_effects="external",
        scopes=["payments:refund"],
        timeout_s=9,
    )
    t = build_tools([spec], provided=[refund])["refund_order"]
    assert t.description == "Refund a customer's order."
    assert t.side_effects == "external"
    assert t.scopes == ("payments:refund",)
    assert t.timeout_s == 9
    # The decorated tool itself is unchanged.
    assert (refund.side_effects, refund.scopes, refund.timeout_s) == ("write", ("orders:write",), 5)


def test_spec_without_metadata_keeps_the_decorator_metadata() -> None:
    # Leaving side_effects/scopes out of the spec must not silently downgrade a write tool to
    # "read" or drop the scopes it requires.
    t = build_tools([PythonToolSpec(name="refund_order")], provided=[refund])["refund_order"]
    assert t.side_effects == "write"
    assert t.scopes == ("orders:write",)
    assert t.timeout_s == 5
    assert t.description == "Refund an order."


def test_spec_can_clear_decorator_scopes() -> None:
    spec = PythonToolSpec(name="refund_order", scopes=[])
    assert build_tools([spec], provided=[refund])["refund_order"].scopes == ()


def test_declared_tool_without_implementation() -> None:
    with pytest.raises(SpecError) as info:
        build_tools(
            [PythonToolSpec(name="search"), PythonToolSpec(name="ghost")], provided=[search]
        )
    assert info.value.message == "tools[1] 'ghost': no implementation"
    assert info.value.hint is not None
    assert "function: module:function" in info.value.hint
    assert "tools=[...]" in info.value.hint


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("no_such_module_for_tether_tests:f", "cannot import module 'no_such_module_for_tether"),
        ("missing.py:lookup", "missing.py not found"),
        ("tools.py:nope", "has no callable 'nope'"),
        ("tools.py:NOT_CALLABLE", "has no callable 'NOT_CALLABLE'"),
        ("just_a_name", "must look like 'module:function' or 'file.py:function'"),
        ("tools.py:", "must look like"),
    ],
)
def test_bad_import_paths(tmp_path: Path, ref: str, expected: str) -> None:
    (tmp_path / "tools.py").write_text(PLAIN_TOOLS)
    specs = [
        PythonToolSpec(name="ok", function="tools.py:lookup"),
        PythonToolSpec(name="x", function=ref),
    ]
    with pytest.raises(SpecError) as info:
        build_tools(specs, base_dir=tmp_path)
    assert info.value.message.startswith("tools[1] 'x': function ")
    assert expected in info.value.message


def test_file_whose_import_raises(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(SpecError) as info:
        build_tools([PythonToolSpec(name="t", function="boom.py:f")], base_dir=tmp_path)
    assert "tools[0] 't'" in info.value.message
    assert "importing" in info.value.message
    assert "boom at import" in info.value.message
    # A failed import is not cached: fixing the file makes it importable.
    (tmp_path / "boom.py").write_text("def f() -> str:\n    return 'fixed'\n")
    assert "t" in build_tools([PythonToolSpec(name="t", function="boom.py:f")], base_dir=tmp_path)


def test_module_whose_import_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module_name: str
) -> None:
    (tmp_path / f"{module_name}.py").write_text("raise ValueError('bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError) as info:
        build_tools([PythonToolSpec(name="t", function=f"{module_name}:f")])
    assert "tools[0] 't'" in info.value.message
    assert "bad config" in info.value.message


async def test_undeclared_python_tools_are_added() -> None:
    def plain(x: int) -> int:
        """Double it."""
        return 2 * x

    tools = build_tools([PythonToolSpec(name="search")], provided=[search, refund, plain])
    assert set(tools) == {"search", "refund_order", "plain"}
    assert tools["refund_order"] is refund
    assert isinstance(tools["plain"], FunctionTool)
    assert (await tools["plain"].call({"x": 4})).data == 8


def test_provided_non_tool_is_rejected() -> None:
    with pytest.raises(SpecError, match="is not a tool or a function"):
        build_tools([], provided=[42])  # type: ignore[list-item]


def test_http_tools_are_built_from_their_spec() -> None:
    spec = HttpToolSpec(
        kind="http",
        name="h",
        url="http://127.0.0.1/h",
        allowed_hosts=["127.0.0.1"],
        allowed_networks=["127.0.0.1/32"],
    )
    tools = build_tools([spec])
    assert isinstance(tools["h"], HttpTool)
    assert tools["h"].spec is spec


# --- tool names --------------------------------------------------------------------------------


def test_lambda_needs_a_name() -> None:
    with pytest.raises(SpecError) as info:
        build_tools([], provided=[lambda q: q])
    assert "tool name '<lambda>' (the function's name; pass name=...:" in info.value.message
    named = FunctionTool(lambda q: q, name="echo")
    assert named.name == "echo"


@pytest.mark.parametrize("name", ["orders.lookup", "", "x" * 65, "with space"])
def test_tool_names_the_openai_api_refuses(name: str) -> None:
    with pytest.raises(SpecError, match=f"tool name {name!r} is not valid"):
        tool(name=name)(lambda: None)


def test_user_tool_objects_need_valid_names_too() -> None:
    class Custom:
        name = "ns.tool"
        description = ""
        parameters: dict[str, Any] = {"type": "object", "properties": {}}
        side_effects = "read"
        scopes = ()
        timeout_s = 1.0

        async def call(self, arguments: dict[str, Any]) -> ToolResult:
            return ToolResult(content="")

    with pytest.raises(SpecError, match=r"tool name 'ns\.tool' is not valid"):
        build_tools([], provided=[Custom()])


def test_undecorated_function_from_a_spec_is_external(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(PLAIN_TOOLS)
    spec = PythonToolSpec(name="lookup", function="tools.py:lookup")
    assert build_tools([spec], base_dir=tmp_path)["lookup"].side_effects == "external"
