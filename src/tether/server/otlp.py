"""OpenTelemetry in: ``POST /v1/traces`` (OTLP/HTTP, protobuf or JSON, optionally gzip).

Spans are written to the store inside the request: a 2xx means they are committed. Each span
joins the run of its root span (a run per root span, ``run_id`` = the root's span id, project
of the API key, entry point ``otlp``). A span whose parent has not arrived yet (exporters send
children first: they end first) goes into a *pending* run named after that missing parent,
``running`` until the parent arrives; when the root arrives its run gets the root's name,
input, output, status and the totals (tokens, cost) of its model spans.

Re-sending a batch (an exporter retrying after a lost reply) stores nothing twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse, Response

from tether.core import EntryPoint, RunKind, StoreError
from tether.server.auth import Ingester
from tether.server.otlp_mapping import InvalidSpan, MappedSpan, attributes_of, map_span
from tether.store import EventRecord, RunRecord, SpanRecord, Store, TraceBatch, tables
from tether.store.values import RUN_AGENT, RUN_VERSION, clean_text, dumps_attributes, fit
from tether.trace import semconv
from tether.trace.pricing import pricing_from_env, round_cost

OTLP_PATH = "/v1/traces"
MAX_BODY_BYTES = 16 << 20
"""Largest OTLP request body as sent (gzip or not): larger gets 413."""
MAX_INFLATED_BYTES = 64 << 20
"""Largest body once gunzipped: a gzip bomb gets 413, never more memory than this."""
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ERROR_EVENT_BY_KIND = {
    "tool": semconv.EVENT_TOOL_ERROR,
    "model": semconv.EVENT_MODEL_ERROR,
}
"""The Tether event a failed span adds (what puts its run in an error category)."""
RUN_KIND_BY_SPAN = {
    "agent": RunKind.AGENT_RUN,
    "model": RunKind.MODEL_REQUEST,
    "tool": RunKind.TOOL_CALL,
}

router = APIRouter(tags=["otlp"])


class OtlpError(Exception):
    """The request as a whole cannot be taken: its HTTP status and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- decoding -------------------------------------------------------------------------------


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_INFLATED_BYTES)
        if inflater.unconsumed_tail:
            raise OtlpError(413, f"the gunzipped body is larger than {MAX_INFLATED_BYTES:,} bytes")
        out += inflater.flush()
    except zlib.error as exc:
        raise OtlpError(400, f"the body is not valid gzip: {exc}") from None
    if not inflater.eof:
        raise OtlpError(400, "the body is not valid gzip: it ends early")
    return out


_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64. Ids that are not
    hex become empty, and the span is rejected with the reason."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raw = b"\x00"  # not hex: fails the span's id check, with its reason
                out[key] = base64.b64encode(raw).decode()
            else:
                out[key] = _ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(v) for v in node]
    return node


