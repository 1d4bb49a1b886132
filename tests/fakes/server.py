"""Tether's server for tests: the app on a real uvicorn in a thread, on 127.0.0.1, or
``tether serve`` in a child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class ServeProcess:
    """A running ``tether serve``: its URL, the key it printed, its output so far."""

    def __init__(self, proc: subprocess.Popen[str], url: str, key: str | None) -> None:
        self.proc = proc
        self.url = url
        self.key = key


@contextmanager
def tether_serve(*args: str, env: Mapping[str, str] | None = None) -> Iterator[ServeProcess]:
    """``tether serve --port 0 ARGS`` in a child process, until it printed its URL (and key);
    stopped with Ctrl-C (SIGINT) afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ if env is None else env),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        if not match:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"tether serve did not start: {first!r} {err!r}")
        key = None
        if "--print-key" in args:
            found = re.search(r"tth_\S+", proc.stdout.readline())
            key = found.group(0) if found else None
        yield ServeProcess(proc, match.group(0), key)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
