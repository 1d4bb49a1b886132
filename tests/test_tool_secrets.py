"""Secrets an HTTP tool sends (header values, ``${ENV}`` values) never come back through its
results: not to the model, not into the stored trace, not into the answer."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from fakes.http_server import Canned, Server
from tether import Agent
from tether.spec import HttpToolSpec
from tether.store import Store
from tether.tools import HttpTool, ToolResult
from tether.trace import close_writers, semconv, writer_for


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


async def call_once(**fields: Any) -> ToolResult:
    """One call of an HTTP tool on 127.0.0.1 built from these spec fields."""
    tool = HttpTool(
        HttpToolSpec(
            kind="http",
            name="api",
            allowed_hosts=["127.0.0.1"],
            allowed_networks=["127.0.0.1/32"],
            **fields,
        )
    )
    try:
        return await tool.call({})
    finally:
        await tool.aclose()


def _write_agent(tmp_path: Path, server: Server) -> Path:
    (tmp_path / "script.yaml").write_text(
        textwrap.dedent(
            """\
            steps:
              - tool_calls: [{name: whoami, arguments: {}}]
              - text: "The API says: {result:whoami}"
            """
        )
    )
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: echoer
            model: {{provider: scripted, name: gpt-4.1-mini, script: script.yaml}}
            tools:
              - name: whoami
                kind: http
                url: {server.url}/me?key=${{ECHO_QUERY_KEY}}
                allowed_hosts: [127.0.0.1]
                allowed_networks: [127.0.0.1/32]
                headers:
                  Authorization: "Bearer ${{ECHO_TOKEN}}"
                  X-Api-Key: literal-key-0123456789
            """
        )
    )
    return spec


async def test_an_api_echoing_the_secrets_leaks_none_of_them(
    server: Server, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A quote makes the JSON-escaped form differ from the value itself.
    token = f'tok/{uuid.uuid4().hex}+"q"'
    query_key = f"qk-{uuid.uuid4().hex}"
    literal = "literal-key-0123456789"
    monkeypatch.setenv("ECHO_TOKEN", token)
    monkeypatch.setenv("ECHO_QUERY_KEY", query_key)
    server.echo_headers = True
    spec_dir = tmp_path / "agent"
    spec_dir.mkdir()
    agent = Agent.from_yaml(_write_agent(spec_dir, server), trace=sqlite_url)
    async with agent:
        result = await agent.run("who am I?")

    # The server did get the secrets, and echoed them back.
    seen = server.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {token}"
    assert seen.query["key"] == [query_key]
    assert result.outcome == "final_answer"
    assert "***" in (result.output or "")

    secrets = [token, json.dumps(token)[1:-1], query_key, literal]
    in_memory = json.dumps(
        {"output": result.output, "state": result.state.to_json()}, ensure_ascii=False
    )
    for secret in secrets:
        assert secret not in in_memory

    # The stored trace: the tool span, the chat spans' input messages, the run's output.
    writer_for(sqlite_url).flush()
    store = Store(sqlite_url)
    spans = store.get_spans(result.run_id)
    tool_span = next(s for s in spans if s.kind == "tool")
    assert "***" in tool_span.attributes[semconv.GEN_AI_TOOL_CALL_RESULT]
    chats = [s for s in spans if s.kind == "model"]
    assert len(chats) == 2
    stored = json.dumps(
        {
            "run": store.get_run(result.trace_id).output,
            "spans": [s.attributes for s in spans],
            "events": [e.attributes for e in store.get_events(result.run_id)],
        },
        ensure_ascii=False,
    )
    for secret in secrets:
        assert secret not in stored
    # Nowhere in the database files or the crash journal (in TETHER_HOME) either.
    close_writers()
    assert_not_on_disk(secrets, tmp_path, spec_dir)


def assert_not_on_disk(secrets: list[str], folder: Path, spec_dir: Path) -> None:
    """No file under ``folder`` (but the spec's own) holds any of ``secrets``."""
    written = [p for p in folder.rglob("*") if p.is_file() and spec_dir not in p.parents]
    assert any(p.name == "tether.db" for p in written)
    for path in written:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, path


async def test_every_encoding_of_a_header_secret_is_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = 'sk live/x"y'
    monkeypatch.setenv("TOKEN", token)
    forms = [token, quote(token, safe=""), quote_plus(token), json.dumps(token)[1:-1]]
    server.routes["/forms"] = Canned(200, " | ".join(forms).encode())
    result = await call_once(url=server.url + "/forms", headers={"X-Token": "${TOKEN}"})
    assert result.content == " | ".join(["***"] * 4)


async def test_a_secret_cut_by_the_clip_is_not_half_kept(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "tok-" + uuid.uuid4().hex
    monkeypatch.setenv("TOKEN", token)
    # The clip (at 1000 characters) falls 10 characters into the token.
    server.routes["/long"] = Canned(200, b"x" * 990 + token.encode() + b"y" * 100)
    result = await call_once(
        url=server.url + "/long",
        headers={"Authorization": "Bearer ${TOKEN}"},
        max_result_chars=1000,
    )
    assert token[:10] not in result.content
    assert result.content.startswith("x" * 990 + "***")
    assert "[result clipped: the full result is 1,093 characters" in result.content


async def test_a_bare_base_url_from_the_environment_is_not_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Links back to the API are not secrets; a base URL with a path or user info may be.
    monkeypatch.setenv("API_BASE", server.url)
    server.routes["/orders/1"] = Canned(200, f'{{"next": "{server.url}/orders/2"}}'.encode())
    result = await call_once(url="${API_BASE}/orders/1")
    assert result.content == f'{{"next": "{server.url}/orders/2"}}'


def _php(text: str) -> str:  # PHP's json_encode writes '/' as '\/'
    return json.dumps(text)[1:-1].replace("/", "\\/")


def _go(text: str) -> str:  # Go's encoding/json writes '&', '<', '>' as \u0026, \u003c, \u003e
    escaped = json.dumps(text)[1:-1]
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        escaped = escaped.replace(char, escape)
    return escaped


def _lower_percent(text: str) -> str:
    return quote(text, safe="").replace("%2F", "%2f").replace("%3A", "%3a")


@pytest.mark.parametrize(
    ("token", "render"),
    [("k/{}/x", _php), ("a&b<{}>", _go), ("t/{}:x", _lower_percent)],
    ids=["php-json", "go-json", "lower-case-percent"],
)
async def test_echoes_as_real_servers_write_them_are_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch, token: str, render: Any
) -> None:
    token = token.format(uuid.uuid4().hex)
    monkeypatch.setenv("TOKEN", token)
    server.routes["/echo"] = Canned(200, f"said: {render(token)}".encode())
    result = await call_once(url=server.url + "/echo", headers={"X-Token": "${TOKEN}"})
    assert result.content == "said: ***"


async def test_a_base64_query_key_echoed_form_decoded_is_redacted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The echo server decodes the query as a form does: the '+' of the key comes back a space.
    key = f"Zm9v+YmFy/{uuid.uuid4().hex}=="
    monkeypatch.setenv("QKEY", key)
    result = await call_once(url=server.url + "/echo?key=${QKEY}")
    assert server.requests[-1].query["key"] == [key.replace("+", " ")]
    assert key.split("/")[1] not in result.content, result.content
