"""OpenTelemetry in: ``POST /v1/traces`` over real HTTP on 127.0.0.1, from the real
opentelemetry-sdk exporter in a child process, from OpenInference-shaped JSON, and the
error answers (400, 401, 403, 413, 415) and partial success."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from fakes.otlp import NS, json_request, json_span
from fakes.server import serving
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role

_span, _request = json_span, json_request


@dataclass
class Site:
    url: str
    keys: dict[str, str]

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture
def site(sqlite_url: str) -> Iterator[Site]:
    access = AccessStore(sqlite_url)
    access.create_project("other")
    keys = {r.value: access.create_key("default", r)[1] for r in Role}
    keys["other_agent"] = access.create_key("other", Role.AGENT)[1]
    keys["other_viewer"] = access.create_key("other", Role.VIEWER)[1]
    with serving(create_app(ServerConfig(database_url=sqlite_url))) as url:
        yield Site(url, keys)


def _said(answer: httpx.Response) -> str:
    """The ``message`` of an OTLP error answer's ``google.rpc.Status``, protobuf or JSON."""
    from google.rpc.status_pb2 import Status

    if answer.headers["content-type"] == "application/x-protobuf":
        return str(Status.FromString(answer.content).message)
    return str(answer.json()["message"])


def _wait_runs(c: httpx.Client, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        runs: list[dict[str, Any]] = c.get("/api/v1/runs").json()["runs"]
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.05)


EXPORTER = textwrap.dedent(
    """
    import json, sys
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    url, key = sys.argv[1], sys.argv[2]
    exporter = OTLPSpanExporter(
        endpoint=url + "/v1/traces",
        headers={"Authorization": "Bearer " + key},
        compression=Compression.Gzip,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("invoke_agent support") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("gen_ai.agent.name", "support")
        for turn in range(2):
            with tracer.start_as_current_span("chat gpt-4.1-mini") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                chat.set_attribute("gen_ai.request.model", "gpt-4.1-mini")
                chat.set_attribute("gen_ai.usage.input_tokens", 1000)
                chat.set_attribute("gen_ai.usage.output_tokens", 100)
                question = {"type": "text", "content": "where is order 7?"}
                chat.set_attribute("gen_ai.input.messages", json.dumps(
                    [{"role": "user", "parts": [question]}]))
                chat.set_attribute("gen_ai.output.messages", json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "shipped"}]}]))
        with tracer.start_as_current_span("execute_tool lookup") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "lookup")
            tool.set_attribute("gen_ai.tool.call.id", "call_1")
            tool.set_attribute("gen_ai.tool.call.arguments", '{"order": 7}')
            tool.set_status(Status(StatusCode.ERROR, "timeout"))
    print("flushed", provider.force_flush())
    provider.shutdown()
    """
)


def test_real_sdk_exporter_in_a_child_process(site: Site) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXPORTER, site.url, site.keys["agent"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to export" not in done.stderr, done.stderr
    with site.client("viewer") as c:
        runs = _wait_runs(c, 1)
        assert len(runs) == 1, runs  # children arrived first, each alone: still one run
        detail = c.get(f"/api/v1/runs/{runs[0]['run_id']}").json()
    run = detail["run"]
    assert run["agent"] == "support"
    assert run["status"] == "completed"
    assert run["input_tokens"] == 2000 and run["output_tokens"] == 200
    assert run["cost_usd"] and run["cost_usd"] > 0  # priced by the shipped table
    assert run["tool_calls"] == 1 and run["turns"] == 2
    # The agent span states no input or output (the SDK's seldom does): the run's are its
    # first model call's question and its last one's reply, not empty.
    assert run["input"] == "where is order 7?" and run["output"] == "shipped"
    kinds = sorted(s["kind"] for s in detail["spans"])
    assert kinds == ["agent", "model", "model", "tool"]
    chat = next(s for s in detail["spans"] if s["kind"] == "model")
    messages = chat["attributes"]["gen_ai.input.messages"]
    assert messages[0]["parts"][0]["content"] == "where is order 7?"
    assert any(e["name"] == "tether.tool.error" for e in detail["events"])
    with site.client("other_viewer") as c:  # another project sees none of it
        assert c.get("/api/v1/runs").json()["runs"] == []


OPENINFERENCE = _request(
    _span(
        "a000000000000001",
        None,
        "AgentRun",
        {
            "openinference.span.kind": "AGENT",
            "agent.name": "rag-agent",
            "input.value": "What is our refund policy?",
            "output.value": "30 days.",
        },
    ),
    _span(
        "a000000000000002",
        "a000000000000001",
        "ChatCompletion",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4.1-mini",
            "llm.token_count.prompt": 500,
            "llm.token_count.completion": 50,
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Answer from the docs.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "What is our refund policy?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "30 days.",
        },
    ),
    _span(
        "a000000000000003",
        "a000000000000001",
        "search_docs",
        {
            "openinference.span.kind": "TOOL",
            "tool.name": "search_docs",
            "input.value": '{"q": "refund"}',
            "output.value": "Refunds within 30 days.",
        },
    ),
)


