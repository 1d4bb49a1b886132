"""OpenTelemetry in: ``POST /v1/traces`` (OTLP/HTTP, protobuf or JSON, optionally gzip).

Spans are written to the store inside the request, in one transaction: a 2xx means they are
committed (``tether.server.otlp_store`` says how spans join runs). Re-sending a batch (an
exporter retrying after a lost reply) stores nothing twice. Every error answer of this path
(the key's included: ``errors.install``) is a ``google.rpc.Status`` encoded as the request
(``error_reply``), as the OTLP/HTTP specification asks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import zlib
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from tether.core.text import scrub_surrogates
from tether.server import otlp_lenient
from tether.server.auth import require
from tether.server.http_deadline import BodyTimedOut
from tether.server.otlp_mapping import MAX_ATTRIBUTE_DEPTH
from tether.server.otlp_store import Ingested, ingest
from tether.server.roles import Permission
from tether.store import Store
from tether.store.values import clean_text

OTLP_PATH = "/v1/traces"
MAX_BODY_BYTES = 16 << 20
"""Largest OTLP request body as sent (gzip or not): larger gets 413."""
MAX_INFLATED_BYTES = MAX_BODY_BYTES
"""Largest body once gunzipped: the same as sent uncompressed. Decoding costs far more memory
than the bytes (up to ~32 bytes a byte: an empty protobuf message is 2 bytes on the wire and a
Python object once parsed): at 64 MiB one 65 KB gzip request took 2.2 GB and 74 s."""
LARGE_BODY_BYTES = 2 << 20
"""A body larger than this (once gunzipped) is decoded and stored while no other such body is
(``_LARGE_DECODES``): decoding costs many times the bytes (an empty span, 2 bytes on the wire,
is ~95 bytes decoded: 16 MiB of them took 1.5 GB before the item count refused them), and a
few such requests at once, 16 KB each gzipped, could take all the server's memory. An
exporter's batch of 512 spans with their messages is far below it."""
OTLP_WORKERS = 8
"""Threads decoding and storing OTLP requests at once (``_limiter``): requests waiting for a
large body's turn hold these, not the threads every other route runs on."""
MAX_JSON_OBJECTS = 500_000
"""Most ``{`` and ``[`` in an OTLP/JSON body (an upper bound on its objects and arrays: those
inside strings count too). A batch of 512 spans of 30 attributes holds about 35,000; decoding
one costs ~5 us and a Python dict or list, so 16 MiB of ``{},`` (5.6 million) took a worker 30 s
and a gigabyte, and 16 MiB of ``[],`` (15 KB gzipped; arrays were not counted) 6 s and
880 MB, to be answered 200 (an unknown field)."""
MAX_ITEMS = 1_000_000
"""Most resource and scope entries, spans, events, links, attributes and the entries of
attributes' arrays and maps one request may hold (counted before any is read): each costs
Python work, and a body of empty entries holds one per 2 bytes."""
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
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


def _ids_to_base64(node: Any, bad: list[str]) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64. An id that is not
    hex becomes one zero byte, which fails its span's id check (the span is rejected), and is
    named in ``bad`` (the check alone said "must be 8 bytes (got 1 bytes)" of a 16-character
    id with one letter past ``f``)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raw = b"\x00"
                    if len(bad) < 5:
                        bad.append(f"{key} {clean_text(value[:40])!r} is not hexadecimal")
                out[key] = base64.b64encode(raw).decode()
            else:
                out[key] = _ids_to_base64(value, bad)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(v, bad) for v in node]
    return node


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape in a JSON body: the only way a JSON text holds a lone
surrogate (a pair ``json.loads`` joins into one character)."""


def _scrub(node: Any, changed: list[int]) -> Any:
    """``node`` with lone surrogates in its strings replaced by U+FFFD, ``changed[0]``
    counting the strings replaced."""
    if isinstance(node, str):
        clean = scrub_surrogates(node)
        if clean is not node:
            changed[0] += 1
        return clean
    if isinstance(node, dict):
        return {_scrub(k, changed): _scrub(v, changed) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrub(v, changed) for v in node]
    return node


def _plain(content_type: str, encoding: str, body: bytes) -> tuple[str, bytes]:
    """The request's media type and its body gunzipped; ``OtlpError`` 400/413/415."""
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
    return media, body


