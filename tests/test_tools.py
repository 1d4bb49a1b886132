"""Tools: ``@tool`` function tools, declarative HTTP tools (against a real server on 127.0.0.1)
and ``build_tools``."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from fakes.http_server import Canned, Server
from tether.core import SpecError, ToolArgumentsError, ToolError
from tether.spec import HttpToolSpec, PythonToolSpec, ToolParameter, load_spec
from tether.tools import (
    FunctionTool,
    HttpTool,
    Tool,
    ToolResult,
    build_tools,
    definition_of,
    tool,
)
from tether.tools.http import MAX_RESPONSE_CHARS

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "support"

# --- a real HTTP server ------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


@pytest.fixture
def other_server() -> Iterator[Server]:
    with Server() as s:
        yield s


MakeHttp = Callable[..., HttpTool]


@pytest.fixture
async def make_http() -> AsyncIterator[MakeHttp]:
    """Build HttpTools from spec fields; every tool's client is closed afterwards."""
    made: list[HttpTool] = []

    def make(**fields: Any) -> HttpTool:
        fields.setdefault("name", "api")
        fields.setdefault("allowed_hosts", ["127.0.0.1"])
        t = HttpTool(HttpToolSpec(kind="http", **fields))
        made.append(t)
        return t

    yield make
    for t in made:
        await t.aclose()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- @tool: schema and metadata ----------------------------------------------------------------


class Address(BaseModel):
    city: str
    zip: str = ""


class Order(BaseModel):
    id: int
    items: list[str]


@tool
def search(query: str, limit: int = 5, exact: bool = False, tags: list[str] | None = None) -> str:
    """Search the catalogue.

    Matches titles and descriptions.

    Args:
        query: Words to look for.
        limit (int): Most results to return.
        exact: Match whole words only.

    Returns:
        Matching titles, one per line.
    """
    return f"{query}|{limit}|{exact}|{tags}"


@tool(name="refund_order", side_effects="write", scopes=["orders:write"], timeout_s=5)
def refund(order_id: int, amount: float) -> dict[str, Any]:
    """Refund an order."""
    return {"order_id": order_id, "amount": amount}


@tool
async def ship(address: Address, express: bool = False) -> Order:
    """Ship to an address."""
    return Order(id=7, items=[address.city, str(express)])


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


# --- HttpTool against a real server ------------------------------------------------------------


async def test_get_with_quoted_path_argument_and_query(server: Server, make_http: MakeHttp) -> None:
    t = make_http(
        url=server.url + "/items/{item}",
        parameters={
            "item": ToolParameter(),
            "q": ToolParameter(description="Search words"),
            "page": ToolParameter(type="integer", required=False),
            "fresh": ToolParameter(type="boolean", required=False),
        },
    )
    result = await t.call({"item": "a/b c?&d", "q": "x y", "page": "2", "fresh": True})
    (seen,) = server.requests
    assert seen.method == "GET"
    assert seen.path == "/items/a%2Fb%20c%3F%26d"
    assert seen.query == {"q": ["x y"], "page": ["2"], "fresh": ["true"]}
    assert seen.body == b""
    assert result.data == {
        "method": "GET",
        "path": "/items/a%2Fb%20c%3F%26d",
        "query": {"q": ["x y"], "page": ["2"], "fresh": ["true"]},
        "json": None,
    }
    assert json.loads(result.content) == result.data


async def test_optional_arguments_left_out_are_not_sent(
    server: Server, make_http: MakeHttp
) -> None:
    t = make_http(
        url=server.url + "/search",
        parameters={"q": ToolParameter(), "page": ToolParameter(type="integer", required=False)},
    )
    await t.call({"q": "boots"})
    assert server.requests[0].query == {"q": ["boots"]}


