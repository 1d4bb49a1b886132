"""HTTP clients survive ``run_sync`` called again and again (a new event loop each time)."""

from __future__ import annotations

import gc
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tether import Agent, AgentSpec, ModelConfig, ScriptedModel
from tether.spec import HttpToolSpec, ToolParameter


class KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # pooled connections stay open between requests

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def keepalive_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetching_agent(base_url: str) -> Agent:
    """An agent whose one tool fetches ``/items/<the user's input>`` over HTTP."""
    spec = AgentSpec(
        name="fetcher",
        model=ModelConfig(provider="scripted", name="m", script="unused.yaml"),
        tools=[
            HttpToolSpec(
                kind="http",
                name="fetch",
                url=base_url + "/items/{item}",
                allowed_hosts=["127.0.0.1"],
                allowed_networks=["127.0.0.1/32"],
                parameters={"item": ToolParameter(type="string")},
                timeout_s=10,
            )
        ],
    )
    model = ScriptedModel(
        [{"tool_calls": [{"name": "fetch", "arguments": {"item": "{input}"}}]}, {"text": "ok"}]
    )
    return Agent(spec, model=model, trace=False)


def test_http_tool_works_across_run_sync_calls(keepalive_url: str) -> None:
    agent = fetching_agent(keepalive_url)
    gc.collect()  # earlier tests' garbage is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for i in range(3):
            result = agent.run_sync(f"n{i}")
            tool_result = next(m.content for m in result.state.messages if m.role == "tool")
            assert result.ok and json.loads(tool_result) == {"path": f"/items/n{i}"}
        gc.collect()
    # run_sync closes the clients it opened: no socket is left for the garbage collector.
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_run_sync_from_several_threads_at_once(keepalive_url: str) -> None:
    agent = fetching_agent(keepalive_url)
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(5):
            result = agent.run_sync(f"t{n}-{i}")
            tool_result = next(m.content for m in result.state.messages if m.role == "tool")
            if json.loads(tool_result) != {"path": f"/items/t{n}-{i}"}:
                errors.append(tool_result)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