def decode(
    content_type: str, encoding: str, body: bytes, notes: list[str] | None = None
) -> ExportTraceServiceRequest:
    """The request's message; ``OtlpError`` 400/413/415 with the reason. What was mended to
    take it (a lone surrogate replaced) is said in ``notes``, for the reply's
    ``partial_success``."""
    media, body = _plain(content_type, encoding, body)
    message = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            message = _mended_request(body, exc, notes)
        _check_items(message, len(body))
        return message
    if body.count(b"{") + body.count(b"[") > MAX_JSON_OBJECTS:
        raise OtlpError(
            413, f"the JSON body holds more than {MAX_JSON_OBJECTS:,} objects and arrays{_SMALLER}"
        )
    encoding = json.detect_encoding(body)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        # As for protobuf: the bytes that are not text are replaced, and the reply says so.
        text = body.decode(encoding, "replace")
        if notes is not None:
            replaced = text.count("\ufffd") - body.decode(encoding, "ignore").count("\ufffd")
            notes.append(
                f"{replaced:,} byte sequence(s) of the body are not {encoding.upper()}, "
                "replaced by U+FFFD"
            )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OtlpError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise OtlpError(400, "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise OtlpError(400, "the JSON body must be an object with resourceSpans")
    if _SURROGATE_ESCAPE.search(body):
        # json.loads takes "\ud800" and protobuf refuses it: one such escape in an attribute
        # failed the whole request. Replaced, as the store replaces it in any text.
        changed = [0]
        data = _scrub(data, changed)
        if changed[0] and notes is not None:
            notes.append(
                f"{changed[0]:,} string(s) held a lone UTF-16 surrogate escape (such as "
                "\\ud800), replaced by U+FFFD"
            )
    bad_ids: list[str] = []
    try:
        data = _ids_to_base64(data, bad_ids)
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, RecursionError) as exc:
        message = ExportTraceServiceRequest()
        _spans_apart(data, message, exc, notes)
    if bad_ids and notes is not None:
        notes.extend(bad_ids)
    _check_items(message, len(body))
    return message


_SMALLER = ": send smaller batches"


class Notes(list[str]):
    """What decoding mended or left out to take a request, said in the reply's
    ``partial_success``; ``refused``: the spans it left out (rejected spans)."""

    refused: int = 0


def _spans_apart(
    data: Any, message: ExportTraceServiceRequest, error: Exception, notes: list[str] | None
) -> None:
    """``data``, which protobuf refused whole (``error``), read into ``message`` a resource,
    a scope and a span at a time: what protobuf cannot hold (OTLP/JSON can carry an integer
    past 64 bits, a time that is no number, attributes that are not a list) is left out with
    the spans under it, each counted in ``notes.refused`` and the first reasons said, so one
    such span no longer loses the whole batch. ``OtlpError`` 400 with ``error`` when the
    request's own shape (its lists of resources, scopes and spans) is wrong."""
    refused = OtlpError(400, f"the JSON body is not an OTLP ExportTraceServiceRequest: {error}")
    resources = data.get("resourceSpans", [])
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise refused
    units: list[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any], list[Any]]]]] = []
    for r, rs in enumerate(resources, 1):
        scopes = rs.get("scopeSpans", [])
        if not isinstance(scopes, list) or not all(isinstance(x, dict) for x in scopes):
            raise refused
        inner = []
        for n, ss in enumerate(scopes, 1):
            spans = ss.get("spans", [])
            if not isinstance(spans, list):
                raise refused
            inner.append((f"scope {n} of resource {r}", ss, spans))
        units.append((f"resource {r}", rs, inner))
    said = 0
    count = 0

    def taken(repeated: Any, value: Any, without: str, where: str, spans: int) -> Any:
        """``value`` (less its list ``without``) as a new entry of ``repeated``; None when
        protobuf cannot hold it (left out, with the ``spans`` under it)."""
        nonlocal said, count
        try:
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            entry = repeated.add()
            shell = {k: v for k, v in value.items() if k != without}
            json_format.ParseDict(shell, entry, ignore_unknown_fields=True)
            return entry
        except (json_format.ParseError, ValueError, RecursionError) as exc:
            if isinstance(value, dict):
                del repeated[-1]
            count += spans
            if notes is not None and said < 5:
                said += 1
                reason = str(exc).rsplit("Failed to parse ", 1)[-1]
                notes.append(f"{where} left out: {clean_text(reason[:200])}")
            return None

    for where, rs, scopes in units:
        spans_under = sum(len(spans) for _, _, spans in scopes)
        if (target := taken(message.resource_spans, rs, "scopeSpans", where, spans_under)) is None:
            continue
        for scope_where, ss, spans in scopes:
            if (scope := taken(target.scope_spans, ss, "spans", scope_where, len(spans))) is None:
                continue
            for n, span in enumerate(spans, 1):
                taken(scope.spans, span, "", f"span {n} of {scope_where}", 1)
    if isinstance(notes, Notes):
        notes.refused += count


