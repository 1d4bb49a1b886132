"""User prices from TETHER_PRICES_FILE, merged over the shipped table; used by runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether import SpecError
from tether.trace import default_pricing
from tether.trace.pricing import pricing_from_env, user_pricing


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_user_prices_merge_over_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        {
            "version": "acme-2026-11",
            "models": {
                "gpt-4.1-mini": {"input": 1.0, "output": 2.0, "cached_input": 0.25},
                "my-local-llm": {"input": 0.5, "output": 0.5},
            },
        },
    )
    monkeypatch.setenv("TETHER_PRICES_FILE", str(path))
    table = pricing_from_env()
    assert table.version == f"{default_pricing().version}+acme-2026-11"
    # 1M tokens in, 400k of them cached, 1M out: 600k * 1.0 + 400k * 0.25 + 1M * 2.0.
    assert table.cost("gpt-4.1-mini", 1_000_000, 1_000_000, 400_000) == pytest.approx(2.7)
    assert table.cost("my-local-llm", 2_000_000, 0, 2_000_000) == pytest.approx(1.0)
    assert table.price_for("gpt-4o") == default_pricing().price_for("gpt-4o")
    path.write_text(json.dumps({"models": {"my-local-llm": {"input": 9, "output": 9}}}))
    import os

    os.utime(path, ns=(1, 1))  # another mtime: the file is read again
    assert pricing_from_env().price_for("my-local-llm").input == 9  # type: ignore[union-attr]
    monkeypatch.delenv("TETHER_PRICES_FILE")
    assert pricing_from_env() is default_pricing()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], '"models"'),
        ({"models": {"m": {"input": 1}}}, 'models.m needs "input" and "output"'),
        ({"models": {"m": {"input": "1", "output": 1}}}, "models.m.input must be a number"),
        ({"models": {"m": {"input": -1, "output": 1}}}, "models.m.input must not be negative"),
        ({"models": {"m": {"input": 1, "output": 1, "cache": 1}}}, "unknown field"),
    ],
)
def test_a_bad_prices_file_names_the_field(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(SpecError, match=message) as info:
        user_pricing(path)
    assert str(path) in info.value.message


def test_an_unreadable_prices_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the prices file"):
        user_pricing(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid JSON"):
        user_pricing(broken)


def test_runs_are_priced_with_the_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether import Agent, AgentSpec, Limits, ModelConfig, ScriptedModel

    spec = AgentSpec(
        name="a",
        model=ModelConfig(provider="scripted", name="my-local-llm", script="unused.yaml"),
        limits=Limits(max_cost_usd=1.0),
    )
    model = ScriptedModel([{"text": "x"}], name="my-local-llm")
    with pytest.raises(SpecError, match="no price for my-local-llm"):
        Agent(spec, model=model, trace=False)
    path = write(tmp_path, {"models": {"my-local-llm": {"input": 1.0, "output": 2.0}}})
    monkeypatch.setenv("TETHER_PRICES_FILE", str(path))
    result = Agent(spec, model=model, trace=False).run_sync("hi")
    assert result.cost_usd is not None and result.cost_usd > 0
