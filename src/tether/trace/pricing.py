"""Versioned model pricing. Each model call's cost is computed from its usage and this table."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tether.core import SpecError

_BUNDLED = Path(__file__).with_name("pricing.json")
_MAX_OTHER_NAMES = 1024
"""Names not in the table whose lookup is remembered (a gateway sees whatever names its
callers send: bounded)."""
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
    _other_names: dict[str, ModelPrice | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def price_for(self, model: str) -> ModelPrice | None:
        """The exact name, or the name with a dated snapshot suffix removed
        (``gpt-4.1-mini-2025-04-14`` is priced as ``gpt-4.1-mini``; ``o3-pro`` is not ``o3``)."""
        price = self.models.get(model)
        if price is not None:
            return price
        # Asked on every model call: a name not in the table (a snapshot, a model that is not
        # priced) is looked up once. The table does not change after it is made.
        known = self._other_names
        if model in known:
            return known[model]
        if len(known) >= _MAX_OTHER_NAMES:
            known.clear()
        found = known[model] = self.models.get(_SNAPSHOT_SUFFIX.sub("", model))
        return found

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

    def merged(self, other: PricingTable) -> PricingTable:
        """This table with ``other``'s prices over it (a model in both: ``other``'s price);
        the version names both, so a priced span says which prices it used."""
        return PricingTable(
            version=f"{self.version}+{other.version}", models={**self.models, **other.models}
        )

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


PRICES_FILE_ENV = "TETHER_PRICES_FILE"


def _price(path: Path, model: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(
            f"{path}: models.{model}.{field} must be a number of US dollars per 1M tokens, "
            f"got {value!r}"
        )
    if value < 0:
        raise SpecError(f"{path}: models.{model}.{field} must not be negative, got {value}")
    return float(value)


def user_pricing(path: str | Path) -> PricingTable:
    """A user's own prices: ``{"version": "...", "models": {"name": {"input": 1.0,
    "output": 2.0, "cached_input": 0.5}}}`` (US dollars per 1M tokens; ``cached_input``
    defaults to ``input``; ``version`` to ``user``). Errors name the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(
            f"cannot read the prices file {path}: {exc.strerror or exc}",
            hint=f"fix or unset {PRICES_FILE_ENV}",
        ) from None
    except ValueError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc}") from None
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise SpecError(f'{path}: expected an object with "models": {{name: prices}}')
    table: dict[str, ModelPrice] = {}
    for name, price in models.items():
        if not isinstance(price, dict) or "input" not in price or "output" not in price:
            raise SpecError(f'{path}: models.{name} needs "input" and "output" prices')
        unknown = set(price) - {"input", "output", "cached_input"}
        if unknown:
            raise SpecError(f"{path}: models.{name}: unknown field(s) {sorted(unknown)}")
        given = _price(path, name, "input", price["input"])
        table[name] = ModelPrice(
            input=given,
            output=_price(path, name, "output", price["output"]),
            cached_input=_price(path, name, "cached_input", price.get("cached_input", given)),
        )
    return PricingTable(version=str(raw.get("version") or "user"), models=table)


@cache
def _merged(path: str, mtime_ns: int) -> PricingTable:
    return default_pricing().merged(user_pricing(path))


def pricing_from_env() -> PricingTable:
    """The shipped table, with the prices of the file ``TETHER_PRICES_FILE`` names (if set)
    merged over it; the file is read again when it changes."""
    path = os.environ.get(PRICES_FILE_ENV)
    if not path:
        return default_pricing()
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = -1  # user_pricing says why it cannot be read
    return _merged(path, mtime)
