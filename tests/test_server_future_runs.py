"""Runs stamped ahead of the server's clock (a client's clock ahead, OTLP spans timestamped
ahead) are on the dashboard and in the metrics of the default range, through a real server."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

import httpx

from fakes.otlp import json_request, json_span
from fakes.server import tether_serve

HOUR_NS = 3600 * 1_000_000_000


def test_a_run_stamped_an_hour_ahead_is_in_the_default_range(sqlite_url: str) -> None:
    ahead = time.time_ns() + HOUR_NS
    span = json_span(
        "a1a1a1a1a1a1a1a1",
        None,
        "agent",
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "ahead"},
        trace="e" * 32,
        start=ahead,
        end=ahead + 1_000_000,
    )
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve("--dev", env=env) as served, httpx.Client(base_url=served.url) as client:
        assert client.post("/v1/traces", json=json_request(span)).status_code == 200
        (run,) = client.get("/api/v1/runs").json()["runs"]
        assert run["started_ns"] == ahead
        metrics = client.get("/api/v1/metrics").json()
        assert metrics["totals"]["requests"] == 1
        assert metrics["until_ns"] > ahead
        page = client.get("/dashboard")
        assert page.status_code == 200
        kpi = re.search(r'id="kpi-runs">([^<]*)<', page.text)
        assert kpi is not None and kpi.group(1) == "1"
        assert 'id="range-ahead"' in page.text
        # A range the user chose ends where they said: the run is not in the last hour to now.
        until = datetime.now(UTC).isoformat()
        chosen = client.get("/api/v1/metrics", params={"until": until}).json()
        assert chosen["totals"]["requests"] == 0
        custom = client.get("/dashboard", params={"until": until})
        assert 'id="range-ahead"' not in custom.text


def test_the_default_range_ends_now_without_runs_ahead(sqlite_url: str) -> None:
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve("--dev", env=env) as served, httpx.Client(base_url=served.url) as client:
        before = time.time_ns()
        metrics = client.get("/api/v1/metrics").json()
        assert before <= metrics["until_ns"] <= time.time_ns()
        assert metrics["until_ns"] - metrics["since_ns"] == 24 * HOUR_NS
        assert 'id="range-ahead"' not in client.get("/dashboard").text