_MENDED_UTF8 = "{count} string(s) held bytes that are not UTF-8, replaced by U+FFFD"


def _mended_request(
    body: bytes, error: Exception, notes: list[str] | None
) -> ExportTraceServiceRequest:
    """The request protobuf refused (``error``), read again with its strings' bytes that are
    not UTF-8 replaced (``otlp_lenient``); ``OtlpError`` 400 with ``error`` when that was not
    what was wrong with it."""
    refused = OtlpError(400, f"the body is not an OTLP ExportTraceServiceRequest: {error}")
    try:
        message, mended = otlp_lenient.mend(body, MAX_ITEMS)
    except (DecodeError, RecursionError):
        raise refused from None
    except otlp_lenient.TooManyValues:
        raise _too_many() from None
    if not mended:  # every string was UTF-8: something else made protobuf refuse it
        raise refused
    if notes is not None:
        notes.append(_MENDED_UTF8.format(count=f"{mended:,}"))
    return message


def _check_items(message: ExportTraceServiceRequest, size: int) -> None:
    """``OtlpError`` 413 when the request holds more than ``MAX_ITEMS`` entries. Counted by
    the lengths of the repeated fields, level by level, stopping as soon as the count is over:
    a body of millions of empty entries costs at most ``MAX_ITEMS`` steps here, where mapping
    it took minutes. Every entry takes at least 2 bytes of the body (``size``, decoded: a tag
    and a length in protobuf, ``{}`` in JSON), so a body of at most twice ``MAX_ITEMS`` bytes
    (an exporter's batch of 512 spans, with their messages) cannot hold too many and is not
    counted at all."""
    if size <= 2 * MAX_ITEMS:
        return
    count = len(message.resource_spans)
    if count > MAX_ITEMS:
        raise _too_many()
    for rs in message.resource_spans:
        count += len(rs.scope_spans) + len(rs.resource.attributes)
        if count > MAX_ITEMS:
            raise _too_many()
        count = _nested(rs.resource.attributes, count)
        for ss in rs.scope_spans:
            count += len(ss.spans) + len(ss.scope.attributes)
            if count > MAX_ITEMS:
                raise _too_many()
            count = _nested(ss.scope.attributes, count)
            for span in ss.spans:
                events = span.events
                count += len(span.attributes) + len(events) + len(span.links)
                if count > MAX_ITEMS:
                    raise _too_many()
                count = _nested(span.attributes, count)
                if events:
                    for event in events:
                        count += len(event.attributes)
                        if count > MAX_ITEMS:
                            raise _too_many()
                        count = _nested(event.attributes, count)


def _nested(pairs: Any, count: int) -> int:
    """``count`` plus the entries of the arrays and maps among the values of ``pairs``
    (``KeyValue``s), as deep as mapping reads them (``MAX_ATTRIBUTE_DEPTH``); ``OtlpError``
    413 as soon as it is over ``MAX_ITEMS``. One attribute's array held a million values
    that no count saw."""
    return _entries((kv.value for kv in pairs), count, 0)


def _entries(values: Any, count: int, depth: int) -> int:
    """``_nested`` over ``AnyValue``s at ``depth``."""
    for value in values:
        if value.string_value or value.int_value:  # most values: no need to ask more
            continue
        which = value.WhichOneof("value")
        if which == "array_value":
            inner = value.array_value.values
        elif which == "kvlist_value":
            inner = value.kvlist_value.values
        else:
            continue
        count += len(inner)
        if count > MAX_ITEMS:
            raise _too_many()
        if depth < MAX_ATTRIBUTE_DEPTH:
            if which == "kvlist_value":
                inner = (kv.value for kv in inner)
            count = _entries(inner, count, depth + 1)
    return count


def _too_many() -> OtlpError:
    return OtlpError(
        413, f"the request holds more than {MAX_ITEMS:,} spans, events and attributes{_SMALLER}"
    )


# -- the route ----------------------------------------------------------------------------------