def decode(content_type: str, encoding: str, body: bytes) -> ExportTraceServiceRequest:
    """The request's message; ``OtlpError`` 400/413/415 with the reason."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise OtlpError(
            415, f"content type {media or '(none)'!r} is not OTLP: send {PROTOBUF} or {JSON}"
        )
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        body = _inflate(body)
    elif encoding not in ("", "identity"):
        raise OtlpError(415, f"content encoding {encoding!r} is not supported: use gzip or none")
    message = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            raise OtlpError(
                400, f"the body is not an OTLP ExportTraceServiceRequest: {exc}"
            ) from None
        return message
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise OtlpError(400, "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise OtlpError(400, "the JSON body must be an object with resourceSpans")
    try:
        json_format.ParseDict(_ids_to_base64(data), message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, RecursionError) as exc:
        raise OtlpError(
            400, f"the JSON body is not an OTLP ExportTraceServiceRequest: {exc}"
        ) from None
    return message


# -- mapping a batch onto runs ----------------------------------------------------------------


@dataclass
class Ingested:
    """What one request stored and what it turned away."""

    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected += count
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)


def _mapped(message: ExportTraceServiceRequest, result: Ingested) -> list[MappedSpan]:
    pricing = pricing_from_env()
    out: dict[str, MappedSpan] = {}
    for rs in message.resource_spans:
        resource = attributes_of(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    m = map_span(span, resource, pricing)
                except InvalidSpan as exc:
                    result.reject(str(exc))
                    continue
                if m.span.span_id in out:
                    result.reject(f"span {m.span.span_id} appears twice in the request")
                    continue
                out[m.span.span_id] = m
    return list(out.values())


def _in_chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _stored_spans(store: Store, ids: list[str]) -> dict[str, tuple[str, str]]:
    """(run id, project) of the stored spans among ``ids``."""
    s, r = tables.spans.c, tables.runs.c
    found: dict[str, tuple[str, str]] = {}
    with store.engine.connect() as conn:
        for chunk in _in_chunks(ids):
            stmt = (
                select(s.span_id, s.run_id, r.project)
                .join(tables.runs, r.run_id == s.run_id)
                .where(s.span_id.in_(chunk))
            )
            for row in conn.execute(stmt):
                found[row.span_id] = (row.run_id, row.project)
    return found


def _stored_runs(store: Store, ids: list[str]) -> dict[str, tuple[str, str]]:
    """(project, status) of the stored runs among ``ids``."""
    r = tables.runs.c
    found: dict[str, tuple[str, str]] = {}
    with store.engine.connect() as conn:
        for chunk in _in_chunks(ids):
            for row in conn.execute(
                select(r.run_id, r.project, r.status).where(r.run_id.in_(chunk))
            ):
                found[row.run_id] = (row.project, row.status)
    return found


def _resolve_runs(
    store: Store, project: str, spans: list[MappedSpan], result: Ingested
) -> tuple[list[MappedSpan], dict[str, tuple[str, str]]]:
    """Give each span its run id; the spans kept, and the stored runs they touch."""
    by_id = {m.span.span_id: m for m in spans}
    top: dict[str, str | None] = {}  # span id -> the id its chain leaves the batch by
    for m in spans:
        seen = {m.span.span_id}
        cur = m
        while cur.span.parent_id is not None and cur.span.parent_id in by_id:
            if cur.span.parent_id in seen:
                break  # a cycle: treat as leaving the batch
            seen.add(cur.span.parent_id)
            cur = by_id[cur.span.parent_id]
        top[m.span.span_id] = cur.span.parent_id if cur.span.parent_id not in seen else None
        if cur.span.parent_id is None:
            m.span.run_id = cur.span.span_id
    outside = sorted({p for p in top.values() if p is not None})
    parents = _stored_spans(store, outside) if outside else {}
    stored_own = _stored_spans(store, list(by_id))
    kept: list[MappedSpan] = []
    for m in spans:
        sid = m.span.span_id
        if sid in stored_own and stored_own[sid][1] != project:
            result.reject(f"span {sid}: the id is already taken")
            continue
        leaves_by = top[sid]
        if leaves_by is None and not m.span.run_id:
            m.span.run_id = sid
        elif leaves_by is not None:
            parent = parents.get(leaves_by)
            if parent is not None and parent[1] != project:
                result.reject(f"span {sid}: its parent belongs to another project")
                continue
            # The parent's run, or a pending run named after the parent not yet arrived.
            m.span.run_id = parent[0] if parent is not None else leaves_by
        kept.append(m)
    runs = _stored_runs(store, sorted({m.span.run_id for m in kept}))
    final: list[MappedSpan] = []
    for m in kept:
        stored = runs.get(m.span.run_id)
        if stored is not None and stored[0] != project:
            result.reject(f"span {m.span.span_id}: its run id is already taken")
            continue
        final.append(m)
    return final, runs


def _error_events(m: MappedSpan, is_root: bool) -> list[EventRecord]:
    s = m.span
    if s.status != "error":
        return []
    name = semconv.EVENT_RUN_ERROR if is_root else ERROR_EVENT_BY_KIND.get(s.kind)
    if name is None:
        return []
    return [
        EventRecord(
            trace_id=s.trace_id,
            run_id=s.run_id,
            span_id=s.span_id,
            name=name,
            time_ns=s.end_ns,
            attributes={"message": s.status_message or "error"},
        )
    ]


@dataclass
class _Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    turns: int = 0
    tool_calls: int = 0
    models: set[str] = field(default_factory=set)

    def add(self, s: SpanRecord) -> None:
        a = s.attributes
        if s.kind == "model":
            self.turns += 1
            self.input_tokens += int(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS) or 0)
            self.output_tokens += int(a.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS) or 0)
            self.cached_input_tokens += int(
                a.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) or 0
            )
            if a.get(semconv.TETHER_COST_UNPRICED):
                self.unpriced += 1
            else:
                self.cost_usd = round_cost(
                    self.cost_usd + float(a.get(semconv.TETHER_COST_USD) or 0)
                )
        elif s.kind == "tool":
            self.tool_calls += 1


def _run_of_root(project: str, root: MappedSpan, totals: _Totals) -> RunRecord:
    s, a = root.span, root.span.attributes
    agent = a.get(semconv.GEN_AI_AGENT_NAME) or a.get("service.name")
    version = a.get("gen_ai.agent.version") or a.get("service.version")
    failed = s.status == "error"
    attributes: dict[str, Any] = {semconv.TETHER_ENTRY_POINT: EntryPoint.OTLP.value}
    if totals.unpriced:
        attributes[semconv.TETHER_COST_UNPRICED] = totals.unpriced
    return RunRecord(
        trace_id=s.trace_id,
        run_id=s.run_id,
        agent_name=fit(clean_text(str(agent)), RUN_AGENT) if agent else None,
        agent_version=fit(clean_text(str(version)), RUN_VERSION) if version else None,
        started_ns=s.start_ns,
        status="failed" if failed else "completed",
        outcome="error" if failed else "final_answer",
        input=root.run_input or "",
        output=root.run_output,
        ended_ns=s.end_ns,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cached_input_tokens=totals.cached_input_tokens,
        cost_usd=totals.cost_usd,
        turns=totals.turns,
        tool_calls=totals.tool_calls,
        error=(s.status_message or "error") if failed else None,
        attributes=attributes,
        project=project,
        kind=RUN_KIND_BY_SPAN.get(s.kind, RunKind.AGENT_RUN).value,
        entry_point=EntryPoint.OTLP.value,
    )


def _pending_run(project: str, members: list[MappedSpan]) -> RunRecord:
    first = min(members, key=lambda m: m.span.start_ns).span
    return RunRecord(
        trace_id=first.trace_id,
        run_id=first.run_id,
        agent_name=None,
        agent_version=None,
        started_ns=first.start_ns,
        input="",
        attributes={semconv.TETHER_ENTRY_POINT: EntryPoint.OTLP.value},
        project=project,
        kind=RunKind.AGENT_RUN.value,
        entry_point=EntryPoint.OTLP.value,
    )


def _finish_run(store: Store, run: RunRecord) -> None:
    """Write a root's run over its stored row (pending until now, or ended by an earlier
    copy of the root: the same values again)."""
    r = tables.runs.c
    values = {
        "agent_name": run.agent_name,
        "agent_version": run.agent_version,
        "kind": run.kind,
        "status": run.status,
        "outcome": run.outcome,
        "input": clean_text(run.input),
        "output": clean_text(run.output),
        "started_ns": run.started_ns,
        "ended_ns": run.ended_ns,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cached_input_tokens": run.cached_input_tokens,
        "cost_usd": run.cost_usd,
        "turns": run.turns,
        "tool_calls": run.tool_calls,
        "error": clean_text(run.error),
        "attributes": dumps_attributes(run.attributes),
    }
    try:
        with store.engine.begin() as conn:
            conn.execute(update(tables.runs).where(r.run_id == run.run_id).values(values))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot update run {run.run_id}: {type(exc).__name__}") from exc


def ingest(store: Store, project: str, message: ExportTraceServiceRequest) -> Ingested:
    """Store the request's spans for ``project``; what was accepted and rejected."""
    result = Ingested()
    mapped, stored_runs = _resolve_runs(store, project, _mapped(message, result), result)
    by_run: dict[str, list[MappedSpan]] = {}
    for m in mapped:
        by_run.setdefault(m.span.run_id, []).append(m)
    batch = TraceBatch()
    finishing: list[tuple[str, MappedSpan | None]] = []
    for run_id, members in by_run.items():
        root = next((m for m in members if m.span.span_id == run_id), None)
        for m in members:
            batch.spans.append(m.span)
            for e in m.events:
                e.run_id = run_id
            batch.events.extend(m.events)
            batch.events.extend(_error_events(m, m is root))
        if run_id in stored_runs:
            if root is not None or stored_runs[run_id][1] != "running":
                finishing.append((run_id, root))
            continue
        if root is not None:
            totals = _Totals()
            for m in members:
                totals.add(m.span)
            batch.runs_started.append(_run_of_root(project, root, totals))
        else:
            batch.runs_started.append(_pending_run(project, members))
    store.write(batch, skip_existing=True)
    for run_id, root in finishing:
        totals = _Totals()
        for s in store.get_spans(run_id):
            totals.add(s)
        if root is not None:
            _finish_run(store, _run_of_root(project, root, totals))
        else:  # more spans for an ended run: its totals grow
            stored = store.get_run(run_id)
            stored.input_tokens, stored.output_tokens = totals.input_tokens, totals.output_tokens
            stored.cached_input_tokens, stored.cost_usd = (
                totals.cached_input_tokens,
                totals.cost_usd,
            )
            stored.turns, stored.tool_calls = totals.turns, totals.tool_calls
            if totals.unpriced:
                stored.attributes[semconv.TETHER_COST_UNPRICED] = totals.unpriced
            _finish_run(store, stored)
    result.accepted = len(mapped)
    return result


# -- the route ----------------------------------------------------------------------------------


def _store(request: Request) -> Store:
    store: Store | None = getattr(request.app.state, "otlp_store", None)
    if store is None:
        config = request.app.state.config
        store = Store(config.database_url, engine=request.app.state.engine, connect=False)
        request.app.state.otlp_store = store
    return store


def _reply(media: str, response: ExportTraceServiceResponse) -> Response:
    if media == PROTOBUF:
        return Response(response.SerializeToString(), media_type=PROTOBUF)
    return JSONResponse(json_format.MessageToDict(response))


@router.post(
    OTLP_PATH,
    summary="OTLP/HTTP trace export (protobuf or JSON, gzip): spans stored before the reply",
)
async def export_traces(request: Request, principal: Ingester) -> Response:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    body = await request.body()
    try:
        message = decode(content_type, request.headers.get("content-encoding", ""), body)
    except OtlpError as exc:
        return JSONResponse({"error": exc.message, "hint": None}, status_code=exc.status)
    store = _store(request)
    result = await run_in_threadpool(ingest, store, principal.project, message)
    response = ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = "; ".join(result.reasons)
    return _reply(media, response)
