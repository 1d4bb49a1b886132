"""Clients that hold a connection by being slow (slowloris): ``tether serve --read-timeout``
closes a connection whose request headers take longer than the timeout, and answers 408 to a
body that pauses longer; kept-alive idle connections and clients that are merely a little slow
are served. A real server in a child process, raw sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import select
import signal
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
    return replies_while_trickling(sock, trickle) is not None


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


@pytest.fixture
def keyed(sqlite_url: str) -> Iterator[ServeProcess]:
    """A server that asks for a key (no ``--dev``)."""
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve("--print-key", "--read-timeout", TIMEOUT, env=env) as server:
        yield server


def replies_while_trickling(sock: socket.socket, trickle: bytes) -> bytes | None:
    """What the server sends until it closes ``sock`` while the client sends ``trickle`` a
    byte every 0.2 s; None when it is still open after ``PATIENCE`` seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + PATIENCE
    data = b""
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(trickle):
                sock.sendall(trickle[sent : sent + 1])
                sent += 1
            chunk = sock.recv(65536)
            if chunk == b"":
                return data
            data += chunk
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data
    return None


def test_headers_larger_than_the_limit_get_431(served: ServeProcess) -> None:
    """uvicorn kept every header and the URL as they came: one client sending small headers
    as fast as it could made the server hold 700 MB in 5 seconds."""
    fields = b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(101))
    with connection(served) as sock:
        sock.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n")
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:300]
    assert b"more than 100 header fields" in reply
    big = b"X-Big: " + b"a" * (400 << 10)  # never ends: no deadline, only the size ends it
    with connection(served) as sock:
        sock.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for start in range(0, len(big), 8192):
                sock.sendall(big[start : start + 8192])
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused while sending: the answer was sent before the reset
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:300]
    assert b"larger than 65,536 bytes" in reply
    with connection(served) as sock:  # a request of ordinary headers is served
        many = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 300) for i in range(90))
        sock.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
        assert answer_head(sock).startswith(b"HTTP/1.1 200")


def test_an_answer_before_the_body_closes_the_connection(
    keyed: ServeProcess, served: ServeProcess
) -> None:
    """A 401 (no key) or 413 (a declared length too large) is answered before the body is
    read: kept alive, the connection went on taking the rest of the body, read and dropped,
    for as long as the client sent a part every few seconds, past every deadline."""
    cases = [
        (keyed, "/api/v1/projects", b"Transfer-Encoding: chunked", b"1\r\na\r\n" * 200, 401),
        (keyed, "/v1/traces", b"Content-Length: 1000", b"a" * 1000, 401),
        (served, "/v1/traces", b"Content-Length: 17000000", b"a" * 1000, 413),
    ]
    for server, path, framing, body, status in cases:
        with connection(server) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + framing
                + b"\r\n\r\n"
            )
            reply = replies_while_trickling(sock, body)
            assert reply is not None, f"{path}: the connection was kept open"
            assert reply.startswith(b"HTTP/1.1 %d" % status), (path, reply[:300])
            assert b"connection: close" in reply.lower(), (path, reply[:300])


def test_a_body_sent_slower_than_the_least_rate_gets_408(
    keyed: ServeProcess, served: ServeProcess
) -> None:
    """Each part within the timeout was enough: a byte every 0.9 s of a 1 s timeout held the
    sign-in form's 16 KiB (read before any key is known) for four hours."""
    cases = [
        (keyed, "/login", "application/x-www-form-urlencoded", None),
        (served, "/api/v1/projects", "application/json", None),
        (served, "/v1/traces", "application/json", "message"),
    ]
    for server, path, media, field in cases:
        with connection(server) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
                "Content-Length: 10000\r\n\r\n".encode()
            )
            reply = replies_while_trickling(sock, b"a" * 10000)
            assert reply is not None, f"{path}: the slow body was taken for {PATIENCE}s"
            assert reply.startswith(b"HTTP/1.1 408"), (path, reply[:300])
            said = json.loads(reply.partition(b"\r\n\r\n")[2])
            assert "slower than 1,024 bytes a second" in said[field or "error"], said


def server_says(served: ServeProcess, text: str) -> bool:
    """Whether the server writes ``text`` to its stderr within ``PATIENCE`` seconds."""
    assert served.proc.stderr is not None
    fd = served.proc.stderr.fileno()
    said = b""
    deadline = time.monotonic() + PATIENCE
    while text.encode() not in said:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        said += chunk
    return True


def test_a_client_that_reads_none_of_its_answers_is_cut_off(served: ServeProcess) -> None:
    """The route waited for the socket to drain without end: a few pipelined requests for a
    static file (no key needed), never read, held the connection, its task and the open file
    past every deadline."""
    url = urlsplit(served.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname or "127.0.0.1", url.port or 80))
    try:
        request = b"GET /static/vendor/htmx-2.0.11.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request * 200)  # 10 MB of answers: more than the sockets hold
        port = sock.getsockname()[1]
        said = server_says(served, f"127.0.0.1:{port}: it read none of its answer")
        assert said, "the connection of a client that reads nothing was kept"
        reply = answer(sock)  # what was sent before, then the end
        assert reply.count(b"HTTP/1.1 200") < 200
    finally:
        sock.close()


def test_uvicorns_warnings_about_a_request_name_its_client(served: ServeProcess) -> None:
    """uvicorn's own lines for a request it refuses ("Invalid HTTP request received.") named
    no client: a scanner could not be told from a broken proxy. They name its address, and
    nothing of what it sent (its key)."""
    with connection(served) as sock:
        sock.sendall(b"GET /\x00\x01 HTTP/1.1\r\nAuthorization: Bearer tth_not_logged\r\n\r\n")
        reply = answer(sock)
        port = sock.getsockname()[1]
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    said = server_says(served, f"Invalid HTTP request received. (client 127.0.0.1:{port})")
    assert said, "uvicorn's warning does not name the client"
    served.proc.send_signal(signal.SIGINT)
    rest = served.proc.communicate(timeout=30)[1]
    assert "tth_not_logged" not in rest