def test_openinference_json_is_mapped(site: Site) -> None:
    with site.client("developer") as c:
        answer = c.post("/v1/traces", json=OPENINFERENCE)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {}  # no partial_success: all taken
        runs = c.get("/api/v1/runs").json()["runs"]
        assert len(runs) == 1
        detail = c.get(f"/api/v1/runs/{runs[0]['run_id']}").json()
    run = detail["run"]
    assert run["run_id"] == "a000000000000001"
    assert run["agent"] == "rag-agent"
    assert run["input"] == "What is our refund policy?" and run["output"] == "30 days."
    assert run["input_tokens"] == 500 and run["output_tokens"] == 50
    spans = {s["span_id"]: s for s in detail["spans"]}
    llm = spans["a000000000000002"]
    assert llm["kind"] == "model"
    a = llm["attributes"]
    assert a["gen_ai.request.model"] == "gpt-4.1-mini"
    assert a["gen_ai.usage.input_tokens"] == 500
    assert [m["role"] for m in a["gen_ai.input.messages"]] == ["system", "user"]
    assert a["gen_ai.output.messages"][0]["parts"][0]["content"] == "30 days."
    assert not any(k.startswith("llm.input_messages.") for k in a)
    assert a["tether.cost.usd"] > 0
    tool = spans["a000000000000003"]
    assert tool["kind"] == "tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "search_docs"
    assert tool["attributes"]["gen_ai.tool.call.arguments"] == '{"q": "refund"}'


def test_resending_a_batch_stores_nothing_twice(site: Site) -> None:
    with site.client("agent") as c:
        for _ in range(2):
            assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200
    with site.client("viewer") as c:
        runs = c.get("/api/v1/runs").json()["runs"]
        assert len(runs) == 1
        assert len(c.get(f"/api/v1/runs/{runs[0]['run_id']}").json()["spans"]) == 3


def test_partial_success_counts_and_says_why(site: Site) -> None:
    body = _request(
        _span("b000000000000001", None, "ok", {"gen_ai.operation.name": "chat"}),
        _span("0000000000000000", None, "zero id", {}),
        _span("b000000000000003", None, "bad trace", {}, trace="xyz"),
        _span("b000000000000004", None, "backwards", {}, start=NS, end=NS - 1),
        _span("b00000000000000g", None, "not hex", {}),
    )
    with site.client("agent") as c:
        answer = c.post("/v1/traces", json=body)
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "4"
    assert "spanId must be 8 bytes" in partial["errorMessage"]
    assert "traceId" in partial["errorMessage"]
    # An id that is not hex is said to be so, not only "got 1 bytes".
    assert "traceId 'xyz' is not hexadecimal" in partial["errorMessage"]
    assert "spanId 'b00000000000000g' is not hexadecimal" in partial["errorMessage"]
    assert "before startTimeUnixNano" in partial["errorMessage"]
    with site.client("viewer") as c:
        assert [r["run_id"] for r in c.get("/api/v1/runs").json()["runs"]] == ["b000000000000001"]


def test_a_span_protobuf_cannot_hold_is_refused_alone_not_the_whole_json_batch(
    site: Site,
) -> None:
    """OTLP/JSON can carry what protobuf cannot: an integer past 64 bits, a time that is no
    number, attributes that are not a list. One such span answered 400 and lost the whole
    batch; now that span is refused with the reason (``partial_success``) and the rest are
    stored."""
    good = _span("e000000000000001", None, "root", {"gen_ai.operation.name": "invoke_agent"})
    child = _span("e000000000000002", "e000000000000001", "tool", {"n": 7})
    huge = _span("e000000000000003", "e000000000000001", "huge", {"n": 1})
    huge["attributes"][0]["value"]["intValue"] = "99999999999999999999"
    late = _span("e000000000000004", "e000000000000001", "late", {})
    late["startTimeUnixNano"] = "soon"
    flat = _span("e000000000000005", "e000000000000001", "flat", {})
    flat["attributes"] = "n=1"
    body = _request(good, huge, child, late, flat)
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].append(5)
    with site.client("agent") as c:
        answer = c.post("/v1/traces", json=body)
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "4"
    said = partial["errorMessage"]
    assert "span 2 of scope 1 of resource 1" in said and "99999999999999999999" in said
    assert "soon" in said
    with site.client("viewer") as c:
        (run,) = _wait_runs(c, 1)
        spans = c.get(f"/api/v1/runs/{run['run_id']}").json()["spans"]
    assert sorted(s["span_id"] for s in spans) == ["e000000000000001", "e000000000000002"]
    with site.client("agent") as c:  # a resource protobuf cannot hold: its spans go with it
        bad_resource = _request(_span("e000000000000006", None, "x", {}))
        bad_resource["resourceSpans"][0]["resource"]["attributes"] = 5
        bad_resource["resourceSpans"].append(
            _request(_span("e000000000000007", None, "y", {}))["resourceSpans"][0]
        )
        answer = c.post("/v1/traces", json=bad_resource)
        assert answer.status_code == 200, answer.text
        assert answer.json()["partialSuccess"]["rejectedSpans"] == "1"
        assert "resource 1" in answer.json()["partialSuccess"]["errorMessage"]
        # Not a request at all: still 400, with the reason.
        answer = c.post("/v1/traces", json={"resourceSpans": 5})
        assert answer.status_code == 400
        assert "resourceSpans" in _said(answer)


