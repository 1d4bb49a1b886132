"""Declarative HTTP tools, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fakes.http_server import Canned, Server
from tether.core import SpecError, ToolArgumentsError, ToolError
from tether.spec import HttpToolSpec, ToolParameter, load_spec
from tether.tools import HttpTool, Tool, build_tools, definition_of
from tether.tools.http import MAX_RESPONSE_CHARS

# --- a real HTTP server ------------------------------------------------------------------------


EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "support"


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
        # The test servers listen on 127.0.0.1, a loopback address: reached on purpose.
        fields.setdefault("allowed_networks", ["127.0.0.1/32"])
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


# --- the example spec, URL templates, redirects, parameter names -------------------------------


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
