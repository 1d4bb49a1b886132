"""Clients that hold a connection by being slow (slowloris): ``tether serve --read-timeout``
closes a connection whose request headers take longer than the timeout, and answers 408 to a
body that pauses longer; kept-alive idle connections and clients that are merely a little slow
are served. A real server in a child process, raw sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from fakes.server import ServeProcess, tether_serve

TIMEOUT = "1"
PATIENCE = 20.0  # how long a test waits for the server to act before it counts as never


@pytest.fixture
def served(sqlite_url: str) -> Iterator[ServeProcess]:
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve("--dev", "--read-timeout", TIMEOUT, env=env) as server:
        yield server


@contextmanager
def connection(served: ServeProcess) -> Iterator[socket.socket]:
    url = urlsplit(served.url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=5)
    try:
        yield sock
    finally:
        sock.close()


def closed_by_server(sock: socket.socket, *, trickle: bytes = b"") -> bool:
    """Whether the server closes ``sock`` within ``PATIENCE`` seconds while the client sends
    ``trickle`` a byte every 0.2 s (nothing when empty) and reads what comes back."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + PATIENCE
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(trickle):
                sock.sendall(trickle[sent : sent + 1])
                sent += 1
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (``PATIENCE`` seconds at
    most: a connection left open fails the test)."""
    sock.settimeout(PATIENCE)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server left the connection open: {data[:300]!r}") from None
    return data


def get(sock: socket.socket, path: str = "/api/v1/whoami") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_connection_that_never_sends_is_closed(served: ServeProcess) -> None:
    with connection(served) as sock:
        assert closed_by_server(sock)


def test_headers_sent_a_byte_at_a_time_are_cut_off(served: ServeProcess) -> None:
    endless = b"GET /api/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 500
    with connection(served) as sock:
        assert closed_by_server(sock, trickle=endless)


def test_a_later_request_on_a_kept_alive_connection_has_the_same_deadline(
    served: ServeProcess,
) -> None:
    with connection(served) as sock:
        assert get(sock).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, trickle=b"GET /api/v1/whoami HTTP/1.1\r\n" + b"X" * 500)


def test_a_body_that_stops_arriving_gets_408(served: ServeProcess) -> None:
    for path in ("/api/v1/projects", "/v1/traces"):  # read by the body limit; by OTLP itself
        with connection(served) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                'Content-Length: 1000\r\n\r\n{"name": '.encode()
            )
            reply = answer(sock)
            assert reply.startswith(b"HTTP/1.1 408"), (path, reply[:300])
            said = json.loads(reply.partition(b"\r\n\r\n")[2])
            if path == "/v1/traces":  # OTLP answers a google.rpc.Status, as the spec asks
                assert said["code"] == 4 and "stopped arriving" in said["message"], said
            else:
                assert "stopped arriving" in said["error"], said


def test_an_idle_kept_alive_connection_and_a_little_slowness_are_served(
    served: ServeProcess,
) -> None:
    with connection(served) as sock:
        assert get(sock).startswith(b"HTTP/1.1 200")
        time.sleep(2.5)  # idle past the read timeout (not past uvicorn's keep-alive of 5 s)
        assert get(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /api/v1/whoami HTTP/1.1\r\n")
        time.sleep(0.2)  # a request's headers in two parts, well within the timeout
        sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        assert answer_head(sock).startswith(b"HTTP/1.1 200")


def answer_head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