def _store(request: Request) -> Store:
    store: Store | None = getattr(request.app.state, "otlp_store", None)
    if store is None:
        config = request.app.state.config
        store = Store(config.database_url, engine=request.app.state.engine, connect=False)
        request.app.state.otlp_store = store
    return store


_may_ingest = require(Permission.INGEST)
_LARGE_DECODES = threading.Lock()


def _limiter(request: Request) -> CapacityLimiter:
    limiter: CapacityLimiter | None = getattr(request.app.state, "otlp_limiter", None)
    if limiter is None:
        limiter = request.app.state.otlp_limiter = CapacityLimiter(OTLP_WORKERS)
    return limiter


def _decode_and_ingest(
    request: Request, project: str, content_type: str, body: bytes
) -> tuple[Ingested, list[str]]:
    """Decode and store the request: in one worker thread (each step blocks), so a request
    waits for one thread hand-over, not one per step (a hand-over is milliseconds on a busy
    host). With what decoding mended (``decode``'s notes)."""
    encoding = request.headers.get("content-encoding", "")
    notes = Notes()
    _, body = _plain(content_type, encoding, body)
    with _LARGE_DECODES if len(body) > LARGE_BODY_BYTES else nullcontext():
        try:
            message = decode(content_type, "", body, notes)
        except OtlpError as exc:
            # Its traceback holds decode's frame and the request decoded there: dropped here,
            # so that memory is free before the next large body's turn, not when the reply is.
            raise exc.with_traceback(None) from None
        result = ingest(_store(request), project, message)
        result.rejected += notes.refused
        return result, notes


async def _body(request: Request) -> bytes:
    """The request's body, read after its key was checked (the server's body limit leaves it
    to this route: ``app.OTLP_PATH``); ``OtlpError`` 413 for a ``Content-Length`` over
    ``MAX_BODY_BYTES`` before any of it is read, else as soon as the count is over."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise OtlpError(413, f"the request body is larger than {MAX_BODY_BYTES:,} bytes")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            raise OtlpError(413, f"the request body is larger than {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reply(media: str, response: ExportTraceServiceResponse) -> Response:
    if media == PROTOBUF:
        return Response(response.SerializeToString(), media_type=PROTOBUF)
    return JSONResponse(json_format.MessageToDict(response))


_GRPC_CODES = {
    400: 3,
    401: 16,
    403: 7,
    404: 5,
    405: 12,
    408: 4,
    409: 10,
    413: 8,
    415: 3,
    422: 3,
    503: 14,
}
"""The ``google.rpc.Code`` of an HTTP status (others: 13, internal). OTLP/HTTP does not use
``Status.code`` and clients must not act on it; it is there for whoever troubleshoots."""


def error_reply(
    content_type: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """An error answer as OTLP/HTTP wants it: a ``google.rpc.Status`` whose ``message`` says
    what is wrong, encoded as the request was (protobuf for ``application/x-protobuf``, else
    JSON: a request of another content type is no OTLP, and JSON is what its sender reads)."""
    media = content_type.split(";", 1)[0].strip().lower()
    reply = Status(code=_GRPC_CODES.get(status, 13), message=message)
    if media == PROTOBUF:
        return Response(
            reply.SerializeToString(), status_code=status, media_type=PROTOBUF, headers=headers
        )
    return JSONResponse(json_format.MessageToDict(reply), status_code=status, headers=headers)


@router.post(
    OTLP_PATH,
    summary="OTLP/HTTP trace export (protobuf or JSON, gzip): spans stored before the reply",
)
async def export_traces(request: Request) -> Response:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    # Who sends comes first: a body is read only for a key that may send spans.
    principal = await run_in_threadpool(_may_ingest, request, request.query_params.get("project"))
    try:
        body = await _body(request)
        result, notes = await to_thread.run_sync(
            _decode_and_ingest,
            request,
            principal.project,
            content_type,
            body,
            limiter=_limiter(request),
        )
    except ClientDisconnect:  # gone before its body was whole: nothing stored, no one to tell
        return Response(status_code=400)
    except OtlpError as exc:
        return error_reply(content_type, exc.status, exc.message)
    except BodyTimedOut as exc:  # a stalled body: 408, and the connection closed
        return error_reply(content_type, 408, str(exc), headers={"connection": "close"})
    response = ExportTraceServiceResponse()
    if result.rejected or notes:  # with no span rejected, OTLP reads the message as a warning
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = "; ".join([*result.reasons, *notes])
    return _reply(media, response)