def test_http_tool_metadata_and_schema(make_http: MakeHttp) -> None:
    t = make_http(
        name="order_status",
        description="Order status.",
        url="http://127.0.0.1/orders/{order_id}",
        side_effects="external",
        scopes=["orders:read"],
        timeout_s=4,
        parameters={
            "order_id": ToolParameter(type="integer", description="The order id."),
            "verbose": ToolParameter(type="boolean", required=False),
        },
    )
    assert isinstance(t, Tool)
    assert (t.name, t.description, t.side_effects, t.scopes, t.timeout_s) == (
        "order_status",
        "Order status.",
        "external",
        ("orders:read",),
        4,
    )
    assert t.parameters["required"] == ["order_id"]
    assert t.parameters["additionalProperties"] is False
    order_id = t.parameters["properties"]["order_id"]
    assert order_id["type"] == "integer"
    assert order_id["description"] == "The order id."


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_body_methods_send_json(server: Server, make_http: MakeHttp, method: str) -> None:
    t = make_http(
        method=method,
        url=server.url + "/orders/{order_id}/notes",
        parameters={
            "order_id": ToolParameter(type="integer"),
            "text": ToolParameter(),
            "amount": ToolParameter(type="number"),
            "urgent": ToolParameter(type="boolean", required=False),
        },
    )
    result = await t.call({"order_id": "17", "text": "héllo", "amount": 2})
    (seen,) = server.requests
    assert seen.method == method
    assert seen.path == "/orders/17/notes"
    assert seen.query == {}
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {"text": "héllo", "amount": 2.0}
    assert result.data["json"] == {"text": "héllo", "amount": 2.0}


async def test_delete_sends_query_not_body(server: Server, make_http: MakeHttp) -> None:
    t = make_http(
        method="DELETE",
        url=server.url + "/orders/{order_id}",
        parameters={"order_id": ToolParameter(type="integer"), "reason": ToolParameter()},
    )
    await t.call({"order_id": 5, "reason": "dup"})
    (seen,) = server.requests
    assert (seen.method, seen.path, seen.query, seen.body) == (
        "DELETE",
        "/orders/5",
        {"reason": ["dup"]},
        b"",
    )


