"""Many varied runs written into a real store for the dashboards' figures: several projects,
agents and versions (empty and missing ones too), runs not ended, failed and paused, outcomes
missing, zero, one or two models, unpriced runs, error events of each category, blocking and
allowing decisions, and latencies with ties. Seeded: the same arguments write the same runs."""

from __future__ import annotations

import random

from tether.store import EventRecord, RunRecord, SpanRecord, Store, TraceBatch
from tether.trace import semconv

PROJECTS = ("default", "acme", "beta")
AGENTS = ("support", "billing", "", None)
VERSIONS = ("v1aaaaaaaaaaaaaaaa", "v2bbbbbbbbbbbbbbbb", "v2bbbbbbbbbbXXXX", "", None)
MODELS = ("gpt-4.1-mini", "gpt-4o", "claude-x", "")
OUTCOMES = ("final_answer", "final_answer", "final_answer", "limit_exceeded", "blocked", None)
ERRORS = (
    semconv.EVENT_TOOL_ERROR,
    semconv.EVENT_MODEL_ERROR,
    semconv.EVENT_RUN_LIMIT,
    semconv.EVENT_RUN_ERROR,
    semconv.EVENT_MODEL_FALLBACK,
)


def write_runs(
    store: Store,
    count: int,
    *,
    start_ns: int,
    span_ns: int,
    seed: int = 7,
    first_id: int = 1,
    spans_per_model: bool = True,
    batch_runs: int = 2000,
) -> None:
    """``count`` runs started in ``[start_ns, start_ns + span_ns)``, ids from ``first_id``."""
    rng = random.Random(seed)
    # Written in the order they started, as a store receives them.
    starts = sorted(start_ns + rng.randrange(span_ns) for _ in range(count))
    batch = TraceBatch()
    for n, started in enumerate(starts, start=first_id):
        run_id, trace_id = f"{n:016x}", f"{n:032x}"
        status = rng.choice(("completed",) * 6 + ("failed", "paused", "running"))
        ended: int | None = None
        if status != "running":
            # Ties on purpose: a third of the runs take one of a few round latencies.
            if rng.random() < 0.33:
                ended = started + rng.choice((100, 250, 1000, 1000, 5000)) * 1_000_000
            else:
                ended = started + int(rng.lognormvariate(20.5, 1.0))
        outcome = None if status == "running" else rng.choice(OUTCOMES)
        if status == "failed":
            outcome = rng.choice(("error", None))
        attributes: dict[str, object] = {}
        if rng.random() < 0.1:
            attributes[semconv.TETHER_COST_UNPRICED] = True
        agent = rng.choice(AGENTS)
        run = RunRecord(
            trace_id,
            run_id=run_id,
            agent_name=agent,
            agent_version=rng.choice(VERSIONS) if agent is not None else None,
            started_ns=started,
            status=status,
            outcome=outcome,
            input=f"question {n}",
            output="answer" if ended else None,
            ended_ns=ended,
            input_tokens=rng.randrange(0, 5000),
            output_tokens=rng.randrange(0, 800),
            cached_input_tokens=rng.randrange(0, 300),
            cost_usd=round(rng.random() / 100, 8),
            attributes=attributes,
            project=rng.choice(PROJECTS),
        )
        batch.runs_started.append(run)
        if ended is not None:
            batch.runs_ended.append(run)
        batch.spans.append(
            SpanRecord(
                trace_id,
                run_id=run_id,
                span_id=run_id,
                parent_id=None,
                name="invoke_agent",
                kind="agent",
                start_ns=started,
                end_ns=ended or started,
            )
        )
        models = rng.sample(MODELS, rng.choice((0, 1, 1, 1, 2)))
        for i, model in enumerate(models if spans_per_model else models[:1]):
            batch.spans.append(
                SpanRecord(
                    trace_id,
                    run_id=run_id,
                    span_id=f"{0x8000000000000000 + n * 4 + i:016x}",
                    parent_id=run_id,
                    name=f"chat {model}",
                    kind="model",
                    start_ns=started + 1,
                    end_ns=started + 2,
                    attributes={semconv.GEN_AI_REQUEST_MODEL: model},
                )
            )
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            name = rng.choice((*ERRORS, semconv.EVENT_CONTROL_DECISION))
            attrs: dict[str, object] = {"error": "x"}
            if name == semconv.EVENT_CONTROL_DECISION:
                # Only a lower-case "block" verdict blocks: "BLOCK" is no verdict Tether writes.
                verdict = rng.choice(("block", "allow", "BLOCK"))
                attrs = {semconv.TETHER_DECISION: verdict}
            batch.events.append(
                EventRecord(trace_id, run_id=run_id, span_id=run_id, name=name, time_ns=started)
            )
            batch.events[-1].attributes = attrs
        if len(batch.runs_started) >= batch_runs:
            store.write(batch)
            batch = TraceBatch()
    if batch.runs_started:
        store.write(batch)
