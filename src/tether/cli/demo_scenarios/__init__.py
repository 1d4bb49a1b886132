"""Scenarios ``tether demo`` can show besides the support agent's (issue 14): each runs
offline against servers it starts on 127.0.0.1, returns a report, and prints it."""

from tether.cli.demo_scenarios.failing_upstream import (
    FailingUpstreamReport,
    UpstreamRun,
    failing_upstream_demo,
    print_failing_upstream,
    run_failing_upstream,
)

__all__ = [
    "FailingUpstreamReport",
    "UpstreamRun",
    "failing_upstream_demo",
    "print_failing_upstream",
    "run_failing_upstream",
]
