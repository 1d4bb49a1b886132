"""Aggregates for the dashboards and ``/api/v1/metrics``: requests, latency percentiles,
errors by outcome and category, tokens and cost over time, and the same by project, agent,
version and model.

The figures of each group of runs (a time bucket, a project, an agent, ...) are counted by the
database (``tether.server.metrics_sql``): what reaches Python is one row per group, however
many runs the range holds. This module says what the figures are (the views) and lays them out
(``assemble``); ``tether.server.metrics_reference`` computes the same figures in Python from
every run row, and tests hold the two to the same answers.

Costs are the ones stored with each run: priced when the run was made, by the versioned
pricing table (cached input tokens at their own rate, the user's prices file merged over the
shipped one); runs with a model the table did not know are counted as ``unpriced``, not as
free. Latency percentiles are nearest-rank: the p-th percentile of n latencies is the
``ceil(p/100 * n)``-th smallest, a latency some run had (never an interpolation).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from tether.store.query import ERROR_EVENTS

MAX_BUCKETS = 60
"""Points on a time chart at most."""
_STEPS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400)
CATEGORY_OF = {event: category for category, event in ERROR_EVENTS.items()}
"""Error category by the event name that puts a run in it."""
GOOD_OUTCOME = "final_answer"
NONE_KEY = "(none)"
"""The key of runs without a value (no agent, no model)."""
QUANTILES = (0.50, 0.95, 0.99)
"""The latency percentiles shown: p50, p95, p99."""
DIMENSIONS = ("project", "agent", "version", "model")
"""What the breakdowns group runs by."""
MAX_BREAKDOWN = 100
"""The most groups a breakdown lists: those with the most runs; the others are summed in one
line (``Metrics.others``). Any agent key names agents, versions and models (an OTLP span's
attributes): 20,000 runs of as many agent names, sent in 3 s, made the dashboard 8 MB and
15 s (the API's metrics 22 s; a percentile read for each group), growing with every run."""


def bucket_seconds(span_s: float) -> int:
    """A readable bucket width giving at most ``MAX_BUCKETS`` points over ``span_s``."""
    for step in _STEPS_S:
        if span_s / step <= MAX_BUCKETS:
            return step
    return math.ceil(span_s / MAX_BUCKETS / 86_400) * 86_400


@dataclass(frozen=True, slots=True)
class TimeBuckets:
    """The time axis of ``[since_ns, until_ns)``: ``count`` buckets of ``step_s`` seconds from
    ``first_ns`` (a multiple of the step, at or before ``since_ns``)."""

    since_ns: int
    until_ns: int
    step_s: int
    first_ns: int
    count: int

    @classmethod
    def over(cls, since_ns: int, until_ns: int) -> TimeBuckets:
        step = bucket_seconds((until_ns - since_ns) / 1e9)
        step_ns = step * 1_000_000_000
        first = since_ns // step_ns * step_ns
        count = max(math.ceil((until_ns - first) / step_ns), 1)
        return cls(since_ns, until_ns, step, first, count)

    @property
    def step_ns(self) -> int:
        return self.step_s * 1_000_000_000

    def index(self, started_ns: int) -> int:
        """The bucket of a run started at ``started_ns`` (one in the range)."""
        return min(max((started_ns - self.first_ns) // self.step_ns, 0), self.count - 1)

    @property
    def times(self) -> list[int]:
        """Start of each bucket, seconds since the epoch."""
        return [(self.first_ns + i * self.step_ns) // 1_000_000_000 for i in range(self.count)]


@dataclass
class Group:
    """The figures of one group of runs, however they were counted."""

    requests: int = 0
    errors: int = 0
    """Runs that failed."""
    final_answers: int = 0
    """Runs that ended with a final answer."""
    latency_ms: tuple[float | None, ...] = (None,) * len(QUANTILES)
    """The ``QUANTILES`` of the latencies of the runs that ended (None: none ended)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    """Cost of the priced runs."""
    unpriced: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """Runs by outcome (their status when they have none). Kept for totals and buckets."""
    categories: Counter[str] = field(default_factory=Counter)
    """Runs by error category. Kept for totals and buckets."""


class Breakdown(BaseModel):
    """Totals of the runs that share one value (an agent, a version, a model, a project)."""

    key: str
    """The value (``(none)`` for runs without one)."""
    requests: int
    """Runs started in the range."""
    error_rate: float
    """Share of them that failed."""
    not_final_rate: float
    """Share that ended otherwise than with a final answer (failed, stopped, paused)."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    """Cost of the priced runs, US dollars."""
    unpriced: int
    """Runs whose cost is unknown (a model the pricing table does not know)."""


class Series(BaseModel):
    label: str
    values: list[float | None]


class Chart(BaseModel):
    title: str
    unit: str
    """``count``, ``ms``, ``usd``, ``%`` or ``tokens``."""
    series: list[Series]


class Metrics(BaseModel):
    """Dashboards' figures for one project (or all, for an admin) and time range."""

    since_ns: int
    until_ns: int
    bucket_s: int
    """Width of a time bucket, seconds."""
    times: list[int]
    """Start of each bucket, seconds since the epoch."""
    totals: Breakdown
    outcomes: dict[str, int]
    """Runs by outcome (``running`` for runs not ended)."""
    error_categories: dict[str, int]
    """Runs by error category (a run may count in several)."""
    charts: dict[str, Chart]
    by_project: list[Breakdown]
    by_agent: list[Breakdown]
    by_version: list[Breakdown]
    by_model: list[Breakdown]
    others: dict[str, Breakdown] = {}
    """By breakdown (``project``, ``agent``, ``version``, ``model``): the runs of its groups
    past the first ``MAX_BREAKDOWN`` (fewest runs), summed, key ``N others``, without
    percentiles; absent when a breakdown lists all its groups."""


def listed(groups: Mapping[str, Group]) -> list[str]:
    """The keys of the groups a breakdown lists, in order: the ``MAX_BREAKDOWN`` with the
    most runs (ties by key). Only theirs need percentiles."""
    return sorted(groups, key=lambda k: (-groups[k].requests, k))[:MAX_BREAKDOWN]


def add_up(into: Group, g: Group) -> None:
    """``g``'s counts and sums added to ``into`` (not its percentiles)."""
    into.requests += g.requests
    into.errors += g.errors
    into.final_answers += g.final_answers
    into.input_tokens += g.input_tokens
    into.output_tokens += g.output_tokens
    into.cached_input_tokens += g.cached_input_tokens
    into.cost_usd += g.cost_usd
    into.unpriced += g.unpriced


def breakdown(key: str, g: Group) -> Breakdown:
    n = max(g.requests, 1)
    p50, p95, p99 = g.latency_ms
    return Breakdown(
        key=key,
        requests=g.requests,
        error_rate=g.errors / n,
        not_final_rate=(g.requests - g.final_answers) / n,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        input_tokens=g.input_tokens,
        output_tokens=g.output_tokens,
        cached_input_tokens=g.cached_input_tokens,
        cost_usd=round(g.cost_usd, 10),
        unpriced=g.unpriced,
    )


def _ranked(groups: Mapping[str, Group]) -> tuple[list[Breakdown], Breakdown | None]:
    """The breakdown's lines (``listed``) and the sum of the rest (None: no rest)."""
    shown = listed(groups)
    rest = Group()
    for key in set(groups).difference(shown):
        add_up(rest, groups[key])
    others = len(groups) - len(shown)
    summed = breakdown(f"{others:,} others", rest) if others else None
    return [breakdown(k, groups[k]) for k in shown], summed


def assemble(
    axis: TimeBuckets,
    total: Group,
    buckets: Sequence[Group],
    by: Mapping[str, Mapping[str, Group]],
) -> Metrics:
    """The dashboards' figures from those of the whole range (``total``), of each time bucket
    and of each value of the ``DIMENSIONS`` (``by["agent"]["support"]``)."""

    def series(label: str, values: Iterable[float | None]) -> Series:
        return Series(label=label, values=list(values))

    def share(counts: str, key: str) -> Series:
        return series(
            key,
            (getattr(b, counts).get(key, 0) / b.requests if b.requests else None for b in buckets),
        )

    charts = {
        "requests": Chart(
            title="Runs",
            unit="count",
            series=[
                series("runs", (b.requests for b in buckets)),
                series("failed", (b.errors for b in buckets)),
            ],
        ),
        "latency": Chart(
            title="Latency",
            unit="ms",
            series=[
                series(f"p{round(q * 100)}", (b.latency_ms[i] for b in buckets))
                for i, q in enumerate(QUANTILES)
            ],
        ),
        "outcomes": Chart(
            title="Share of runs not ending with a final answer, by outcome",
            unit="%",
            series=[share("outcomes", o) for o in sorted(total.outcomes) if o != GOOD_OUTCOME],
        ),
        "categories": Chart(
            title="Share of runs with an error, by category",
            unit="%",
            series=[share("categories", c) for c in sorted(total.categories)],
        ),
        "tokens": Chart(
            title="Tokens",
            unit="tokens",
            series=[
                series("input", (b.input_tokens for b in buckets)),
                series("cached input", (b.cached_input_tokens for b in buckets)),
                series("output", (b.output_tokens for b in buckets)),
            ],
        ),
        "cost": Chart(
            title="Cost (USD)",
            unit="usd",
            series=[series("cost", (round(b.cost_usd, 10) for b in buckets))],
        ),
    }
    if not total.requests:
        for chart in charts.values():
            chart.series = []
    lines: dict[str, list[Breakdown]] = {}
    others: dict[str, Breakdown] = {}
    for dimension in DIMENSIONS:
        lines[dimension], rest = _ranked(by.get(dimension, {}))
        if rest is not None:
            others[dimension] = rest
    return Metrics(
        since_ns=axis.since_ns,
        until_ns=axis.until_ns,
        bucket_s=axis.step_s,
        times=axis.times,
        totals=breakdown("all", total),
        outcomes=dict(sorted(total.outcomes.items())),
        error_categories=dict(sorted(total.categories.items())),
        charts=charts,
        by_project=lines["project"],
        by_agent=lines["agent"],
        by_version=lines["version"],
        by_model=lines["model"],
        others=others,
    )
