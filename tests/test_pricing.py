"""The versioned pricing table and what it means for cost limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether import Agent, AgentSpec, Limits, ModelConfig, ScriptedModel, SpecError
from tether.trace import PricingTable, default_pricing


def test_bundled_table_is_versioned_and_prices_known_models() -> None:
    table = default_pricing()
    assert table.version and table.price_for("gpt-4.1-mini") is not None


def test_dated_snapshots_take_their_base_price_and_other_suffixes_do_not() -> None:
    table = default_pricing()
    assert table.price_for("gpt-4.1-mini-2025-04-14") == table.price_for("gpt-4.1-mini")
    assert table.price_for("o3-pro") is None
    assert table.price_for("gpt-4.1-mini-fast") is None


def test_cost_counts_cached_input_at_the_cached_rate(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "version": "test-1",
                "models": {"m": {"input": 2.0, "cached_input": 0.5, "output": 8.0}},
            }
        )
    )
    table = PricingTable.from_file(path)
    # 1M input of which 400k cached, 100k output.
    assert table.cost("m", 1_000_000, 100_000, 400_000) == pytest.approx(
        0.6 * 2.0 + 0.4 * 0.5 + 0.1 * 8.0
    )
    assert table.cost("unknown", 10, 10) is None


def test_costs_are_rounded_free_of_float_noise(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"version": "t", "models": {"m": {"input": 0.4, "output": 1.6}}}))
    table = PricingTable.from_file(path)
    # Unrounded: (1 * 0.4 + 4 * 1.6) / 1e6 == 6.800000000000001e-06.
    assert repr(table.cost("m", 1, 4)) == "6.8e-06"
    assert repr(table.cost("m", 77, 100)) == "0.0001908"


def test_invalid_table_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"version": "x", "models": {"m": {"input": "cheap"}}}')
    with pytest.raises(SpecError, match="invalid pricing table"):
        PricingTable.from_file(path)


def test_cost_limit_on_an_unpriced_model_is_refused() -> None:
    spec = AgentSpec(
        name="a",
        model=ModelConfig(provider="scripted", name="my-local-llm", script="unused.yaml"),
        limits=Limits(max_cost_usd=1.0),
    )
    model = ScriptedModel([{"text": "x"}], name="my-local-llm")
    with pytest.raises(SpecError, match="no price for my-local-llm"):
        Agent(spec, model=model, trace=False)
    # Without a cost limit the same agent runs (its cost is simply unknown).
    spec = spec.model_copy(update={"limits": Limits()})
    result = Agent(spec, model=model, trace=False).run_sync("hi")
    assert result.cost_usd is None and result.state.unpriced_calls == 1