async def test_env_expansion_in_url_and_headers(
    server: Server, make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_API_BASE", server.url)
    monkeypatch.setenv("TEST_API_TOKEN", "s3cret-token")
    t = make_http(
        url="${TEST_API_BASE}/orders/{order_id}",
        headers={"Authorization": "Bearer ${TEST_API_TOKEN}", "X-Client": "tether"},
        parameters={"order_id": ToolParameter(type="integer")},
    )
    await t.call({"order_id": 1042})
    (seen,) = server.requests
    assert seen.path == "/orders/1042"
    assert seen.headers["authorization"] == "Bearer s3cret-token"
    assert seen.headers["x-client"] == "tether"
    # The secret is not part of what the model sees.
    assert "s3cret" not in json.dumps(definition_of(t).model_dump())


@pytest.mark.parametrize("where", ["url", "header"])
def test_missing_env_var_is_a_spec_error(
    make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.delenv("TEST_UNSET_VAR", raising=False)
    fields: dict[str, Any] = {"url": "http://127.0.0.1/x"}
    if where == "url":
        fields["url"] = "${TEST_UNSET_VAR}/x"
    else:
        fields["headers"] = {"Authorization": "Bearer ${TEST_UNSET_VAR}"}
    with pytest.raises(SpecError) as info:
        make_http(**fields)
    assert f"tool 'api' {where}" in info.value.message
    assert "environment variable TEST_UNSET_VAR is not set" in info.value.message
    assert info.value.hint is not None
    assert "TEST_UNSET_VAR" in info.value.hint


def test_url_argument_not_in_parameters(make_http: MakeHttp) -> None:
    # Checked by the spec itself, so a YAML spec gets file:line (see test_spec_http_url_fields).
    with pytest.raises(ValidationError, match=r"url uses \['order_id'\] which are not in 'param"):
        make_http(url="http://127.0.0.1/orders/{order_id}", parameters={"id": ToolParameter()})


async def test_host_not_allowed_is_refused_when_the_tool_is_built(
    server: Server, make_http: MakeHttp
) -> None:
    with pytest.raises(SpecError, match=r"host '127\.0\.0\.1' is not in allowed_hosts") as info:
        make_http(url=server.url + "/x", allowed_hosts=["api.example.com"])
    assert "api.example.com" in str(info.value)
    assert server.requests == []


async def test_path_argument_cannot_change_the_host(server: Server, make_http: MakeHttp) -> None:
    # The URL template puts an argument where the host goes; the host check still applies.
    t = make_http(
        url="http://{host}:" + str(server.port) + "/x",
        allowed_hosts=["localhost"],
        parameters={"host": ToolParameter()},
    )
    with pytest.raises(ToolError, match="not in allowed_hosts"):
        await t.call({"host": "127.0.0.1"})
    assert server.requests == []


async def test_allowed_hosts_are_case_insensitive(server: Server, make_http: MakeHttp) -> None:
    t = make_http(url=f"http://LOCALHOST:{server.port}/x", allowed_hosts=["LocalHost"])
    result = await t.call({})
    assert result.data["path"] == "/x"
    assert len(server.requests) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/file", "file:///etc/passwd"])
async def test_non_http_schemes_are_refused(make_http: MakeHttp, url: str) -> None:
    with pytest.raises(SpecError, match="url must be http or https"):
        make_http(url=url)


@pytest.mark.parametrize("status", [404, 500])
async def test_http_errors_carry_status_and_body(
    server: Server, make_http: MakeHttp, status: int
) -> None:
    server.routes["/orders/9"] = Canned(status, b'{"error": "order 9 not here"}' + b" " * 1000)
    t = make_http(
        url=server.url + "/orders/{order_id}",
        parameters={"order_id": ToolParameter(type="integer")},
    )
    with pytest.raises(ToolError) as info:
        await t.call({"order_id": 9})
    message = str(info.value)
    assert f"GET {server.url}/orders/{{order_id}}: HTTP {status}" in message
    assert '{"error": "order 9 not here"}' in message
    assert len(message) < 500  # the body is only a snippet


async def test_redirects_are_not_followed(
    server: Server, other_server: Server, make_http: MakeHttp
) -> None:
    server.routes["/moved"] = Canned(
        302, b"see elsewhere", {"Location": other_server.url + "/stolen"}
    )
    t = make_http(url=server.url + "/moved", allowed_hosts=["127.0.0.1"])
    with pytest.raises(ToolError, match="HTTP 302 redirect refused"):
        await t.call({})
    assert [r.path for r in server.requests] == ["/moved"]
    assert other_server.requests == []


async def test_dot_segments_cannot_climb_the_path(server: Server, make_http: MakeHttp) -> None:
    t = make_http(url=server.url + "/orders/{order_id}/details", parameters={"order_id": {}})
    for value in ("..", ".", "..."):
        with pytest.raises(ToolArgumentsError, match="not allowed in a URL path"):
            await t.call({"order_id": value})
    await t.call({"order_id": "../admin"})  # the slash is encoded, so this stays in place
    assert server.requests[-1].path == "/orders/..%2Fadmin/details"
    assert len(server.requests) == 1


async def test_secrets_from_the_environment_never_reach_messages(
    server: Server, make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-token")
    server.routes["/hook/s3cr3t-token"] = Canned(500, b"failed for token s3cr3t-token")
    t = make_http(
        url=server.url + "/hook/${HOOK_TOKEN}",
        headers={"Authorization": "Bearer ${HOOK_TOKEN}"},
    )
    with pytest.raises(ToolError) as info:
        await t.call({})
    assert "s3cr3t-token" not in str(info.value)
    assert "${HOOK_TOKEN}" in str(info.value) and "HTTP 500" in str(info.value)
    assert server.requests[-1].headers["authorization"] == "Bearer s3cr3t-token"


async def test_the_tool_timeout_applies_to_the_request(server: Server, make_http: MakeHttp) -> None:
    server.routes["/slow"] = Canned(200, b"late", delay_s=1.0)
    t = make_http(url=server.url + "/slow", timeout_s=0.2)
    with pytest.raises(ToolError, match=r"timed out after 0.2s"):
        await t.call({})


async def test_large_responses_are_capped(server: Server, make_http: MakeHttp) -> None:
    server.routes["/big"] = Canned(200, b"x" * 1_000_000)
    t = make_http(url=server.url + "/big")
    result = await t.call({})
    shown, note = result.content.split("\n")
    assert shown == "x" * MAX_RESPONSE_CHARS
    # The model is told the result was clipped, and how large it was (from Content-Length).
    assert note == (
        "[result clipped: the full result is 1,000,000 bytes; "
        "only the first 16,000 characters are shown]"
    )


async def test_connection_refused_is_a_tool_error(make_http: MakeHttp) -> None:
    port = closed_port()
    t = make_http(url=f"http://127.0.0.1:{port}/x", parameters={"q": ToolParameter()})
    with pytest.raises(ToolError) as info:
        await t.call({"q": "secret-query"})
    message = str(info.value)
    assert f"tool 'api': GET http://127.0.0.1:{port}/x failed" in message
    assert "secret-query" not in message  # the query string is left out of the error


async def test_json_response_is_parsed_and_text_is_not(server: Server, make_http: MakeHttp) -> None:
    server.routes["/json"] = Canned(
        200, b'{"status": "shipped", "n": [1]}', {"Content-Type": "application/json; charset=utf-8"}
    )
    server.routes["/text"] = Canned(200, b'{"looks": "like json"}', {"Content-Type": "text/plain"})
    server.routes["/badjson"] = Canned(200, b"{not json", {"Content-Type": "application/json"})
    json_result = await make_http(url=server.url + "/json").call({})
    assert json_result.data == {"status": "shipped", "n": [1]}
    assert json_result.content == '{"status": "shipped", "n": [1]}'
    text_result = await make_http(url=server.url + "/text").call({})
    assert text_result.data == '{"looks": "like json"}'
    bad_result = await make_http(url=server.url + "/badjson").call({})
    assert bad_result.data == "{not json"


async def test_long_responses_are_truncated(server: Server, make_http: MakeHttp) -> None:
    server.routes["/big"] = Canned(200, b"x" * (MAX_RESPONSE_CHARS + 500))
    result = await make_http(url=server.url + "/big").call({})
    assert result.content == "x" * MAX_RESPONSE_CHARS + (
        "\n[result clipped: the full result is 16,500 characters; "
        "only the first 16,000 characters are shown]"
    )


async def test_max_result_chars_sets_the_clip(server: Server, make_http: MakeHttp) -> None:
    server.routes["/big"] = Canned(200, b"y" * 200_000)
    result = await make_http(url=server.url + "/big", max_result_chars=100_000).call({})
    assert result.content.startswith("y" * 100_000 + "\n[result clipped: the full result is ")
    assert "200,000" in result.content


async def test_integer_parameter_validation_sends_nothing(
    server: Server, make_http: MakeHttp
) -> None:
    t = make_http(
        name="order_status",
        url=server.url + "/orders/{order_id}",
        parameters={"order_id": ToolParameter(type="integer")},
    )
    with pytest.raises(ToolArgumentsError) as info:
        await t.call({"order_id": "A-17"})
    assert "invalid arguments for tool 'order_status'" in str(info.value)
    assert "order_id: Input should be a valid integer" in str(info.value)
    with pytest.raises(ToolArgumentsError, match="order_id: Field required"):
        await t.call({})
    with pytest.raises(ToolArgumentsError, match="extra: Extra inputs are not permitted"):
        await t.call({"order_id": 1, "extra": 2})
    with pytest.raises(ToolArgumentsError, match="not valid JSON"):
        await t.call({"__raw__": "{order_id: 1"})
    assert server.requests == []


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
        kind="http", name="h", url="http://127.0.0.1/h", allowed_hosts=["127.0.0.1"]
    )
    tools = build_tools([spec])
    assert isinstance(tools["h"], HttpTool)
    assert tools["h"].spec is spec


async def test_example_spec_tools(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_URL", server.url)
    spec = load_spec(EXAMPLE_DIR / "agent.yaml")
    tools = build_tools(spec.tools, base_dir=EXAMPLE_DIR)
    assert list(tools) == ["kb_lookup", "order_status"]
    kb = await tools["kb_lookup"].call({"query": "shipping"})
    assert kb.content.startswith("Standard shipping takes 3-5 business days")
    order_status = tools["order_status"]
    assert isinstance(order_status, HttpTool)
    try:
        status = await order_status.call({"order_id": 1042})
        assert status.data["path"] == "/orders/1042"
        with pytest.raises(ToolArgumentsError, match="order_id"):
            await order_status.call({"order_id": "A-17"})
    finally:
        await order_status.aclose()
    assert [r.path for r in server.requests] == ["/orders/1042"]


async def test_sync_tool_raising_stop_iteration_is_an_error_not_a_hang() -> None:
    @tool(timeout_s=60)
    def exhausted() -> str:
        """Reads past the end of an iterator."""
        return next(iter([]))

    with pytest.raises(RuntimeError, match="StopIteration"):
        async with asyncio.timeout(10):
            await exhausted.call({})


async def test_query_in_the_url_template_is_kept_and_merged(
    server: Server, make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", "k-123")
    t = make_http(
        url=server.url + "/search?key=${API_KEY}&q={q}",
        parameters={"q": ToolParameter(), "page": ToolParameter(type="integer", required=False)},
    )
    await t.call({"q": "boots", "page": 2})
    assert server.requests[-1].query == {"key": ["k-123"], "q": ["boots"], "page": ["2"]}


async def test_env_values_are_not_template_fields(
    server: Server, make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASE_PATH", "/v1/{q}")
    t = make_http(url=server.url + "${BASE_PATH}/items/{q}", parameters={"q": ToolParameter()})
    await t.call({"q": "x"})
    # The braces from the environment stay literal (percent-encoded), not filled with "x".
    assert server.requests[-1].path == "/v1/%7Bq%7D/items/x"


async def test_percent_encoded_secrets_are_redacted_too(
    server: Server, make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "sk live/x")
    server.routes["/echo-error"] = Canned(404, b"not found: sk%20live%2Fx sk+live%2Fx")
    t = make_http(url=server.url + "/echo-error", headers={"X-Token": "${TOKEN}"})
    with pytest.raises(ToolError) as info:
        await t.call({})
    message = str(info.value)
    assert "sk%20live" not in message and "sk+live" not in message and "***" in message


async def test_a_given_client_cannot_turn_redirects_back_on(
    server: Server, other_server: Server
) -> None:
    server.routes["/moved"] = Canned(302, b"", {"Location": other_server.url + "/stolen"})
    async with httpx.AsyncClient(follow_redirects=True) as client:
        t = HttpTool(
            HttpToolSpec(
                kind="http", name="api", url=server.url + "/moved", allowed_hosts=["127.0.0.1"]
            ),
            client=client,
        )
        with pytest.raises(ToolError, match="redirect refused"):
            await t.call({})
    assert other_server.requests == []


# --- parameter names pydantic reserves, tool names, default side effects -----------------------


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


async def test_http_parameters_named_like_pydantic_attributes(
    server: Server, make_http: MakeHttp
) -> None:
    t = make_http(
        url=server.url + "/items/{model_config}",
        parameters={"model_config": ToolParameter(), "_page": ToolParameter(type="integer")},
    )
    await t.call({"model_config": "a", "_page": 2})
    (seen,) = server.requests
    assert (seen.path, seen.query) == ("/items/a", {"_page": ["2"]})


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


def test_side_effects_default_to_external() -> None:
    def plain(q: str) -> str:
        return q

    assert FunctionTool(plain).side_effects == "external"
    assert tool(plain).side_effects == "external"
    assert tool(scopes=["s"])(plain).side_effects == "external"
    assert tool(side_effects="read")(plain).side_effects == "read"
    spec = HttpToolSpec(kind="http", name="h", url="http://127.0.0.1/", allowed_hosts=["x"])
    assert spec.side_effects == "external"


def test_undecorated_function_from_a_spec_is_external(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(PLAIN_TOOLS)
    spec = PythonToolSpec(name="lookup", function="tools.py:lookup")
    assert build_tools([spec], base_dir=tmp_path)["lookup"].side_effects == "external"


# --- HTTP tools: optional parameters -----------------------------------------------------------


def test_optional_parameter_in_the_url_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"url uses optional parameters \['item_id'\]"):
        HttpToolSpec(
            kind="http",
            name="t",
            url="http://127.0.0.1/items/{item_id}",
            allowed_hosts=["127.0.0.1"],
            parameters={"item_id": ToolParameter(required=False)},
        )


async def test_optional_query_parameter_is_omitted_when_absent(
    server: Server, make_http: MakeHttp
) -> None:
    t = make_http(
        url=server.url + "/items/{item_id}?v=1",
        parameters={
            "item_id": ToolParameter(type="integer"),
            "page": ToolParameter(type="integer", required=False),
        },
    )
    await t.call({"item_id": 7})
    await t.call({"item_id": 7, "page": None})
    await t.call({"item_id": 7, "page": 3})
    assert [(s.path, s.query) for s in server.requests] == [
        ("/items/7", {"v": ["1"]}),
        ("/items/7", {"v": ["1"]}),
        ("/items/7", {"v": ["1"], "page": ["3"]}),
    ]


# --- hints for easy mistakes in HTTP tools -----------------------------------------------------


def test_an_empty_env_base_url_names_the_variable(
    make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDER_API_URL", "")
    with pytest.raises(SpecError) as info:
        make_http(url="${ORDER_API_URL}/orders/{id}", parameters={"id": ToolParameter()})
    assert info.value.message == (
        "tool 'api' url: environment variable ORDER_API_URL is set but empty"
    )
    assert info.value.hint == "export ORDER_API_URL=... before running the agent"


def test_a_bad_url_after_expansion_names_the_variables(
    make_http: MakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDER_API_HOST", "127.0.0.1:8080")  # the scheme is missing
    with pytest.raises(SpecError) as info:
        make_http(url="${ORDER_API_HOST}/orders")
    assert "url must be http or https" in info.value.message
    assert "(after ${ORDER_API_HOST} expanded)" in info.value.message


def test_allowed_hosts_with_a_port_is_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(
        "name: a\n"
        "model: {provider: scripted, name: m, script: s.yaml}\n"
        "tools:\n"
        "  - name: api\n"
        "    kind: http\n"
        "    url: http://127.0.0.1:8080/x\n"
        "    allowed_hosts: ['127.0.0.1:8080']\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "agent.yaml")
    assert f"{tmp_path / 'agent.yaml'}:7: tools[0].allowed_hosts:" in info.value.message
    assert "allowed_hosts takes host names without ports" in info.value.message
    assert "write '127.0.0.1'" in info.value.message


@pytest.mark.parametrize("host", ["[::1]", "https://api.example.com", ""])
def test_allowed_hosts_takes_bare_host_names(host: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        HttpToolSpec(kind="http", name="a", url="http://127.0.0.1/", allowed_hosts=[host])
