"""OpenTelemetry out: an agent's spans go to its store and, over OTLP/HTTP, to a collector on
127.0.0.1 (Tether's own ``/v1/traces`` on a second store), through Tether's own tracer
provider; the application's global provider is untouched."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fakes.server import serving
from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import Agent, ScriptedModel, tool
from tether.core import TetherError
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role
from tether.trace import writer_for
from tether.trace.otlp_export import (
    ENDPOINT_ENV,
    HEADERS_ENV,
    OtlpExportSink,
    otlp_value,
    with_otlp_export,
)


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value-of-{key}"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A collector on 127.0.0.1 (Tether's server over its own store): its URL and an agent
    key, and a reader key."""
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    access = AccessStore(url)
    agent_key = access.create_key("default", Role.AGENT)[1]
    viewer_key = access.create_key("default", Role.VIEWER)[1]
    with serving(create_app(ServerConfig(database_url=url))) as base:
        yield base, f"{agent_key} {viewer_key}"


def _collected(base: str, viewer: str, run_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {viewer}"}
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        while True:
            answer = c.get(f"/api/v1/runs/{run_id}")
            if answer.status_code == 200 and answer.json()["run"]["status"] != "running":
                detail: dict[str, Any] = answer.json()
                return detail
            if time.monotonic() > deadline:
                raise AssertionError(f"the collector never got run {run_id}: {answer.text}")
            time.sleep(0.05)


async def test_agent_spans_reach_the_collector_and_the_store(
    sqlite_url: str, collector: tuple[str, str]
) -> None:
    base, keys = collector
    agent_key, viewer_key = keys.split()
    app_provider = TracerProvider()
    app_spans = InMemorySpanExporter()
    app_provider.add_span_processor(SimpleSpanProcessor(app_spans))
    otel_trace.set_tracer_provider(app_provider)  # the application's own
    sink = OtlpExportSink(
        writer_for(sqlite_url), base, headers={"Authorization": f"Bearer {agent_key}"}
    )
    model = ScriptedModel(
        [{"tool_calls": [{"name": "lookup", "arguments": {"key": "a"}}]}, {"text": "done"}],
        name="gpt-4.1-mini",
    )
    agent = Agent(make_spec(), model=model, tools=[lookup], trace=sink)
    result = await agent.run("find a")
    assert result.ok
    assert sink.flush(30) and sink.last_export_flushed
    sink.shutdown()

    run, spans, _ = trace_of(sqlite_url, result.run_id)  # the store has it all
    assert run.status == "completed" and len(spans) == 4
    detail = _collected(base, viewer_key, result.run_id)  # and so has the collector
    got = {s["span_id"]: s for s in detail["spans"]}
    assert set(got) == {s.span_id for s in spans}  # same ids, same tree
    for s in spans:
        assert got[s.span_id]["parent_id"] == s.parent_id
        assert got[s.span_id]["kind"] == s.kind
    chat = next(s for s in detail["spans"] if s["kind"] == "model")
    a = chat["attributes"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4.1-mini"
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.input.messages"][1]["parts"][0]["content"] == "find a"
    assert detail["run"]["input_tokens"] == run.input_tokens
    assert detail["run"]["cost_usd"] == pytest.approx(run.cost_usd)
    # The application's provider saw none of Tether's spans (FastAPI, in this process for the
    # collector, reports its own to it), and is still the global one.
    seen = app_spans.get_finished_spans()
    assert not [s.name for s in seen if format(s.context.trace_id, "032x") == run.trace_id]
    assert not [s.name for s in seen if s.name.startswith(("chat", "execute_tool", "invoke"))]
    assert otel_trace.get_tracer_provider() is app_provider


def test_structured_values_are_sent_as_json_text() -> None:
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert otlp_value(messages) == '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert otlp_value(["stop"]) == ["stop"]
    assert otlp_value(3) == 3 and otlp_value("x") == "x"
    assert otlp_value({"a": 1}) == '{"a":1}'


def test_the_endpoint_setting_wraps_the_writer(sqlite_url: str) -> None:
    writer = writer_for(sqlite_url)
    assert with_otlp_export(writer, {}) is writer
    wrapped = with_otlp_export(
        writer, {ENDPOINT_ENV: "http://127.0.0.1:9", HEADERS_ENV: "x-api-key=abc, bad"}
    )
    assert isinstance(wrapped, OtlpExportSink) and wrapped.inner is writer
    assert wrapped.exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    assert with_otlp_export(writer, {ENDPOINT_ENV: "http://127.0.0.1:9"}) is wrapped
    wrapped.shutdown()


async def test_the_audit_log_is_kept_while_spans_are_exported(
    tmp_path: Path, sqlite_url: str
) -> None:
    """With ``TETHER_OTLP_ENDPOINT`` set, the exporting sink had no ``audit``: every decision,
    policy load and approved call's settlement was left out of the audit log, silently."""
    from test_approvals import agent_dir, audit_entries, refunds_made

    sink = OtlpExportSink(writer_for(sqlite_url), "http://127.0.0.1:9")  # a collector down
    agent = Agent.from_yaml(agent_dir(tmp_path), trace=sink)
    paused = await agent.run("please refund 500 on 7")
    assert paused.status == "paused"
    agent.approve(paused.run_id, by="alice")
    resumed = await agent.resume(paused.run_id)
    with pytest.raises(TetherError, match="resumed already"):  # once, and the call ran once
        await agent.resume(paused.run_id)
    await agent.aclose()
    sink.shutdown()
    assert resumed.outcome == "final_answer" and refunds_made(tmp_path) == ["issue_refund 7 500"]
    entries = audit_entries(sqlite_url)
    assert [e.kind for e in entries] == [
        "policy_load",
        "decision",
        "approval",
        "run_resumed",
        "decision",
    ]
    assert entries[-1].run_id == resumed.run_id and entries[-1].details["approval"]["by"] == "alice"


class _ExportStuck:
    """A sink that also exports elsewhere, wrapping the writer as ``OtlpExportSink`` does,
    whose export cannot be flushed now (a collector down: the exporter retries for seconds)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        for name in ("run_started", "span", "event", "checkpoint", "run_ended", "audit"):
            setattr(self, name, getattr(inner, name))

    def flush(self, timeout: float | None = None) -> bool:
        raise AssertionError("waited for the export")


async def test_approving_and_resuming_wait_for_the_store_not_the_export(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Approving a call (``Agent.approve``) took 8 s with the collector down: it flushed the
    exporting sink, export included, where only the store's records matter."""
    from test_approvals import agent_dir, refunds_made

    agent = Agent.from_yaml(agent_dir(tmp_path), trace=_ExportStuck(writer_for(sqlite_url)))
    paused = await agent.run("please refund 500 on 7")
    agent.approve(paused.run_id, by="alice")
    resumed = await agent.resume(paused.run_id)
    await agent.aclose()
    assert resumed.outcome == "final_answer" and refunds_made(tmp_path) == ["issue_refund 7 500"]


async def test_headers_are_read_as_opentelemetry_reads_them(
    sqlite_url: str, collector: tuple[str, str]
) -> None:
    """``TETHER_OTLP_HEADERS`` in OpenTelemetry's format (values percent-encoded, as
    ``OTEL_EXPORTER_OTLP_HEADERS``): ``Bearer%20<key>`` was sent as written, and the
    collector refused every export (401)."""
    base, keys = collector
    agent_key, viewer_key = keys.split()
    sink = with_otlp_export(
        writer_for(sqlite_url),
        {ENDPOINT_ENV: base, HEADERS_ENV: f"x-team=a%2Cb, Authorization=Bearer%20{agent_key}"},
    )
    assert isinstance(sink, OtlpExportSink)
    agent = Agent(make_spec(), model=ScriptedModel([{"text": "done"}]), trace=sink)
    result = await agent.run("hi")
    assert sink.flush(30) and sink.last_export_flushed
    sink.shutdown()
    assert _collected(base, viewer_key, result.run_id)["run"]["status"] == "completed"
