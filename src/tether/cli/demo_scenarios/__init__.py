"""Scenarios ``tether demo`` shows after the support agent's (issue 14): each runs offline
(scripted models, servers it starts on 127.0.0.1), leaves its runs in the demo's store, and
returns a ``ScenarioReport`` that prints a few lines and its JSON.

A scenario is an ``async def (trace, examples_dir) -> ScenarioReport``; add it to
``SCENARIOS`` (one line) to have ``tether demo`` run it."""

from tether.cli.demo_scenarios.budget_running_out import budget_running_out
from tether.cli.demo_scenarios.failing_upstream import (
    FailingUpstreamReport,
    UpstreamRun,
    failing_upstream_demo,
    failing_upstream_scenario,
    print_failing_upstream,
    run_failing_upstream,
)
from tether.cli.demo_scenarios.refund_approved import refund_approved
from tether.cli.demo_scenarios.refund_denied import refund_denied
from tether.cli.demo_scenarios.report import Scenario, ScenarioReport
from tether.cli.demo_scenarios.sandboxed_calculation import sandboxed_calculation

SCENARIOS: list[Scenario] = [
    refund_denied,
    refund_approved,
    failing_upstream_scenario,
    sandboxed_calculation,
    budget_running_out,
]
"""In the order ``tether demo`` runs and shows them."""

__all__ = [
    "SCENARIOS",
    "FailingUpstreamReport",
    "Scenario",
    "ScenarioReport",
    "UpstreamRun",
    "budget_running_out",
    "failing_upstream_demo",
    "failing_upstream_scenario",
    "print_failing_upstream",
    "refund_approved",
    "refund_denied",
    "run_failing_upstream",
    "sandboxed_calculation",
]
