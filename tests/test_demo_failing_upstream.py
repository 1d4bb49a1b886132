"""The failing-upstream demo scenario (issue 14 item 7): offline, as the demo will run it."""

from __future__ import annotations

import json

from rich.console import Console

from fakes.traces import trace_of
from tether.cli.demo_scenarios import print_failing_upstream, run_failing_upstream
from tether.trace import writer_for


def test_the_fallback_serves_while_the_breaker_is_open_then_a_probe_closes_it(
    sqlite_url: str,
) -> None:
    report = run_failing_upstream(trace=writer_for(sqlite_url))

    assert report.as_expected, json.dumps(report.to_json(), indent=1)
    _, spans, events = trace_of(sqlite_url, report.runs[3].run.run_id)
    refused = next(s for s in spans if s.kind == "model")
    assert refused.status_message.startswith(f"circuit open for {report.endpoint}")
    _, _, events = trace_of(sqlite_url, report.runs[2].run.run_id)
    assert any(e.name == "tether.circuit.open" for e in events)

    console = Console(record=True, width=200)
    print_failing_upstream(report, console)
    text = console.export_text()
    assert text.count("refused at once: the upstream was not called") == 2
    assert "answered by gpt-4.1-mini; circuit closed" in text
    assert [row["circuit"] for row in report.to_json()] == [
        "closed",
        "closed",
        "open",
        "open",
        "open",
        "closed",
    ]
