"""The demo's guard scenarios, checked in the trace they leave: the injection hidden in a
help-center article is withheld (and the answer comes from the order), the answer that broke
the schema is re-asked and fixed, the customer's e-mail and card number never reach the
stored trace."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from fakes.traces import trace_of
from tether.cli.demo import run_demo
from tether.controls.guard_base import GUARD_CHANNEL, GUARD_NAME
from tether.runtime.paradigms import EVENT_OUTPUT_VALIDATION
from tether.trace import semconv


def test_the_demo_shows_the_guards_at_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = io.StringIO()
    run_demo(url, console=Console(file=out, width=200), as_json=True)
    listed = json.loads(out.getvalue())
    results = {r["scenario"]: r for r in listed}
    # The issue-14 scenarios follow the support agent's, each with its name.
    assert [r["scenario"] for r in listed[-5:]] == [
        "refund denied by policy",
        "refund approved by a person",
        "failing upstream",
        "sandboxed calculation",
        "budget running out mid-run",
    ]

    caught = results["injection caught"]
    assert caught["outcome"] == "final_answer"
    assert "Your order 1002 is delivered with UPS" in caught["output"]
    assert "help@acme-refunds.example" not in caught["output"]
    _, spans, events = trace_of(url, caught["run_id"])
    blocked = [
        e
        for e in events
        if e.attributes.get(GUARD_NAME) == "injection"
        and e.attributes[semconv.TETHER_DECISION] == "block"
    ]
    (verdict,) = blocked
    span = next(s for s in spans if s.span_id == verdict.span_id)
    assert span.attributes[semconv.GEN_AI_TOOL_NAME] == "kb_lookup"
    assert verdict.attributes[GUARD_CHANNEL] == "document"

    masked = results["personal data masked"]
    assert masked["outcome"] == "final_answer"
    assert masked["output"].endswith("will confirm it to <EMAIL_ADDRESS>.")
    run, _, _ = trace_of(url, masked["run_id"])
    assert run.input == (
        "Please refund order 1003 to my card <CREDIT_CARD> and confirm to <EMAIL_ADDRESS>."
    )
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"jane.roe@example.org" not in stored and b"4111 1111 1111 1111" not in stored

    reasked = results["schema re-asked"]
    assert reasked["agent"] == "order-report" and reasked["outcome"] == "final_answer"
    assert json.loads(reasked["output"]) == {
        "order_id": 1042,
        "status": "in transit",
        "carrier": "DHL",
    }
    _, spans, events = trace_of(url, reasked["run_id"])
    checks = [e.attributes for e in events if e.name == EVENT_OUTPUT_VALIDATION]
    assert [c["valid"] for c in checks] == [False, True]
    assert any("/order_id" in p for p in checks[0]["problems"])
    assert sum(s.kind == "model" for s in spans) == 3  # tool call, wrong answer, fixed answer
