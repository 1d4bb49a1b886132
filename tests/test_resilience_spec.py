"""The spec's ``resilience`` section: what it accepts, what it refuses (with file, line and
field, never a traceback), what ``tether validate`` warns about, and that adding it changed no
existing agent's version."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes.specs import spec_error, write_spec
from tether import Agent, ScriptedModel
from tether.cli import cli
from tether.resilience import CircuitBreakerModel, LocalBreakerStore
from tether.runtime import check_spec
from tether.spec import CircuitBreakerConfig, load_spec

BASE = """\
name: demo                  # 1
model:                      # 2
  provider: scripted        # 3
  name: gpt-test            # 4
  script: demo.script.yaml  # 5
"""


SCRIPT = "steps: [{text: hi}]\n"
write = partial(write_spec, script=SCRIPT)
load_error = partial(spec_error, script=SCRIPT)


def test_the_section_loads_with_defaults_and_switches(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.resilience.circuit_breaker is None and spec.resilience.degraded_answer is None
    on = load_spec(write(tmp_path, BASE + "resilience: {circuit_breaker: true}\n"))
    assert on.resilience.circuit_breaker == CircuitBreakerConfig()
    off = load_spec(write(tmp_path, BASE + "resilience: {circuit_breaker: false}\n"))
    assert off.resilience.circuit_breaker is None
    full = load_spec(
        write(
            tmp_path,
            BASE + "resilience:\n"
            "  circuit_breaker: {failures: 2, window_s: 5, cooldown_s: 1.5, half_open_probes: 3,"
            " shared: local}\n"
            "  degraded_answer: Sorry, try again later.\n",
        )
    )
    assert full.resilience.circuit_breaker == CircuitBreakerConfig(
        failures=2, window_s=5, cooldown_s=1.5, half_open_probes=3, shared="local"
    )
    assert full.resilience.degraded_answer == "Sorry, try again later."


def test_existing_versions_are_unchanged(tmp_path: Path) -> None:
    without = load_spec(write(tmp_path, BASE)).version
    spelled = load_spec(
        write(tmp_path, BASE + "resilience: {circuit_breaker: null, degraded_answer: null}\n")
    )
    assert spelled.version == without
    with_breaker = load_spec(write(tmp_path, BASE + "resilience: {circuit_breaker: {}}\n"))
    assert with_breaker.version != without


@pytest.mark.parametrize(
    ("section", "field", "says"),
    [
        ("  circuit_breaker: {failures: 0}", "resilience.circuit_breaker.failures", "greater"),
        ("  circuit_breaker: {failures: -3}", "resilience.circuit_breaker.failures", "greater"),
        ("  circuit_breaker: {failures: 1e12}", "resilience.circuit_breaker.failures", ""),
        ("  circuit_breaker: {window_s: .nan}", "resilience.circuit_breaker.window_s", "finite"),
        ("  circuit_breaker: {cooldown_s: .inf}", "resilience.circuit_breaker.cooldown_s", ""),
        ("  circuit_breaker: {cooldown_s: 1e9}", "resilience.circuit_breaker.cooldown_s", "86400"),
        ("  circuit_breaker: {cooldown_s: 0}", "resilience.circuit_breaker.cooldown_s", "greater"),
        (
            "  circuit_breaker: {half_open_probes: 0}",
            "resilience.circuit_breaker.half_open_probes",
            "greater",
        ),
        ("  circuit_breaker: {failures: yes}", "resilience.circuit_breaker.failures", "true/"),
        ("  circuit_breaker: {window_s: true}", "resilience.circuit_breaker.window_s", "true/"),
        ("  circuit_breaker: {cooldown_s: true}", "resilience.circuit_breaker.cooldown_s", "true"),
        (
            "  circuit_breaker: {half_open_probes: true}",
            "resilience.circuit_breaker.half_open_probes",
            "true/false",
        ),
        ("  circuit_breaker: {shared: memcached}", "resilience.circuit_breaker.shared", "redis"),
        ("  circuit_breaker: {treshold: 3}", "resilience.circuit_breaker.treshold", "Extra"),
        ("  circuit_breaker: yes please", "resilience.circuit_breaker", "dictionary"),
        ("  degraded_answer: ''", "resilience.degraded_answer", "must not be empty"),
        ("  degraded_answer: '   '", "resilience.degraded_answer", "must not be empty"),
        ("  degraded_answer: [a, b]", "resilience.degraded_answer", "string"),
        ("  degraded_answer: " + "x" * 10_001, "resilience.degraded_answer", "10000"),
        ("  fallback_answer: hi", "resilience.fallback_answer", "Extra"),
    ],
)
def test_bad_values_name_file_line_and_field(
    tmp_path: Path, section: str, field: str, says: str
) -> None:
    message = load_error(tmp_path, BASE + "resilience:               # 6\n" + section + "\n")
    assert f"agent.yaml:7: {field}" in message
    assert says in message
    assert "Traceback" not in message


def test_validate_reports_a_bad_section_without_a_traceback(tmp_path: Path) -> None:
    spec = write(tmp_path, BASE + "resilience:\n  circuit_breaker: {failures: -1}\n")
    result = CliRunner().invoke(cli, ["validate", str(spec), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert problems[0]["line"] == 7 and problems[0]["field"] == (
        "resilience.circuit_breaker.failures"
    )


def test_validate_warns_when_hanging_models_outlast_the_run(tmp_path: Path) -> None:
    (tmp_path / "backup.yaml").write_text("steps: [{text: backup}]\n")
    spec = write(
        tmp_path,
        "name: slow\n"
        "model: {provider: openai, name: gpt-4.1-mini, base_url: 'http://127.0.0.1:9/v1'}\n"
        "fallback_models: [{provider: scripted, name: backup, script: backup.yaml}]\n",
    )
    [warning] = check_spec(spec).warnings
    assert warning.startswith("fallback_models[0] may never be tried: the models before it can")
    assert "240s" in warning and "limits.timeout_s (120s)" in warning

    spec.write_text(
        spec.read_text().replace("base_url:", "timeout_s: 10, max_retries: 1, base_url:")
    )
    assert check_spec(spec).warnings == []

    spec.write_text(
        "name: slow\n"
        "model: {provider: openai, name: gpt-4.1-mini, base_url: 'http://127.0.0.1:9/v1'}\n"
        "resilience: {degraded_answer: Sorry.}\n"
    )
    [warning] = check_spec(spec).warnings
    assert warning.startswith("resilience.degraded_answer may never be given")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 0 and "degraded_answer may never be given" in result.output


def test_validate_names_a_missing_redis_url(tmp_path: Path) -> None:
    spec = write(tmp_path, BASE + "resilience: {circuit_breaker: {shared: redis}}\n")
    check = check_spec(spec)
    assert check.missing_env == ["TETHER_REDIS_URL"]
    assert "TETHER_REDIS_URL" in check.warnings[0]


async def test_given_models_get_breakers_too_and_keep_their_names(tmp_path: Path) -> None:
    spec = write(tmp_path, BASE + "resilience: {circuit_breaker: true, degraded_answer: Later.}\n")
    store = LocalBreakerStore()
    mine = ScriptedModel([{"text": "mine"}], name="gpt-test")
    agent = Agent.from_yaml(spec, model=mine, trace=False, breaker_store=store)
    [wrapped] = agent.harness.chain.models
    assert isinstance(wrapped, CircuitBreakerModel) and wrapped.model is mine
    assert agent.model is mine  # the agent's own attributes are the models as given
    assert wrapped.breaker.store is store and wrapped.breaker.endpoint == "scripted/gpt-test"
    assert agent.harness.degraded_answer == "Later."
    assert (await agent.run("hi")).output == "mine"


def test_without_the_section_the_chain_is_the_models_as_they_are(tmp_path: Path) -> None:
    agent = Agent.from_yaml(write(tmp_path, BASE), trace=False)
    assert isinstance(agent.harness.chain.primary, ScriptedModel)
    assert agent.harness.degraded_answer is None
