"""The frames ``isolation: process`` sends between the agent's process and its worker.

Each frame is a header (call id: u64, kind: u8, payload length: u32, big-endian) and the
payload. Both sides speak it over plain pipes; nothing is pickled, so the worker never needs
to import anything of the caller's (its ``__main__`` above all).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

HEADER = struct.Struct(">QBI")

CALL = 1
"""To the worker: payload is the call as JSON (see ``isolation.py``)."""
KILL = 2
"""To the worker: kill the call's process group (empty payload)."""
RESULT = 3
"""From the worker: payload is the JSON reply the call's process wrote."""
FAILED = 4
"""From the worker: payload is UTF-8 text saying why the call has no reply."""


class Frame(NamedTuple):
    call_id: int
    kind: int
    payload: bytes


def encode_frame(call_id: int, kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(call_id, kind, len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into frames (a pipe read may end anywhere in one)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER.size:
            call_id, kind, length = HEADER.unpack_from(self._buffer)
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(call_id, kind, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return frames


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking ``fd`` (a pipe takes it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def describe_exit_code(code: int) -> str:
    """``exit code 3`` or ``killed by signal 9``, for a subprocess-style return code."""
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
