"""Trace and span ids: W3C format, unique, and not repeated by a forked child or a seeded
``random``."""

from __future__ import annotations

import os
import random
import re

from tether.core import new_span_id, new_trace_id


def test_ids_have_the_w3c_format_and_do_not_repeat() -> None:
    traces = {new_trace_id() for _ in range(10_000)}
    spans = {new_span_id() for _ in range(10_000)}
    assert len(traces) == 10_000 and len(spans) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) and t != "0" * 32 for t in traces)
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) and s != "0" * 16 for s in spans)


def test_seeding_the_global_random_does_not_repeat_ids() -> None:
    random.seed(42)
    first = new_trace_id()
    random.seed(42)
    assert new_trace_id() != first


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave at once
        os.write(write, " ".join(new_trace_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    parent = [new_trace_id() for _ in range(3)]
    child = os.read(read, 4096).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 3 and not set(child) & set(parent)
