"""TCP servers on 127.0.0.1 standing in for a database: a forwarder to make a real database
reachable or not at will, and one that accepts connections and never answers (a hung server)."""

from __future__ import annotations

import contextlib
import socket
import threading


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Listener:
    """Accepts connections on ``127.0.0.1:port`` (0: a free one) and hands each to
    ``_handle``; ``close`` closes the listener and every socket kept in ``_sockets``."""

    def __init__(self, port: int = 0) -> None:
        self._server = socket.create_server(("127.0.0.1", port), backlog=64)
        self.port = int(self._server.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._closed:  # accepted while closing: refused after all
                client.close()
                return
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        # Closing alone does not wake a thread blocked in accept(), which would then take one
        # more connection (a store meant to be down answering once more): shut it down first.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy(_Listener):
    """Listens on ``127.0.0.1:port`` and forwards every connection to ``target``; between
    ``freeze`` and ``thaw`` it forwards nothing and keeps every connection open (a server that
    stopped answering: a frozen host, a network partition)."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._thawed = threading.Event()
        self._thawed.set()
        self._held = threading.Event()
        super().__init__(port)

    def freeze(self) -> None:
        self._held.clear()
        self._thawed.clear()

    def waiting(self) -> bool:
        """Whether, frozen, it holds something sent: a client waits for an answer."""
        return self._held.is_set()

    def thaw(self) -> None:
        self._thawed.set()

    def drop(self) -> None:
        """Close every connection made so far and go on listening: the server restarted (or a
        load balancer dropped idle connections), and a client must connect again."""
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _handle(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        self._sockets += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._thawed.is_set():
                    self._held.set()
                    self._thawed.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class SilentServer(_Listener):
    """Accepts connections and never reads or answers: a database server that hangs (the
    client's connection is open, and it waits for an answer that never comes)."""

    def _handle(self, client: socket.socket) -> None:
        self._sockets.append(client)


class ReplyDropper(_Listener):
    """Forwards every connection to ``target`` (a Redis), but drops the reply to the first
    command whose bytes hold ``command`` (Redis ran it; the client never hears): then keeps the
    connection silent (the client times out) or, with ``close``, closes it (a reset)."""

    def __init__(self, target: tuple[str, int], command: bytes, *, close: bool) -> None:
        self.target, self.command, self.close_after = target, command, close
        self._sent = threading.Event()
        self.dropped = threading.Event()
        super().__init__(0)

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        self._sockets += [client, upstream]
        threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._replies, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.command in data and not self.dropped.is_set():
                    self._sent.set()
                upstream.sendall(data)

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if self._sent.is_set() and not self.dropped.is_set():
                    self.dropped.set()
                    if self.close_after:
                        client.shutdown(socket.SHUT_RDWR)
                        return
                    continue
                client.sendall(data)
