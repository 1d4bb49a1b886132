"""A real HTTP server on 127.0.0.1 that records requests and answers canned or echo replies."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    """A request the server received."""

    method: str
    path: str
    """The path as sent, still percent-encoded, without the query."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes


@dataclass
class Canned:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Server:
    """Records every request. Paths in ``routes`` get their canned reply; any other path gets
    a JSON echo of the request (method, path, query, parsed body, and with ``echo_headers``
    its headers, as a careless API or a debugging endpoint does)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Seen] = []
        self.routes: dict[str, Canned] = {}
        self.echo_headers = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                server.requests.append(seen)
                canned = server.routes.get(parts.path)
                if canned is None:
                    echo = {
                        "method": seen.method,
                        "path": seen.path,
                        "query": seen.query,
                        "json": json.loads(body) if body else None,
                    }
                    if server.echo_headers:
                        echo["headers"] = seen.headers
                    canned = Canned(
                        200, json.dumps(echo).encode(), {"Content-Type": "application/json"}
                    )
                if canned.delay_s:
                    time.sleep(canned.delay_s)
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                # The client may hang up early (a capped read); that is not the server's error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(canned.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
