"""A TCP server on 127.0.0.1 that accepts connections and never answers: a database server
that hangs (the kernel completes each handshake; nothing is ever read or sent)."""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentServer:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self._server.getsockname()[1])
        self._held: list[socket.socket] = []  # open, unread: the client waits for an answer
        self._closed = False
        threading.Thread(target=self._accept, name="silent-server", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._held.append(client)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        for sock in self._held:
            with contextlib.suppress(OSError):
                sock.close()