def test_a_lone_surrogate_escape_is_replaced_and_said_not_the_whole_request_refused(
    site: Site,
) -> None:
    """``json.loads`` reads ``"\\ud800"`` as a lone surrogate and protobuf refuses it: one such
    escape in one attribute answered 400 and lost the whole batch. Now it becomes U+FFFD,
    every span is stored, and ``partial_success`` says so (a warning: none rejected)."""
    body = _request(
        _span("c000000000000001", None, "root", {"gen_ai.operation.name": "invoke_agent"}),
        _span("c000000000000002", "c000000000000001", "tool", {"note": "PLACEHOLDER"}),
    )
    text = json.dumps(body).replace("PLACEHOLDER", "a\\ud800b \\ud83d\\ude00")
    with site.client("agent") as c:
        answer = c.post("/v1/traces", content=text, headers={"Content-Type": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert "rejectedSpans" not in partial  # 0: nothing refused
    assert "1 string(s) held a lone UTF-16 surrogate" in partial["errorMessage"]
    with site.client("viewer") as c:
        (run,) = _wait_runs(c, 1)
        spans = c.get(f"/api/v1/runs/{run['run_id']}").json()["spans"]
    note = {s["span_id"]: s for s in spans}["c000000000000002"]["attributes"]["note"]
    assert note == "a\ufffdb \U0001f600"  # the lone one replaced, the pair kept
    with site.client("agent") as c:  # a pair alone is no warning
        paired = json.dumps(_request(_span("c000000000000003", None, "x", {"n": "\U0001f600"})))
        assert "\\ud83d" in paired
        answer = c.post("/v1/traces", content=paired, headers={"Content-Type": JSON_TYPE})
        assert answer.status_code == 200 and answer.json() == {}


def _protobuf_with_bad_utf8(spans: int) -> bytes:
    """A protobuf request of ``spans`` spans in one trace; in the second span's name, one
    attribute value and a value inside an array attribute, bytes that are not UTF-8 (a
    multi-byte character cut in half, 0xFF, a UTF-16 surrogate encoded as UTF-8), written in
    place of ASCII of the same length so that the wire format stays valid."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for n in range(spans):
        span = scope.spans.add(
            trace_id=bytes.fromhex("d" * 32),
            span_id=(n + 1).to_bytes(8, "big"),
            parent_span_id=b"" if n == 0 else (1).to_bytes(8, "big"),
            name="NAME" if n == 1 else f"step {n}",
            start_time_unix_nano=NS + n,
            end_time_unix_nano=NS + 1000,
        )
        if n == 1:
            note = span.attributes.add(key="note")
            note.value.string_value = "VALUE"
            listed = span.attributes.add(key="listed").value.array_value.values.add()
            listed.string_value = "ITEMS"
    body = request.SerializeToString()
    for ascii_, bad in (
        (b"NAME", b"N\xc3ME"),
        (b"VALUE", b"V\xffLUE"),
        (b"ITEMS", b"\xed\xa0\x80MS"),
    ):
        assert body.count(ascii_) == 1
        body = body.replace(ascii_, bad)
    return body


def test_protobuf_strings_that_are_not_utf8_are_mended_not_the_whole_batch_refused(
    site: Site,
) -> None:
    """Protobuf refuses a whole request for one string holding bytes that are not UTF-8 (an
    instrumentation that truncated an attribute inside a character): the whole batch was
    answered 400 and lost. Now the bad bytes become U+FFFD, every span is stored, and
    ``partial_success`` says how many strings were mended (a warning: none rejected)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    body = _protobuf_with_bad_utf8(8)
    with pytest.raises(Exception, match="UTF-8"):  # what protobuf alone does with it
        ExportTraceServiceRequest.FromString(body)
    protobuf = {"Content-Type": "application/x-protobuf"}
    with site.client("agent") as c:
        answer = c.post("/v1/traces", content=body, headers=protobuf)
        assert answer.status_code == 200, answer.content[:300]
        reply = ExportTraceServiceResponse.FromString(answer.content)
        assert reply.partial_success.rejected_spans == 0
        assert "3 string(s) held bytes that are not UTF-8" in reply.partial_success.error_message
        # Gzipped, the same; sent again, stored once.
        zipped = c.post(
            "/v1/traces",
            content=gzip.compress(body),
            headers={**protobuf, "Content-Encoding": "gzip"},
        )
        assert zipped.status_code == 200
    with site.client("viewer") as c:
        (run,) = _wait_runs(c, 1)
        spans = {s["span_id"]: s for s in c.get(f"/api/v1/runs/{run['run_id']}").json()["spans"]}
    assert len(spans) == 8
    mended = spans[(2).to_bytes(8, "big").hex()]
    assert mended["name"] == "N\ufffdME"
    assert mended["attributes"]["note"] == "V\ufffdLUE"
    assert mended["attributes"]["listed"] == ["\ufffd\ufffd\ufffdMS"]


def test_protobuf_that_is_malformed_beyond_its_strings_is_still_400(site: Site) -> None:
    """Reading strings as bytes mends only their text: a body whose structure is broken (a
    length past its end), or one mixing both, is refused with protobuf's own reason."""
    body = _protobuf_with_bad_utf8(3)
    protobuf = {"Content-Type": "application/x-protobuf"}
    with site.client("agent") as c:
        for broken in (body[:-3], b"\x0a\xff\xff", body.replace(b"N\xc3ME", b"N\xc3M")):
            answer = c.post("/v1/traces", content=broken, headers=protobuf)
            assert answer.status_code == 400, answer.content[:300]
            assert "not an OTLP ExportTraceServiceRequest" in _said(answer)
    with site.client("viewer") as c:
        assert c.get("/api/v1/runs").json()["runs"] == []


def test_json_bodies_that_are_not_utf8_are_mended_and_said(site: Site) -> None:
    """A JSON body with a byte that is not UTF-8 answered 400 for the whole batch; now the
    byte becomes U+FFFD and the reply says so. A UTF-16 body (JSON allows it) still reads."""
    body = json.dumps(
        _request(_span("e000000000000001", None, "root", {"note": "PLACEHOLDER"}))
    ).encode()
    with site.client("agent") as c:
        answer = c.post(
            "/v1/traces",
            content=body.replace(b"PLACEHOLDER", b"a\xffb"),
            headers={"Content-Type": JSON_TYPE},
        )
        assert answer.status_code == 200, answer.text
        said = answer.json()["partialSuccess"]["errorMessage"]
        assert "1 byte sequence(s) of the body are not UTF-8" in said
        wide = json.dumps(
            _request(_span("e000000000000002", None, "wide", {"note": "\u00e9t\u00e9"}))
        )
        answer = c.post(
            "/v1/traces", content=wide.encode("utf-16"), headers={"Content-Type": JSON_TYPE}
        )
        assert answer.status_code == 200 and answer.json() == {}, answer.text
    with site.client("viewer") as c:
        runs = {r["run_id"]: r for r in _wait_runs(c, 2)}
        notes = {
            rid: c.get(f"/api/v1/runs/{rid}").json()["spans"][0]["attributes"]["note"]
            for rid in runs
        }
    assert notes == {"e000000000000001": "a\ufffdb", "e000000000000002": "\u00e9t\u00e9"}


def test_protobuf_reply_carries_partial_success(site: Site) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    body = _request(_span("0000000000000000", None, "zero id", {}))
    message = json_format.ParseDict(
        json.loads(
            json.dumps(body)
            .replace('"5b8efff798038103d269b633813fc60c"', '"W47/95gDgQPSabYzgT/GDA=="')
            .replace('"0000000000000000"', '"AAAAAAAAAAA="')
        ),
        ExportTraceServiceRequest(),
    )
    with site.client("agent") as c:
        answer = c.post(
            "/v1/traces",
            content=message.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    reply = ExportTraceServiceResponse.FromString(answer.content)
    assert reply.partial_success.rejected_spans == 1


def test_error_statuses(site: Site) -> None:
    with site.client() as anonymous:
        assert anonymous.post("/v1/traces", json=OPENINFERENCE).status_code == 401
    with site.client("viewer") as c:
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 403
    with site.client("agent") as c:
        bad_type = c.post("/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
        assert bad_type.status_code == 415 and "text/plain" in _said(bad_type)
        bad_encoding = c.post(
            "/v1/traces",
            content=b"{}",
            headers={"Content-Type": "application/json", "Content-Encoding": "br"},
        )
        assert bad_encoding.status_code == 415
        bad_json = c.post(
            "/v1/traces", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 400 and "not valid JSON" in _said(bad_json)
        wrong_shape = c.post("/v1/traces", json={"resourceSpans": "nope"})
        assert wrong_shape.status_code == 400 and "ExportTraceServiceRequest" in _said(wrong_shape)
        deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        too_deep = c.post("/v1/traces", content=deep, headers={"Content-Type": "application/json"})
        assert too_deep.status_code == 400, too_deep.text
        bad_proto = c.post(
            "/v1/traces",
            content=b"\xff\xff\xff",
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert bad_proto.status_code == 400
        bad_gzip = c.post(
            "/v1/traces",
            content=b"not gzip",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert bad_gzip.status_code == 400 and "gzip" in _said(bad_gzip)
        huge = c.post(
            "/v1/traces",
            content=b" " * (17 << 20),
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        bomb = gzip.compress(b" " * (80 << 20), compresslevel=9)  # ~80 KB that inflates to 80 MB
        assert len(bomb) < 1 << 20
        inflated = c.post(
            "/v1/traces",
            content=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert inflated.status_code == 413 and "gunzipped" in _said(inflated)
    with site.client("viewer") as c:
        assert c.get("/api/v1/runs").json()["runs"] == []


def test_errors_are_google_rpc_status_encoded_as_the_request(site: Site) -> None:
    """OTLP/HTTP wants every 4xx/5xx body to be a ``google.rpc.Status`` in the request's
    encoding; Tether answered its own JSON (``{"error", "hint"}``) even to protobuf, which an
    exporter cannot decode to log why its spans were refused."""
    from google.rpc.status_pb2 import Status

    protobuf = {"Content-Type": "application/x-protobuf"}
    with site.client() as anonymous:
        answer = anonymous.post("/v1/traces", content=b"", headers=protobuf)
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/x-protobuf"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "API key is required" in Status.FromString(answer.content).message
        answer = anonymous.post("/v1/traces", json=OPENINFERENCE)
        assert answer.status_code == 401 and "API key is required" in _said(answer)
    with site.client("viewer") as c:
        answer = c.post("/v1/traces", content=b"", headers=protobuf)
        assert answer.status_code == 403
        assert "may not ingest" in Status.FromString(answer.content).message
    with site.client("agent") as c:
        bad = c.post("/v1/traces", content=b"\xff\xff\xff", headers=protobuf)
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/x-protobuf"
        status = Status.FromString(bad.content)
        assert "not an OTLP ExportTraceServiceRequest" in status.message and status.code == 3
        bad_json = c.post("/v1/traces", content=b"{nope", headers={"Content-Type": JSON_TYPE})
        assert bad_json.headers["content-type"] == JSON_TYPE
        assert set(bad_json.json()) == {"code", "message"}
    agent = f"Authorization: Bearer {site.keys['agent']}\r\n"
    too_big = _reply_before_the_body(site.url, agent, length=17 << 20)
    assert too_big.startswith(b"HTTP/1.1 413")
    assert "larger than" in Status.FromString(too_big.split(b"\r\n\r\n", 1)[1]).message
    with site.client("agent") as c:
        other = c.post("/v1/traces", params={"project": "other"}, json=OPENINFERENCE)
        assert other.status_code == 404 and _said(other) == "no project 'other'"
        assert c.get("/v1/traces").status_code == 405
    with site.client("viewer") as c:  # the API keeps its own shape
        assert "error" in c.get("/api/v1/runs", params={"project": "other"}).json()


def _delimited(tag: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (``tag``: field number and wire type 2)."""
    from google.protobuf.internal.encoder import _VarintBytes

    return bytes([tag]) + _VarintBytes(len(payload)) + payload


def test_bodies_of_millions_of_empty_entries_are_413_before_they_are_read(site: Site) -> None:
    """A few kilobytes of gzip that inflate to millions of empty entries: each is 2 bytes
    on the wire (``{},`` 3 in JSON) and a Python object, and a worker spent 74-159 s and
    2.2-4.7 GB of memory on one such request (64 MiB once gunzipped), then answered 200."""
    protobuf = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    empty_resources = gzip.compress(b"\x0a\x00" * ((8 << 20) - 1), compresslevel=9)
    # One span with 1.5 million empty attributes (field 9 of Span), in one scope, one resource.
    attributes = _delimited(0x0A, _delimited(0x12, _delimited(0x12, b"\x4a\x00" * 1_500_000)))
    objects = b'{"resourceSpans": [' + b"{}," * 5_000_000 + b"{}]}"
    # Arrays were not counted: 16 MiB of them in a field OTLP ignores took 6 s and 880 MB.
    arrays = b'{"resourceSpans": [], "extra": [' + b"[]," * 600_000 + b"[]]}"
    json_gzip = {**protobuf, "Content-Type": "application/json"}
    with site.client("agent") as c:
        for content, headers in (
            (empty_resources, protobuf),
            (gzip.compress(attributes), protobuf),
            (gzip.compress(objects), json_gzip),
            (gzip.compress(arrays), json_gzip),
        ):
            answer = c.post("/v1/traces", content=content, headers=headers)
            assert answer.status_code == 413, answer.text
            assert "send smaller batches" in _said(answer)
        # 64 MiB once gunzipped was taken; now the limit is the uncompressed body's.
        over = gzip.compress(b" " * (17 << 20), compresslevel=9)
        answer = c.post("/v1/traces", content=over, headers=protobuf)
        assert answer.status_code == 413 and "gunzipped" in _said(answer)
        # A batch of ordinary size is still taken.
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200
    with site.client("viewer") as c:
        assert len(c.get("/api/v1/runs").json()["runs"]) == 1


def test_the_entries_of_attribute_arrays_and_maps_count_toward_the_limit(site: Site) -> None:
    """An attribute holding an array (or a map) of 1.5 million empty values was one attribute
    to the count: the request was taken and mapping built every value in Python."""
    protobuf = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    empty = b"\x0a\x00"  # one empty entry (AnyValue of ArrayValue; KeyValue of KeyValueList)
    array = _delimited(0x2A, empty * 1_500_000)  # AnyValue.array_value
    nested = _delimited(0x2A, _delimited(0x0A, array) * 2)  # an array of two such arrays
    kvlist = _delimited(0x32, empty * 1_500_000)  # AnyValue.kvlist_value
    with site.client("agent") as c:
        for value in (array, nested, kvlist):
            attribute = _delimited(0x4A, _delimited(0x0A, b"k") + _delimited(0x12, value))
            body = _delimited(0x0A, _delimited(0x12, _delimited(0x12, attribute)))
            answer = c.post("/v1/traces", content=gzip.compress(body), headers=protobuf)
            assert answer.status_code == 413, answer.text[:300]
            assert "send smaller batches" in _said(answer)
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200


def _reply_before_the_body(url: str, headers: str, length: int = 16_000_000) -> bytes:
    """What the server answers to a request that declares a body of ``length`` bytes (16 MB)
    and sends none of it (the connection held open, as by a client that trickles or
    stalls)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /v1/traces HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: application/x-protobuf\r\nContent-Length: {length}\r\n"
                f"{headers}\r\n"
            ).encode()
        )
        reply = sock.recv(65536)
        # The answer's head and body may come in two reads: read the body its length says.
        head, _, body = reply.partition(b"\r\n\r\n")
        lengths = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
        want = int(lengths[0].split(b":", 1)[1]) if lengths else 0
        while len(body) < want and (more := sock.recv(65536)):
            body += more
        return head + b"\r\n\r\n" + body if b"\r\n\r\n" in reply else reply


def test_a_body_is_read_only_for_a_key_that_may_send_spans(site: Site) -> None:
    """The body limit read every OTLP body (up to 16 MiB) before the key was checked: a
    client without a key held that much memory per connection by never finishing its body."""
    assert _reply_before_the_body(site.url, "").startswith(b"HTTP/1.1 401")
    wrong = "Authorization: Bearer tth_0000000000000000_nope\r\n"
    assert _reply_before_the_body(site.url, wrong).startswith(b"HTTP/1.1 401")
    viewer = f"Authorization: Bearer {site.keys['viewer']}\r\n"
    assert _reply_before_the_body(site.url, viewer).startswith(b"HTTP/1.1 403")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it is read
        for _ in range(17):
            yield b" " * (1 << 20)

    with site.client("agent") as c:
        chunked = c.post("/v1/traces", content=chunks(), headers={"Content-Type": JSON_TYPE})
        assert chunked.status_code == 413, chunked.text
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200


def test_a_sender_gone_before_its_body_ends_is_no_error(site: Site) -> None:
    """The route reads its body itself (after the key): a client gone half-way raised
    ClientDisconnect out of the route, logged as an error with its traceback for every
    exporter that timed out or was stopped mid-request."""
    import logging
    import socket
    from urllib.parse import urlsplit

    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        parts = urlsplit(site.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(
                (
                    f"POST /v1/traces HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                    f"Authorization: Bearer {site.keys['agent']}\r\n"
                    "Content-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n"
                ).encode()
                + b"\x0a\x00" * 100
            )
            time.sleep(0.5)  # the route is reading the body when the client goes
        with site.client("agent") as c:  # the server goes on; the gone one left no error
            assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200
            time.sleep(0.5)
    finally:
        logger.removeHandler(handler)
    assert not errors, [r.getMessage() for r in errors]


JSON_TYPE = "application/json"


def test_a_project_cannot_attach_spans_to_another_projects_run(site: Site) -> None:
    """A span naming another project's span as its parent (a service called by another
    project's, through ``traceparent``) is its own project's root: its part of the trace is
    a run of that project, and nothing joins, or shows, the other project's run. It was
    refused, so a service called across projects lost every trace it sent after its caller's."""
    with site.client("agent") as c:
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200
    child = _request(
        _span("c000000000000001", "a000000000000001", "theirs", {"openinference.span.kind": "LLM"}),
        _span("c000000000000002", "c000000000000001", "under theirs", {}),
    )
    with site.client("other_agent") as c:
        answer = c.post("/v1/traces", json=child)
        assert answer.status_code == 200 and "partialSuccess" not in answer.json(), answer.text
        again = c.post("/v1/traces", json=OPENINFERENCE)  # the same ids, another project
        assert again.json()["partialSuccess"]["rejectedSpans"] == "3"
    with site.client("other_viewer") as c:
        (run,) = c.get("/api/v1/runs").json()["runs"]
        assert run["run_id"] == "c000000000000001" and run["status"] == "completed"
        spans = c.get(f"/api/v1/runs/{run['run_id']}").json()["spans"]
        assert {s["name"] for s in spans} == {"theirs", "under theirs"}
        assert c.get("/api/v1/runs/a000000000000001").status_code == 404
    with site.client("viewer") as c:
        runs = c.get("/api/v1/runs").json()["runs"]
        assert [r["run_id"] for r in runs] == ["a000000000000001"]
        assert len(c.get(f"/api/v1/runs/{runs[0]['run_id']}").json()["spans"]) == 3


def test_message_json_is_stored_as_data_even_when_orjson_refuses_it(site: Site) -> None:
    """Message attributes are JSON text: valid JSON is stored as the sender wrote it, JSON
    only the standard library reads (a lone surrogate escape, NaN) as data made valid, and
    text that is not JSON as a string."""
    odd = '[{"role": "user", "parts": [{"type": "text", "content": "a\\ud800b", "x": NaN}]}]'
    body = _request(
        _span("d000000000000001", None, "root", {"gen_ai.input.messages": odd}),
        _span(
            "d000000000000002",
            "d000000000000001",
            "chat",
            {"gen_ai.operation.name": "chat", "gen_ai.output.messages": "not json ["},
        ),
    )
    with site.client("agent") as c:
        assert c.post("/v1/traces", json=body).json() == {}
    with site.client("viewer") as c:
        detail = c.get("/api/v1/runs/d000000000000001").json()
    assert detail["run"]["input"] == "a\ufffdb"
    spans = {s["span_id"]: s["attributes"] for s in detail["spans"]}
    part = spans["d000000000000001"]["gen_ai.input.messages"][0]["parts"][0]
    assert part["content"] == "a\ufffdb" and part["x"] is None
    assert spans["d000000000000002"]["gen_ai.output.messages"] == "not json ["


def test_an_operation_name_that_is_not_text_is_stored_as_a_step(site: Site) -> None:
    """``gen_ai.operation.name`` given as an array or a map (any OTLP value may be): the span
    is stored as a step of the application (kind ``agent``) with the value kept, and the
    request's other spans with it; it made the whole request fail with a 500."""
    root = _span("e000000000000001", None, "root", {})
    as_array = _span("e000000000000002", "e000000000000001", "array op", {})
    as_array["attributes"] = [
        {
            "key": "gen_ai.operation.name",
            "value": {"arrayValue": {"values": [{"stringValue": "chat"}]}},
        }
    ]
    as_map = _span("e000000000000003", "e000000000000001", "map op", {})
    as_map["attributes"] = [
        {
            "key": "gen_ai.operation.name",
            "value": {"kvlistValue": {"values": [{"key": "a", "value": {"stringValue": "b"}}]}},
        }
    ]
    with site.client("agent") as c:
        answer = c.post("/v1/traces", json=_request(root, as_array, as_map))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {}
    with site.client("viewer") as c:
        spans = {s["span_id"]: s for s in c.get("/api/v1/runs/e000000000000001").json()["spans"]}
    assert spans["e000000000000002"]["kind"] == "agent"
    assert spans["e000000000000002"]["attributes"]["gen_ai.operation.name"] == ["chat"]
    assert spans["e000000000000003"]["attributes"]["gen_ai.operation.name"] == {"a": "b"}


def test_a_span_cannot_take_the_place_of_a_running_sdk_runs_root(
    site: Site, sqlite_url: str
) -> None:
    """A run of the SDK is in the store while it runs (its root span is written when it
    ends). An agent key sent a root span with that run's id: the run's row took the span's
    status, output and totals, so a running resume read as failed (and its claim on a paused
    run as abandoned: another resume would run the approved call again). Refused now."""
    from tether.store import RunRecord, Store, TraceBatch

    store = Store(sqlite_url)
    run_id, trace = "d000000000000001", "0af7651916cd43dd8448eb211c80319c"
    store.write(
        TraceBatch(runs_started=[RunRecord(trace, None, None, NS, input="hi", run_id=run_id)])
    )
    forged = _request(
        _span(run_id, None, "invoke_agent x", {}, trace=trace, status={"code": 2, "message": "x"})
    )
    with site.client("agent") as c:
        answer = c.post("/v1/traces", json=forged)
    assert answer.status_code == 200
    assert answer.json()["partialSuccess"]["rejectedSpans"] == "1", answer.text
    kept = store.get_run(run_id)
    assert (kept.status, kept.entry_point, kept.error) == ("running", "runtime", None)
    store.close()


def test_a_2xx_is_synced_to_disk_before_it_is_sent(sqlite_url: str) -> None:
    """The store runs SQLite with ``synchronous=NORMAL``: a commit survives the process's
    crash, not the machine's (a power cut takes back the last commits). OTLP answers 200 as
    "stored", so its transaction is synced at its commit (``synchronous=FULL``), and the
    connection goes back to the store's setting after."""
    from sqlalchemy import event

    key = AccessStore(sqlite_url).create_key("default", Role.AGENT)[1]
    app = create_app(ServerConfig(database_url=sqlite_url))
    seen: list[str] = []
    synced: list[Any] = []  # the connection that syncs: others (a key's use noted) interleave

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.startswith("PRAGMA synchronous=FULL"):
            synced.append(conn.connection.dbapi_connection)
        if synced and conn.connection.dbapi_connection is not synced[0]:
            return
        if sql.startswith(("PRAGMA synchronous", "BEGIN", "INSERT OR IGNORE INTO tether_spans")):
            seen.append(sql.split(" (")[0])

    def commit(conn: Any) -> None:
        if synced and conn.connection.dbapi_connection is synced[0]:
            seen.append("COMMIT")

    event.listen(app.state.engine, "before_cursor_execute", statement)
    event.listen(app.state.engine, "commit", commit)
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        answer = c.post(
            "/v1/traces", json=OPENINFERENCE, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200
    # (the spans go in as multi-row INSERTs: one or more statements in a row)
    steps = [sql for i, sql in enumerate(seen) if i == 0 or sql != seen[i - 1]]
    first = steps.index("PRAGMA synchronous=FULL")
    assert steps[first : first + 5] == [
        "PRAGMA synchronous=FULL",
        "BEGIN IMMEDIATE",
        "INSERT OR IGNORE INTO tether_spans",
        "COMMIT",
        "PRAGMA synchronous=NORMAL",
    ], seen


def test_mending_walks_no_more_entries_than_its_limit() -> None:
    """Mending visits every message of the request in Python: past its limit it stops (the
    route answers 413 as for any request of too many entries), where a body of millions of
    empty entries with one bad string would have been walked whole."""
    from tether.server import otlp_lenient

    body = _protobuf_with_bad_utf8(30)
    request, mended = otlp_lenient.mend(body, limit=1_000)
    assert mended == 3 and len(request.resource_spans[0].scope_spans[0].spans) == 30
    with pytest.raises(otlp_lenient.TooManyValues):
        otlp_lenient.mend(body, limit=20)


def test_mending_counts_entries_as_the_route_does() -> None:
    """The route's item limit counts the entries of lists (resource and scope spans, spans,
    attributes, the values of an array); mending counted every message it visited (each
    attribute twice, with its value), so a batch of 600,000 attributes with one bad string
    was refused with 413 for more than 1,000,000 entries, and taken when all its strings were
    UTF-8."""
    from tether.server import otlp, otlp_lenient

    body = _protobuf_with_bad_utf8(30)
    entries = 1 + 1 + 30 + 2 + 1  # resource spans, scope spans, spans, attributes, array value
    otlp_lenient.mend(body, limit=entries)
    with pytest.raises(otlp_lenient.TooManyValues):
        otlp_lenient.mend(body, limit=entries - 1)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=bytes.fromhex("e" * 32), span_id=(1).to_bytes(8, "big"), name="NAME")
    )
    for _ in range(600_000):
        span.attributes.add(key="k").value.string_value = "v"
    large = request.SerializeToString().replace(b"NAME", b"N\xffME")
    notes: list[str] = []
    decoded = otlp.decode(otlp.PROTOBUF, "", large, notes)
    assert len(decoded.resource_spans[0].scope_spans[0].spans[0].attributes) == 600_000
    assert notes == ["1 string(s) held bytes that are not UTF-8, replaced by U+FFFD"]


def _peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_large_bodies_are_decoded_one_at_a_time(sqlite_url: str) -> None:
    """Decoding costs many times a body's bytes (an empty span: 2 bytes on the wire, ~95 in
    memory), and a few large bodies decoded at once multiplied that: bodies over
    ``LARGE_BODY_BYTES`` once gunzipped take turns, so three sent together peak no higher
    than one. Measured on a real ``tether serve`` by its peak memory (VmHWM): one such body
    first, then three at once; their peak may not climb by half the first one's growth (it
    climbed by about twice it when they were decoded together)."""
    import os
    import threading

    from fakes.server import tether_serve

    body = gzip.compress(b"\x0a\x04\x12\x02\x12\x00" * ((6 << 20) // 6))  # 6 MiB of empty spans
    key = AccessStore(sqlite_url).create_key("default", Role.AGENT)[1]
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
    }
    with tether_serve(env={**os.environ, "TETHER_DATABASE_URL": sqlite_url}) as served:
        pid = served.proc.pid

        def send(answers: list[int]) -> None:
            with httpx.Client(base_url=served.url, headers=headers, timeout=120) as c:
                answers.append(c.post("/v1/traces", content=body).status_code)

        answers: list[int] = []
        before = _peak_rss_bytes(pid)
        send(answers)
        one = _peak_rss_bytes(pid) - before
        assert one > 100 << 20, one  # the decoding this is about took memory
        senders = [threading.Thread(target=send, args=(answers,)) for _ in range(3)]
        before = _peak_rss_bytes(pid)
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        three = _peak_rss_bytes(pid) - before
    assert answers == [413] * 4  # too many entries: refused once decoded
    assert three < one / 2, (three, one)


def _chat(span_id: str, start: int, asked: str, answer: str) -> dict[str, Any]:
    def messages(role: str, text: str) -> str:
        return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])

    system = json.dumps([{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]}])
    return _span(
        span_id,
        "f000000000000001",
        "chat gpt-4.1-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4.1-mini",
            "gen_ai.input.messages": json.dumps(
                json.loads(system) + json.loads(messages("user", asked))
            ),
            "gen_ai.output.messages": messages("assistant", answer),
        },
        start=NS + start,
        end=NS + start + 1000,
    )


@pytest.mark.parametrize("batches", ["one request", "children first, root later"])
def test_a_run_whose_root_states_no_input_takes_its_model_calls(site: Site, batches: str) -> None:
    """An OpenTelemetry agent span seldom carries messages (they are on its chat spans): the
    run's input was empty in the list, the UI and the text search, its output null. Now they
    are the first model call's user message and the last one's reply, whichever order the
    spans come in."""
    root = _span(
        "f000000000000001", None, "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}
    )
    later = _chat("f000000000000003", 5000, "and order 8?", "on its way")
    first = _chat("f000000000000002", 1000, "where is order 7?", "shipped")
    requests = (
        [_request(later, first, root)]
        if batches == "one request"
        else [_request(later), _request(first), _request(root)]
    )
    with site.client("agent") as c:
        for body in requests:
            assert c.post("/v1/traces", json=body).status_code == 200
    with site.client("viewer") as c:
        (run,) = _wait_runs(c, 1)
        found = c.get("/api/v1/runs", params={"q": "order 7"}).json()["runs"]
    assert run["input"] == "where is order 7?" and run["output"] == "on its way"
    assert [r["run_id"] for r in found] == ["f000000000000001"]
