"""The spec's ``budgets`` section: token and US-dollar budgets, and rate limits.

::

    budgets:
      policy: ../policies/budgets.yaml    # shared budgets (the same shape under `budgets:`)
      backend: sql                        # or redis (several processes or replicas)
      limits:
        - {scope: project, window: month, usd: 500}
        - {scope: end_user, window: day, usd: 2, tokens: 200000}
        - {scope: run, usd: 0.50}
      rate_limits:
        - {scope: project, rpm: 600, tpm: 2000000}

Each model call reserves its worst case (its input, estimated, plus its ``max_tokens``, at the
model's price) on every budget that applies to it, all or none, and is refused when one of them
has no room; after the call the reservation becomes what the call really used. Everything that
cannot work is refused when the spec loads, naming its line: a budget that is zero, negative or
absurd, an unknown scope, window or backend, a window that does not go with its scope, a
budget given twice.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from tether.core.settings import redis_url_option_refused
from tether.spec.model import MAX_BUDGET_TOKENS, MAX_BUDGET_USD, _Strict

BudgetScope = Literal["project", "agent", "end_user", "run"]
BUDGET_SCOPES: tuple[BudgetScope, ...] = ("project", "agent", "end_user", "run")
"""Who a budget counts: the caller's project, the agent (in its project), the caller's end user
(in its project), or the run alone."""
BudgetWindow = Literal["run", "day", "month"]
BUDGET_WINDOWS: tuple[BudgetWindow, ...] = ("run", "day", "month")
"""Over what a budget counts: one run, a calendar day or a calendar month (UTC)."""

MIN_BUDGET_USD = 0.000_001
"""The smallest: budgets count in millionths of a dollar."""
MAX_RPM = 10_000_000
MAX_TPM = 10**12
MAX_HOLD_S = 86_400.0
MAX_OUTPUT_TOKENS = 10_000_000
DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""A model call's output tokens in its worst case when its request sets no ``max_tokens``
(budgets' ``max_output_tokens``, and run limits for a call whose usage went unreported)."""
MAX_WAIT_S = 60.0
REDIS_SCHEMES = ("redis", "rediss", "unix")


