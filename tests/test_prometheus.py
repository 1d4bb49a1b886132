"""Prometheus ``/metrics`` over real HTTP: a real scrape parsed by prometheus-client's text
parser, per-project series, and access (key required unless ``TETHER_METRICS_PUBLIC``)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_otlp_ingest import OPENINFERENCE, Site, _request, _span, site  # noqa: F401 (the fixture)
from tether.server import prometheus


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    prometheus._cache.clear()  # one scrape's figures must not leak into the next test's


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scrape_has_the_dashboards_series(site: Site) -> None:  # noqa: F811
    failing = _request(
        _span(
            "d000000000000001",
            None,
            "chat",
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1-mini"},
        )
    )
    failing["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"] = {
        "code": 2,
        "message": "rate limited",
    }
    with site.client("agent") as c:
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200
        assert c.post("/v1/traces", json=failing).status_code == 200
    with site.client("other_agent") as c:
        other = _request(_span("e000000000000001", None, "x", {}, trace="1" * 32))
        assert c.post("/v1/traces", json=other).status_code == 200
    with site.client("viewer") as c:
        answer = c.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = _samples(answer.text)
    ok = {
        "project": "default",
        "agent": "rag-agent",
        "version": "",
        "status": "completed",
        "outcome": "final_answer",
    }
    assert samples[("tether_runs_total", tuple(sorted(ok.items())))] == 1
    short = (("agent", "rag-agent"), ("project", "default"), ("version", ""))
    assert samples[("tether_tokens_total", tuple(sorted((*short, ("type", "input")))))] == 500
    assert samples[("tether_cost_usd_total", short)] > 0
    assert samples[("tether_run_latency_seconds_count", short)] == 1
    assert (
        samples[("tether_run_latency_seconds_bucket", tuple(sorted((*short, ("le", "1.0")))))] == 0
    )
    assert (
        samples[("tether_run_latency_seconds_bucket", tuple(sorted((*short, ("le", "2.5")))))] == 1
    )
    model = (("model", "gpt-4.1-mini"), ("outcome", "final_answer"), ("project", "default"))
    assert samples[("tether_model_runs_total", model)] == 1
    errors = (("category", "run_error"), ("project", "default"))
    assert samples[("tether_run_errors_total", errors)] == 1
    assert not any(dict(labels).get("project") == "other" for _, labels in samples)
    with site.client("admin") as c:  # an admin sees every project
        every = _samples(c.get("/metrics").text)
    assert any(dict(labels).get("project") == "other" for _, labels in every)


def test_metrics_need_a_key_that_reads(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    with httpx.Client(base_url=site.url) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        monkeypatch.setenv(prometheus.PUBLIC_ENV, "1")
        assert anonymous.get("/metrics").status_code == 200
        monkeypatch.delenv(prometheus.PUBLIC_ENV)
    with site.client("agent") as c:  # a sending key does not read
        assert c.get("/metrics").status_code == 403


def test_series_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "MAX_SERIES", 3)
    rows = [("p", f"agent{i}", "v", 10 - i) for i in range(6)]
    kept = prometheus._bounded(rows, 3, 1)
    assert len(kept) == 3
    assert kept[-1] == (("p", "_other", "_other"), [8 + 7 + 6 + 5.0])


def test_another_projects_metrics_are_refused_not_swapped_for_the_keys_own(site: Site) -> None:  # noqa: F811
    """``/metrics?project=other`` with a key of ``default`` answered 200 with ``default``'s
    series, as if the scraper had what it asked for: refused as the API refuses another
    project (404, a JSON reason), and an admin gets that project's series only."""
    with site.client("agent") as c:
        assert c.post("/v1/traces", json=OPENINFERENCE).status_code == 200
    with site.client("other_agent") as c:
        other = _request(_span("e000000000000001", None, "x", {}, trace="1" * 32))
        assert c.post("/v1/traces", json=other).status_code == 200
    for role in ("viewer", "developer"):
        with site.client(role) as c:
            answer = c.get("/metrics", params={"project": "other"})
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"] == "no project 'other'"
            assert c.get("/metrics", params={"project": "nope"}).status_code == 404
            own = c.get("/metrics", params={"project": "default"})
            assert own.status_code == 200
            assert {dict(labels).get("project") for _, labels in _samples(own.text)} <= {
                "default",
                None,
            }
    with site.client("agent") as c:  # a key that cannot read learns nothing either
        assert c.get("/metrics", params={"project": "other"}).status_code == 404
    with site.client("admin") as c:
        answer = c.get("/metrics", params={"project": "other"})
        assert answer.status_code == 200
        projects = {dict(labels).get("project") for _, labels in _samples(answer.text)}
        assert "other" in projects and "default" not in projects
