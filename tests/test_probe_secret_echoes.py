"""Secrets echoed back the way real servers write them: PHP's ``json_encode`` escapes ``/`` as
``\\/``, Go's ``encoding/json`` writes ``&<>`` as ``\\u0026`` and friends, a form-decoding
server turns the ``+`` of a base64 key in the query into a space, and some encoders write
percent escapes in lower case. None of these may reach the model."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.http_server import Canned, Server
from tether.spec import HttpToolSpec
from tether.tools import HttpTool, ToolResult


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


async def call_once(**fields: Any) -> ToolResult:
    tool = HttpTool(HttpToolSpec(kind="http", name="api", allowed_hosts=["127.0.0.1"], **fields))
    try:
        return await tool.call({})
    finally:
        await tool.aclose()


async def test_a_php_style_json_echo_of_a_token_with_slashes_is_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"k/{uuid.uuid4().hex}/x"
    monkeypatch.setenv("TOKEN", token)
    php = json.dumps({"error": f"token {token} expired"}).replace("/", "\\/")
    server.routes["/php"] = Canned(200, php.encode(), {"Content-Type": "application/json"})
    result = await call_once(url=server.url + "/php", headers={"Authorization": "Bearer ${TOKEN}"})
    assert uuid.UUID(token[2:-2]).hex not in result.content, result.content
    assert result.content == '{"error": "token *** expired"}'


async def test_a_go_style_html_safe_json_echo_is_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"a&b<{uuid.uuid4().hex}>"
    monkeypatch.setenv("TOKEN", token)
    go = json.dumps(token)[1:-1]
    go = go.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    server.routes["/go"] = Canned(200, f'{{"key":"{go}"}}'.encode())
    result = await call_once(url=server.url + "/go", headers={"X-Key": "${TOKEN}"})
    assert result.content == '{"key":"***"}'


async def test_a_base64_query_key_echoed_form_decoded_is_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The echo server decodes the query as a form does: the '+' of the key comes back a space.
    key = f"Zm9v+YmFy/{uuid.uuid4().hex}=="
    monkeypatch.setenv("QKEY", key)
    result = await call_once(url=server.url + "/echo?key=${QKEY}")
    assert server.requests[-1].query["key"] == [key.replace("+", " ")]
    assert key.split("/")[1] not in result.content, result.content


async def test_lower_case_percent_escapes_are_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"t/{uuid.uuid4().hex}:x"
    monkeypatch.setenv("TOKEN", token)
    lower = token.replace("/", "%2f").replace(":", "%3a")
    server.routes["/lower"] = Canned(200, f"next=/x?token={lower}".encode())
    result = await call_once(url=server.url + "/lower", headers={"X-Token": "${TOKEN}"})
    assert result.content == "next=/x?token=***"
