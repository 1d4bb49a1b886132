"""Versioned model pricing. Each model call's cost is computed from its usage and this table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tether.core import SpecError

_BUNDLED = Path(__file__).with_name("pricing.json")
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


COST_DIGITS = 10
"""Costs are rounded to 1e-10 USD: far below a cent, and free of float noise such as
``0.00019080000000000003`` in JSON and traces."""


def round_cost(usd: float) -> float:
    """A cost (or a sum of costs) without float noise."""
    return round(usd, COST_DIGITS)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per one million tokens."""

    input: float
    output: float
    cached_input: float


@dataclass(frozen=True)
class PricingTable:
    """Prices by model name, with the table's version recorded on every priced span."""

    version: str
    models: dict[str, ModelPrice]

    def price_for(self, model: str) -> ModelPrice | None:
        """The exact name, or the name with a dated snapshot suffix removed
        (``gpt-4.1-mini-2025-04-14`` is priced as ``gpt-4.1-mini``; ``o3-pro`` is not ``o3``)."""
        if model in self.models:
            return self.models[model]
        base = _SNAPSHOT_SUFFIX.sub("", model)
        return self.models.get(base)

    def cost(
        self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> float | None:
        """Cost in USD, or ``None`` for a model the table does not know."""
        price = self.price_for(model)
        if price is None:
            return None
        uncached = max(input_tokens - cached_input_tokens, 0)
        cost = (
            uncached * price.input
            + cached_input_tokens * price.cached_input
            + output_tokens * price.output
        ) / 1_000_000
        return round_cost(cost)

    @classmethod
    def from_file(cls, path: str | Path) -> PricingTable:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            models = {
                name: ModelPrice(
                    input=float(p["input"]),
                    output=float(p["output"]),
                    cached_input=float(p.get("cached_input", p["input"])),
                )
                for name, p in raw["models"].items()
            }
            return cls(version=str(raw["version"]), models=models)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpecError(f"{path}: invalid pricing table: {exc!r}") from None


@cache
def default_pricing() -> PricingTable:
    """The pricing table shipped with this Tether release."""
    return PricingTable.from_file(_BUNDLED)
