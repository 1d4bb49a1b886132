"""A real, scriptable OpenAI-compatible HTTP server on 127.0.0.1 for tests.

Each test queues the replies it wants (``server.enqueue(Reply(...))``); every request takes the
next one, in order, and is recorded (``server.requests``) so tests can assert on what the
client sent. A request that finds the queue empty gets HTTP 418 with an explanatory error, so
a test that under-scripts fails loudly instead of hanging.

Streamed replies (``Reply(sse=[...])``) can be produced lazily (any iterable, for huge
streams), stall after some events (``sse_stall_after``: the connection stays open and silent),
or be cut (``sse_cut_after``: the connection closes while the announced body is unfinished);
``server.streams`` says how much of each stream went out and whether all of it did.

Like LiteLLM's proxy, the server can also check requests before any scripted reply: with
``models`` it answers a model not in that set with HTTP 400 ("Invalid model name passed in
model=..."), and with ``require_key`` a request without an ``Authorization`` header with HTTP
500 and a multi-line error text (LiteLLM sends its traceback).

    with FakeOpenAIServer() as server:
        server.enqueue(Reply.completion(content="hi"))
        model = OpenAIChatModel("gpt-test", base_url=server.base_url)
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "StreamLog",
    "completion_body",
    "litellm_no_key",
    "litellm_unknown_model",
    "stream_chunk",
    "tool_call_json",
]


@dataclass
class Reply:
    """One scripted reply.

    Exactly one body kind applies: ``sse`` (events, any iterable: dicts are sent as
    ``data: <json>``, strings and bytes are written verbatim), ``raw`` (bytes as-is), or
    ``json``. ``delay_s`` holds the reply back (to provoke client timeouts; a long one is a
    server that accepts and never answers); ``disconnect`` closes the connection without any
    response; ``pace_s`` makes a slow server (a pause before each ``sse`` event, or before
    each 16-byte piece of any other body); ``cut_body_at`` sends that many bytes of a
    non-``sse`` body, announced whole, then closes the connection (a truncated reply);
    ``drip_head`` sends the response's head a byte at a time, ``pace_s`` apart, with a
    header of that many bytes in it (headers that take their time to end).
    """

    status: int = 200
    json: Any = None
    raw: bytes | None = None
    sse: Iterable[dict[str, Any] | str | bytes] | None = None
    sse_done: bool = True
    """Whether an ``sse`` reply ends with ``data: [DONE]``."""
    sse_stall_after: int | None = None
    """Send this many events, then nothing more, keeping the connection open (until the
    server stops)."""
    sse_cut_after: int | None = None
    sse_reset_after: int | None = None
    """Send this many events, then reset the connection (a TCP RST, as a crashed peer or a
    middlebox sends)."""
    """Send this many events, then close the connection in the middle of a body announced
    longer (the client sees an incomplete body, not an end)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    disconnect: bool = False
    pace_s: float = 0.0
    cut_body_at: int | None = None
    drip_head: int = 0

    @classmethod
    def completion(cls, **kwargs: Any) -> Reply:
        """A 200 reply carrying ``completion_body(**kwargs)``."""
        return cls(json=completion_body(**kwargs))

    @classmethod
    def error(cls, status: int, message: str, *, headers: dict[str, str] | None = None) -> Reply:
        """An error reply in OpenAI's ``{"error": {"message": ...}}`` shape."""
        body = {"error": {"message": message, "type": "test_error", "code": None}}
        return cls(status=status, json=body, headers=dict(headers or {}))


@dataclass
class StreamLog:
    """How far one ``sse`` reply went."""

    events: int = 0
    """Events written."""
    bytes_sent: int = 0
    """Bytes of body written."""
    finished: bool = False
    """Whether every event (and ``[DONE]`` if asked for) was written."""


_CUT_LENGTH = 1 << 40
"""The body length a cut stream announces: more than any test sends."""


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    json: Any
    """The body parsed as JSON (``None`` if it was not JSON)."""