class _Section(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BudgetLimit(_Section):
    """One budget: tokens, US dollars or both, of one scope over one window."""

    scope: BudgetScope
    """``project``, ``agent``, ``end_user`` or ``run``."""
    window: BudgetWindow | None = None
    """``run``, ``day`` or ``month`` (UTC calendar days and months); a ``run`` budget's window
    is the run (the default there), the others need ``day`` or ``month``."""
    tokens: int | None = Field(default=None, gt=0, le=MAX_BUDGET_TOKENS)
    """Input plus output tokens."""
    usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD)
    """Model cost in US dollars, from the pricing table (counted in millionths of a dollar)."""

    @field_validator("tokens", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        return _whole_number(value)

    @field_validator("usd")
    @classmethod
    def _micro(cls, usd: float | None) -> float | None:
        if usd is not None and usd < MIN_BUDGET_USD:
            raise ValueError(f"must be at least {MIN_BUDGET_USD:.6f} (budgets count millionths)")
        return usd

    @model_validator(mode="after")
    def _check(self) -> BudgetLimit:
        if self.tokens is None and self.usd is None:
            raise ValueError("give the budget in tokens, usd or both")
        if self.scope == "run":
            if self.window not in (None, "run"):
                raise ValueError(
                    f"a run budget counts one run: its window is 'run', not {self.window!r}"
                )
            object.__setattr__(self, "window", "run")
        elif self.window is None:
            raise ValueError(f"a {self.scope} budget needs a window: day or month")
        elif self.window == "run":
            raise ValueError(
                f"window 'run' goes with scope 'run' (a budget of each run); a {self.scope} "
                "budget counts a day or a month"
            )
        return self


class RateLimit(_Section):
    """Model calls and tokens per minute of one scope (a fixed window: each UTC minute)."""

    scope: BudgetScope
    """``project``, ``agent``, ``end_user`` or ``run``."""
    rpm: int | None = Field(default=None, gt=0, le=MAX_RPM)
    """Model calls per minute (a call tried on a fallback model is still one call)."""
    tpm: int | None = Field(default=None, gt=0, le=MAX_TPM)
    """Input plus output tokens per minute (each call's worst case is held until it ends)."""

    @field_validator("rpm", "tpm", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        return _whole_number(value)

    @model_validator(mode="after")
    def _check(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("give rpm, tpm or both")
        return self


_SCIENTIFIC = re.compile(r"[0-9]+(\.[0-9]*)?[eE]\+?[0-9]+")


def _whole_number(value: object) -> object:
    # YAML reads `true` as a bool, which pydantic would take as 1.
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    # YAML 1.1 reads `1e6` as text (a float needs a dot and a signed exponent): take it.
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


class _BudgetsBase(_Section):
    limits: list[BudgetLimit] = Field(default_factory=list)
    """The budgets; a call must fit in every one that applies to it."""
    rate_limits: list[RateLimit] = Field(default_factory=list)
    """Model calls and tokens per minute."""
    backend: Literal["sql", "redis"] = "sql"
    """Where the counters live: ``sql`` (the trace store's database: SQLite for one machine,
    PostgreSQL for several) or ``redis`` (``redis_url``, else ``TETHER_REDIS_URL``)."""
    redis_url: str | None = None
    """``redis://host:6379/0`` (no password: give one in ``TETHER_REDIS_URL``)."""
    fail_open: bool = False
    """When the counters cannot be reached (Redis down): ``false`` refuses the model call (the
    run fails with ``control_error``); ``true`` lets it through uncounted, with a warning event."""
    max_output_tokens: int = Field(default=DEFAULT_MAX_OUTPUT_TOKENS, gt=0, le=MAX_OUTPUT_TOKENS)
    """A call's output tokens in its worst case when its request sets no ``max_tokens``."""
    hold_s: float | None = Field(default=None, gt=0, le=MAX_HOLD_S)
    """How long a reservation lasts when its caller dies before the call ends (default: the
    run's ``limits.timeout_s`` plus 30 s, so a live call never outlasts its hold)."""
    wait_s: float = Field(default=0.0, ge=0, le=MAX_WAIT_S)
    """How long a call may wait for the next minute when a rate limit is reached (0: the run
    ends at once with ``rate_limited``)."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                "must be a redis://, rediss:// or unix:// URL, not "
                f"{(parts.scheme + '://') if parts.scheme else repr(url)}"
            )
        # redis-py also takes a password from the query string (?password=...).
        if password or "password" in parse_qs(parts.query):
            raise ValueError(
                "holds a password: keep secrets out of specs; give the whole URL in "
                "TETHER_REDIS_URL instead"
            )
        problem = redis_url_option_refused(url)
        if problem is not None:
            raise ValueError(problem)
        return url

    @field_validator("limits")
    @classmethod
    def _unique_limits(cls, limits: list[BudgetLimit]) -> list[BudgetLimit]:
        seen: dict[tuple[str, str | None, str], int] = {}
        for i, limit in enumerate(limits):
            for counter in ("tokens", "usd"):
                if getattr(limit, counter) is None:
                    continue
                key = (limit.scope, limit.window, counter)
                if key in seen:
                    raise ValueError(
                        f"limits[{i}]: {counter} per {limit.window} of scope {limit.scope} is "
                        f"already given by limits[{seen[key]}]"
                    )
                seen[key] = i
        return limits

    @field_validator("rate_limits")
    @classmethod
    def _unique_rates(cls, rates: list[RateLimit]) -> list[RateLimit]:
        seen: dict[str, int] = {}
        for i, rate in enumerate(rates):
            if rate.scope in seen:
                raise ValueError(
                    f"rate_limits[{i}]: scope {rate.scope} is already limited by "
                    f"rate_limits[{seen[rate.scope]}]; give rpm and tpm in one entry"
                )
            seen[rate.scope] = i
        return rates

    @model_validator(mode="after")
    def _backend(self) -> _BudgetsBase:
        if self.redis_url is not None and self.backend != "redis":
            raise ValueError("redis_url is given but backend is 'sql': set backend: redis")
        return self


class BudgetsConfig(_BudgetsBase):
    """An agent's budgets and rate limits, and where their counters live."""

    policy: str | None = Field(default=None, min_length=1)
    """A budgets policy file (relative to the spec file) whose budgets apply as well; the
    settings (backend, redis_url, fail_open...) this section gives win over the policy's."""

    @property
    def active(self) -> bool:
        """Whether the section asks for anything."""
        return bool(self.policy or self.limits or self.rate_limits)

    def merged(self, policy: BudgetsPolicy) -> BudgetsConfig:
        """This section with a policy file's budgets first; a setting given here wins."""
        shared = policy.budgets
        mine = self.model_fields_set
        settings = {
            name: getattr(self if name in mine else shared, name)
            for name in _BudgetsBase.model_fields
            if name not in ("limits", "rate_limits")
        }
        # Not validated again: each part was, and a budget both give (the same scope, window
        # and counter) is no mistake across files: the smaller limit holds.
        return BudgetsConfig.model_construct(
            limits=[*shared.limits, *self.limits],
            rate_limits=[*shared.rate_limits, *self.rate_limits],
            **settings,
        )


class BudgetsPolicy(_Section):
    """A budgets policy file: budgets several agents share (``budgets.policy`` in a spec)."""

    budgets: _BudgetsBase
    """The budgets, rate limits and settings, as in a spec's ``budgets`` section."""