def tool_call_json(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A tool call as it appears in a completion's ``message.tool_calls``."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion_body(
    *,
    content: str | None = "",
    tool_calls: list[dict[str, Any]] | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    cached_tokens: int | None = None,
    model: str = "gpt-test-2025",
    finish_reason: str | None = None,
    response_id: str = "chatcmpl-test-1",
) -> dict[str, Any]:
    """A chat-completions response body in OpenAI's shape."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": usage,
    }


def stream_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "gpt-test-2025",
    response_id: str = "chatcmpl-stream-1",
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; with ``delta=None`` and ``usage`` it is the final usage
    chunk (empty ``choices``), as OpenAI sends with ``stream_options.include_usage``."""
    choices: list[dict[str, Any]] = []
    if delta is not None or finish_reason is not None:
        choices.append({"index": 0, "delta": delta or {}, "finish_reason": finish_reason})
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        owner = self.server.owner
        reply = owner._record_and_next(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                json=parsed,
            )
        )
        if reply.delay_s and owner._stopping.wait(reply.delay_s):
            return  # server shutting down: the client has long given up
        # The client may have gone away meanwhile (for example after its timeout).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.disconnect:
            self.close_connection = True
            return  # no status line at all: the client sees a dropped connection
        if reply.sse is not None:
            self._send_sse(reply)
            return
        if reply.raw is not None:
            payload, content_type = reply.raw, "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(reply.json).encode(), "application/json"
        self.send_response(reply.status)
        if not any(k.lower() == "content-type" for k in reply.headers):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self._extra_headers(reply)
        self.end_headers()
        if reply.cut_body_at is not None:
            payload = payload[: reply.cut_body_at]
            self.close_connection = True
        if not reply.pace_s:
            self.wfile.write(payload)
            return
        for start in range(0, len(payload), 16):
            if self.server.owner._stopping.wait(reply.pace_s):
                return
            self.wfile.write(payload[start : start + 16])
            self.wfile.flush()

    def _send_sse(self, reply: Reply) -> None:
        assert reply.sse is not None
        log = StreamLog()
        self.server.owner._log_stream(log)
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if reply.sse_cut_after is not None:
            self.send_header("Content-Length", str(_CUT_LENGTH))
        self._extra_headers(reply)
        self.end_headers()
        self.close_connection = True
        for event in reply.sse:
            if log.events in (reply.sse_stall_after, reply.sse_cut_after):
                break
            if log.events == reply.sse_reset_after:
                self._reset()
                return
            if reply.pace_s and self.server.owner._stopping.wait(reply.pace_s):
                return
            if isinstance(event, dict):
                event = f"data: {json.dumps(event)}\n\n"
            payload = event.encode() if isinstance(event, str) else event
            self.wfile.write(payload)
            self.wfile.flush()
            log.events += 1
            log.bytes_sent += len(payload)
        else:
            if reply.sse_done:
                self.wfile.write(b"data: [DONE]\n\n")
                log.bytes_sent += 14
            self.wfile.flush()
            log.finished = True
            return
        if reply.sse_stall_after is not None:
            self.server.owner._stopping.wait(60.0)  # silent; the client's read times out

    def _reset(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # with a zero linger: a reset, not an orderly close

    def _extra_headers(self, reply: Reply) -> None:
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.drip_head:
            self.send_header("X-Drip", "d" * reply.drip_head)
            self._drip_head(reply.pace_s)

    def _drip_head(self, pace_s: float) -> None:
        """Send the head buffered so far a byte at a time (``end_headers`` adds its end)."""
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        for i in range(len(head)):
            if self.server.owner._stopping.wait(pace_s):
                return
            self.wfile.write(head[i : i + 1])
            self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FakeOpenAIServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


def litellm_unknown_model(model: object) -> Reply:
    """LiteLLM's answer to a model name its proxy does not know."""
    message = (
        f"400: {{'error': '/chat/completions: Invalid model name passed in model={model}. "
        "Call `/v1/models` to view available models for your key.'}"
    )
    return Reply(
        status=400,
        json={"error": {"message": message, "type": "None", "param": "None", "code": "400"}},
    )


def litellm_no_key() -> Reply:
    """LiteLLM's answer to a request without a key, when its proxy needs one."""
    message = (
        "Authentication Error, No api key passed in.\n"
        "Traceback (most recent call last):\n"
        '  File "litellm/proxy/auth/user_api_key_auth.py", line 42, in user_api_key_auth\n'
        "    raise Exception('No api key passed in.')"
    )
    return Reply(
        status=500,
        json={"error": {"message": message, "type": "auth_error", "param": "None", "code": "500"}},
    )


class FakeOpenAIServer:
    """The server; use as a context manager (starts on enter, stops on exit)."""

    def __init__(self, *, models: set[str] | None = None, require_key: bool = False) -> None:
        self.models = models
        """When set: the model names served; any other is answered as LiteLLM does (400)."""
        self.require_key = require_key
        """Whether a request without ``Authorization`` is answered as LiteLLM does (500)."""
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._streams: list[StreamLog] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeOpenAIServer:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-openai-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # release replies still held back by delay_s
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies; each request consumes the next one."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def streams(self) -> list[StreamLog]:
        """One log per ``sse`` reply begun, in order (live: a log fills as its stream goes)."""
        with self._lock:
            return list(self._streams)

    def _log_stream(self, log: StreamLog) -> None:
        with self._lock:
            self._streams.append(log)

    @property
    def pending(self) -> int:
        """Replies queued but not yet used."""
        with self._lock:
            return len(self._replies)

    def _record_and_next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            if self.require_key and "authorization" not in request.headers:
                return litellm_no_key()
            model = request.json.get("model") if isinstance(request.json, dict) else None
            if self.models is not None and model not in self.models:
                return litellm_unknown_model(model)
            if self._replies:
                return self._replies.popleft()
        return Reply.error(418, "fake OpenAI server: no scripted reply left for this request")
