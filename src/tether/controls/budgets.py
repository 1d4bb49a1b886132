"""``BudgetControl``: token and US-dollar budgets and rate limits, checked before each model call.

Before a model call (``before_model``, last in the pipeline, so no control after it can cancel
the call) the control works out the call's worst case: its input tokens (estimated, characters
/ 4, over the messages and tool definitions) plus its ``max_tokens`` (or the section's
``max_output_tokens``), priced at the dearest model of the chain (a fallback may answer). It
reserves that on every budget and rate limit that applies to the run, all or none, in the
ledger (SQL store or Redis). No room on one of them stops the run: ``budget_exceeded`` for a
budget, ``rate_limited`` for a rate limit (after waiting up to ``wait_s`` for the next minute).

After the call, whatever happened (an answer, a provider error, a stream cut off midway, a
cancelled task), the run scope calls ``settle`` with what the call was charged: its tokens and
cost as the run counted them (a reply the pricing table cannot price is charged its reserved
worst case), and one model call. A process killed in between loses nothing for good: its
reservation expires after ``hold_s``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from tether.controls.budget_ledger import (
    BudgetCharge,
    BudgetLedger,
    BudgetUnavailable,
    Hold,
    RedisBudgetLedger,
    Refusal,
    shared_redis_ledger,
)
from tether.controls.limits import estimate_input_tokens
from tether.controls.pipeline import Control, Decision, HookContext, Verdict
from tether.core import Outcome, Settings, SpecError, TetherError, now_ns
from tether.core.settings import redis_from_env
from tether.providers import ModelRequest
from tether.spec import BudgetsConfig, copy_origin, load_budgets_policy, origin_of
from tether.trace import PricingTable
from tether.trace.pricing import ModelPrice

log = logging.getLogger("tether.budgets")

Counter = Literal["tokens", "usd", "requests"]
Window = Literal["run", "day", "month", "minute"]

MICRO = 1_000_000
"""Budgets in US dollars count millionths of a dollar."""
NS = 1_000_000_000
RUN_KEEP_S = 3600.0
"""How long a run budget's counters outlive the run's timeout."""
WINDOW_GRACE_S: dict[str, float] = {"day": 86_400.0, "month": 86_400.0, "minute": 60.0}
"""How long a window's counters are kept past its end."""
MAX_ID_CHARS = 80
"""Longest name (project, agent, end user) written into a budget's key as it is."""

EVENT_BUDGET_SETTLED = "tether.budget.settled"
"""The event a settled model call leaves on the run's span: what it reserved and was charged."""


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One counter of one scope over one window, with its limit (in the ledger's units)."""

    scope: str
    window: Window
    counter: Counter
    limit: int
    """Tokens, millionths of a dollar, or model calls."""

    @property
    def rate(self) -> bool:
        return self.window == "minute"

    def describe(self, ctx: HookContext | None = None) -> str:
        """``US dollars per day of project 'acme'`` (``of this project`` without ``ctx``)."""
        what = {"tokens": "tokens", "usd": "US dollars", "requests": "model calls"}[self.counter]
        return f"{what} per {self.window} of {_party(self.scope, ctx)}"

    def amount_text(self, amount: int) -> str:
        if self.counter == "usd":
            whole, _, cents = f"{amount / MICRO:,.6f}".partition(".")
            return f"${whole}.{cents.rstrip('0').ljust(2, '0')}"
        return f"{amount:,} {'calls' if self.counter == 'requests' else 'tokens'}"


def rules_of(config: BudgetsConfig) -> list[BudgetRule]:
    """The counters a budgets section asks for."""
    rules: list[BudgetRule] = []
    for b in config.limits:
        window: Window = b.window or "run"
        if b.tokens is not None:
            rules.append(BudgetRule(b.scope, window, "tokens", b.tokens))
        if b.usd is not None:
            rules.append(BudgetRule(b.scope, window, "usd", round(b.usd * MICRO)))
    for r in config.rate_limits:
        if r.rpm is not None:
            rules.append(BudgetRule(r.scope, "minute", "requests", r.rpm))
        if r.tpm is not None:
            rules.append(BudgetRule(r.scope, "minute", "tokens", r.tpm))
    return rules


@dataclass(frozen=True, slots=True)
class BudgetsLeft:
    """What the budgets that apply to a run leave (``BudgetControl.left``): the smallest room
    across them, per counter. ``None``: no budget of that counter applies."""

    usd: float | None = None
    """US dollars."""
    tokens: int | None = None


@dataclass(slots=True)
class _Reserved:
    hold: Hold
    counters: tuple[Counter, ...]
    """Each charge's counter, in the hold's order."""
    tokens: int
    usd: int | None


class BudgetControl(Control):
    """Budgets and rate limits on every model call of the runs it is part of.

    ``models`` are the names of the chain's models (the worst case is priced at the dearest);
    ``pricing`` prices them. ``clock`` gives the time in nanoseconds (day and month windows are
    UTC calendar days and months by it). ``hold_s`` is how long a reservation outlives a
    caller that died."""

    name = "budgets"
    record_allow = True

    def __init__(
        self,
        config: BudgetsConfig,
        ledger: BudgetLedger,
        *,
        models: Sequence[str],
        pricing: PricingTable,
        hold_s: float = 150.0,
        run_keep_s: float = RUN_KEEP_S,
        clock: Callable[[], int] = now_ns,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.rules = rules_of(config)
        self.fail_open = config.fail_open
        self.hold_s = config.hold_s or hold_s
        self.run_keep_s = max(run_keep_s, self.hold_s)
        self.clock = clock
        self.sleep = sleep
        """What a call waiting for the next minute sleeps with (a coroutine function)."""
        self.models = list(models)
        self.price = _dearest(self.models, pricing)
        if self.price is None and any(r.counter == "usd" for r in self.rules):
            unpriced = [m for m in self.models if pricing.price_for(m) is None]
            raise TetherError(
                f"a US-dollar budget is set but the pricing table (version {pricing.version}) "
                f"has no price for {', '.join(unpriced) or 'the model'}: the budget could not "
                "be checked",
                hint="use a priced model name, add its price to the file TETHER_PRICES_FILE "
                "names, or budget tokens instead",
            )
        self._pending: dict[str, list[_Reserved]] = {}
        self._releasing: set[asyncio.Future[None]] = set()
        self._windows: dict[str, tuple[int, int, str]] = {}

    # -- which budgets --------------------------------------------------------------------

    def _charges(
        self, ctx: HookContext, tokens: int, usd: int | None
    ) -> tuple[list[BudgetCharge], dict[str, BudgetRule], list[Counter]]:
        """The charges of a call on every budget that applies to the run (one per key, the
        smallest limit when two rules name the same budget)."""
        now = self.clock()
        by_key: dict[str, tuple[BudgetRule, BudgetCharge]] = {}
        for rule in self.rules:
            found_key = self._key(rule, ctx, now)
            if found_key is None:  # no end user, no agent: that budget does not apply
                continue
            key, keep_s = found_key
            amount = {"tokens": tokens, "usd": usd or 0, "requests": 1}[rule.counter]
            limit = rule.limit - _carried(rule, ctx)
            found = by_key.get(key)
            if found is None or limit < found[1].limit:
                by_key[key] = (rule, BudgetCharge(key, limit, amount, keep_s))
        charges = [c for _, c in by_key.values()]
        rules = {k: r for k, (r, _) in by_key.items()}
        counters = [r.counter for r, _ in by_key.values()]
        return charges, rules, counters

    def _key(self, rule: BudgetRule, ctx: HookContext, now: int) -> tuple[str, float] | None:
        """The key of ``rule``'s budget for this run at ``now`` and how long it is kept, or
        None when the run has no such party (no end user, no agent)."""
        who = _who(rule.scope, ctx)
        if who is None:
            return None
        period, keep_s = self._window(rule.window, now)
        return f"{rule.scope}:{who}:{rule.counter}:{rule.window}:{period}", keep_s

    def left(self, ctx: HookContext) -> BudgetsLeft:
        """What the budgets that apply to this run leave now, the tightest of each counter:
        limit minus what calls used minus what calls in flight hold, read through the ledger's
        ``spent`` (one lookup per budget; blocking: call it from a worker thread in a loop).
        Rate limits (minute windows) are not budgets here: they renew within the minute.
        Raises ``BudgetUnavailable`` when the ledger cannot be read."""
        now = self.clock()
        tightest: dict[Counter, int] = {}
        spent: dict[str, tuple[int, int]] = {}
        for rule in self.rules:
            if rule.rate or rule.counter == "requests":
                continue
            found = self._key(rule, ctx, now)
            if found is None:
                continue
            key = found[0]
            if key not in spent:  # two rules on one budget: one lookup, the smaller limit
                spent[key] = self.ledger.spent(key)
            used, held = spent[key]
            room = rule.limit - _carried(rule, ctx) - used - held
            if rule.counter not in tightest or room < tightest[rule.counter]:
                tightest[rule.counter] = room
        usd = tightest.get("usd")
        return BudgetsLeft(None if usd is None else usd / MICRO, tightest.get("tokens"))

    def _window(self, window: Window, now: int) -> tuple[str, float]:
        """A window's id at ``now`` and how long its counters are kept from now."""
        if window == "run":
            return "run", self.run_keep_s
        found = self._windows.get(window)
        if found is None or not found[0] <= now < found[1]:  # computed once per window
            found = (window_start(window, now), window_end(window, now), window_id(window, now))
            self._windows[window] = found
        keep = (found[1] - now) / NS + WINDOW_GRACE_S[window]
        return found[2], max(keep, self.hold_s)  # never gone under a live hold

    def applies(self, ctx: HookContext) -> bool:
        return any(_who(rule.scope, ctx) is not None for rule in self.rules)

    # -- before the call ------------------------------------------------------------------

    async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
        input_tokens = estimate_input_tokens(request)
        output_tokens = request.settings.max_tokens or self.config.max_output_tokens
        tokens = input_tokens + output_tokens
        usd = None
        if self.price is not None:
            usd = math.ceil(input_tokens * self.price.input + output_tokens * self.price.output)
        waited = 0.0
        while True:
            charges, rules, counters = self._charges(ctx, tokens, usd)
            try:
                hold = await self._reserve(charges)
            except BudgetUnavailable as exc:
                return self._unavailable(exc)
            if hold.held:
                reserved = _Reserved(hold, tuple(counters), tokens, usd)
                decision = self._allowed(reserved, input_tokens, output_tokens)
                # Kept last: from here the model step settles it, whatever happens.
                self._pending.setdefault(ctx.state.run_id, []).append(reserved)
                return decision
            refusal = hold.refused
            assert refusal is not None
            rule = rules[refusal.key]
            pause = self._wait_for(rule, refusal, waited)
            if pause is None:
                return self._refused(ctx, rule, refusal, input_tokens, output_tokens)
            await self.sleep(pause)
            waited += pause

    async def _reserve(self, charges: list[BudgetCharge]) -> Hold:
        """Reserve (awaited on Redis, in a worker thread on SQL). A run cancelled meanwhile (its
        timeout, a Ctrl-C) does not stop the reservation: the cancellation waits for it (it is
        bounded by the store's timeouts) and gives back what it holds; cancelled again
        meanwhile, that is left to finish in the background."""
        reserving = asyncio.ensure_future(self._ledger_reserve(charges))
        try:
            return await asyncio.shield(reserving)
        except asyncio.CancelledError:
            try:
                hold = await asyncio.shield(reserving)
                if hold.held:
                    await asyncio.shield(self._ledger_reconcile(hold, [0] * len(hold.charges)))
            except BaseException:
                reserving.add_done_callback(self._give_back)
            raise

    async def _ledger_reserve(self, charges: list[BudgetCharge]) -> Hold:
        """The ledger's reservation: awaited where it can be, else in a worker thread."""
        if isinstance(self.ledger, RedisBudgetLedger) and self.ledger.url is not None:
            return await self.ledger.areserve(charges, hold_s=self.hold_s)
        return await asyncio.to_thread(self.ledger.reserve, charges, hold_s=self.hold_s)

    async def _ledger_reconcile(self, hold: Hold, used: list[int]) -> None:
        if isinstance(self.ledger, RedisBudgetLedger) and self.ledger.url is not None:
            await self.ledger.areconcile(hold, used)
        else:
            await asyncio.to_thread(self.ledger.reconcile, hold, used)

    def _give_back(self, reserving: asyncio.Future[Hold]) -> None:
        if reserving.cancelled() or reserving.exception() is not None:
            return
        hold = reserving.result()
        if hold.held:
            release = asyncio.ensure_future(self._ledger_reconcile(hold, [0] * len(hold.charges)))
            self._releasing.add(release)
            release.add_done_callback(self._released)

    def _released(self, release: asyncio.Future[None]) -> None:
        self._releasing.discard(release)
        if not release.cancelled() and release.exception() is not None:
            log.warning(
                "a cancelled call's reservation was not given back (it expires): %s",
                release.exception(),
            )

    def _wait_for(self, rule: BudgetRule, refusal: Refusal, waited: float) -> float | None:
        """How long to wait for the next minute, or None to stop now."""
        if not rule.rate or refusal.amount > refusal.limit:
            return None
        now = self.clock()
        pause = (window_end("minute", now) - now) / NS + 0.01
        if waited + pause > self.config.wait_s:
            return None
        return pause

    def _allowed(self, reserved: _Reserved, input_tokens: int, output_tokens: int) -> Decision:
        usd = "" if reserved.usd is None else f", ${reserved.usd / MICRO:.6f}"
        n = len(reserved.hold.charges)
        details: dict[str, Any] = {
            "tether.budget.reserved_tokens": reserved.tokens,
            "tether.budget.input_tokens_estimate": input_tokens,
            "tether.budget.max_output_tokens": output_tokens,
            "tether.budget.keys": list(reserved.hold.keys),
        }
        if reserved.usd is not None:
            details["tether.budget.reserved_usd"] = reserved.usd / MICRO
        reason = f"reserved up to {reserved.tokens:,} tokens{usd} on {n} budget(s)"
        return Decision(Verdict.ALLOW, reason).with_details(details)

    def _refused(
        self,
        ctx: HookContext,
        rule: BudgetRule,
        refusal: Refusal,
        input_tokens: int,
        output_tokens: int,
    ) -> Decision:
        show = rule.amount_text
        kind = "rate limit" if rule.rate else "budget"
        carried = _carried(rule, ctx)
        if carried:  # a resumed run: shown as the conversation's budget, what it used in all
            refusal = replace(refusal, limit=rule.limit, used=refusal.used + carried)
        reason = (
            f"the {kind} on {rule.describe(ctx)} has no room for this call: limit "
            f"{show(refusal.limit)}, used {show(refusal.used)}"
        )
        if refusal.held:
            reason += f", held by calls in flight {show(refusal.held)}"
        reason += (
            f", this call needs up to {show(refusal.amount)} ({input_tokens:,} input tokens "
            f"estimated + {output_tokens:,} max output tokens"
        )
        reason += ")" if rule.counter != "usd" else f" at {self._priced_as()})"
        if refusal.amount > refusal.limit:
            reason += "; more than the whole limit: lower max_tokens or raise the limit"
        details = {
            "tether.budget.scope": rule.scope,
            "tether.budget.window": rule.window,
            "tether.budget.counter": rule.counter,
            "tether.budget.key": refusal.key,
            "tether.budget.limit": _units(rule, refusal.limit),
            "tether.budget.used": _units(rule, refusal.used),
            "tether.budget.held": _units(rule, refusal.held),
            "tether.budget.needed": _units(rule, refusal.amount),
        }
        if rule.rate:
            wait = max(1, math.ceil((window_end("minute", self.clock()) - self.clock()) / NS))
            message = (
                "I'm sorry, there are too many requests right now "
                f"({rule.describe()}: {show(refusal.limit)}). Please try again in {wait} "
                "seconds."
            )
            outcome = Outcome.RATE_LIMITED
        else:
            message = (
                "I'm sorry, I can't continue with this request: a usage budget has been "
                f"reached ({rule.describe()}: {show(refusal.limit)})."
            )
            if rule.window == "run":
                message += " What I found so far is kept with this run."
            else:
                renews = datetime.fromtimestamp(window_end(rule.window, self.clock()) / NS, UTC)
                message += f" It renews on {renews:%Y-%m-%d at %H:%M} UTC."
            outcome = Outcome.BUDGET_EXCEEDED
        decision = Decision.block(reason, outcome=outcome, message=message)
        return decision.with_details(details)

    def _unavailable(self, exc: BudgetUnavailable) -> Decision:
        details = {"tether.budget.unavailable": True, "tether.budget.fail_open": self.fail_open}
        why = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        if self.fail_open:
            log.warning("budgets not checked (fail_open): %s", exc.message)
            reason = f"WARNING: the call goes through uncounted (fail_open): {why}"
            return Decision(Verdict.ALLOW, reason).with_details(details)
        decision = Decision.block(
            f"budgets could not be checked, so the call is refused (fail closed): {why}",
            outcome=Outcome.CONTROL_ERROR,
            message="I'm sorry, I can't complete this request right now: the usage budget "
            "could not be checked. Please try again later.",
        )
        return decision.with_details(details)

    def _priced_as(self) -> str:
        return f"the price of {', '.join(self.models)}" if self.models else "its price"

    # -- after the call -------------------------------------------------------------------

    async def settle(self, run_id: str, *, tokens: int | None, usd: float | None) -> dict[str, Any]:
        """Reconcile the run's oldest reservation with what its call was charged: ``tokens``
        and ``usd`` (each ``None`` when unknown: the reserved worst case is charged).
        Returns the attributes of the event that records it (empty when the run held none)."""
        pending = self._pending.get(run_id)
        if not pending:
            return {}
        reserved = pending.pop(0)
        if not pending:
            del self._pending[run_id]
        usd_used = reserved.usd if usd is None else round(usd * MICRO)
        tokens_used = reserved.tokens if tokens is None else tokens
        amounts = {"tokens": tokens_used, "usd": usd_used or 0, "requests": 1}
        used = [amounts[c] for c in reserved.counters]
        attributes: dict[str, Any] = {
            "tether.budget.reserved_tokens": reserved.tokens,
            "tether.budget.charged_tokens": tokens_used,
        }
        if reserved.usd is not None:
            attributes["tether.budget.reserved_usd"] = reserved.usd / MICRO
            attributes["tether.budget.charged_usd"] = (usd_used or 0) / MICRO
            if usd is None:
                attributes["tether.budget.cost_unknown"] = True
        try:
            # Shielded: a run cancelled meanwhile still gives its reservation back.
            await asyncio.shield(self._ledger_reconcile(reserved.hold, used))
        except BudgetUnavailable as exc:
            log.warning("a model call's usage was not counted in its budgets: %s", exc.message)
            attributes["tether.budget.error"] = exc.message
        return attributes

    async def aclose(self) -> None:
        """Close what the ledger opened for this event loop."""
        close = getattr(self.ledger, "aclose", None)
        if close is not None:
            await close()


def _party(scope: str, ctx: HookContext | None) -> str:
    """Who a scope names, in words: exactly for the operator (``ctx``), else for the user."""
    if ctx is None:
        return {
            "project": "this project",
            "agent": "this assistant",
            "end_user": "your account",
            "run": "this request",
        }[scope]
    project = ctx.caller.project
    if scope == "project":
        return f"project {project!r}"
    if scope == "agent" and ctx.agent is not None:
        return f"agent {ctx.agent.name!r} (project {project!r})"
    if scope == "end_user" and ctx.caller.end_user is not None:
        return f"end user {ctx.caller.end_user!r} (project {project!r})"
    return f"run {ctx.state.run_id}"


def _units(rule: BudgetRule, amount: int) -> float | int:
    return amount / MICRO if rule.counter == "usd" else amount


def _dearest(models: Sequence[str], pricing: PricingTable) -> ModelPrice | None:
    """The highest input and output prices among ``models`` (None if one is unpriced)."""
    prices = [pricing.price_for(m) for m in models]
    if not prices or any(p is None for p in prices):
        return None
    known = [p for p in prices if p is not None]
    return ModelPrice(
        input=max(p.input for p in known),
        output=max(p.output for p in known),
        cached_input=max(p.cached_input for p in known),
    )


@functools.lru_cache(maxsize=4096)
def _name(text: str) -> str:
    """A name as a part of a key: ``:`` and ``/`` escaped, a long one hashed."""
    quoted = quote(text, safe="")
    if len(quoted) > MAX_ID_CHARS:
        return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return quoted


def _carried(rule: BudgetRule, ctx: HookContext) -> int:
    """What the runs before a resumed run used on a run budget's counter (0 for other
    budgets, and for a run that was not resumed): its run budget counts the conversation."""
    if ctx.carried is None or rule.window != "run":
        return 0
    tokens, usd = ctx.carried
    if rule.counter == "tokens":
        return tokens
    return round(usd * MICRO) if rule.counter == "usd" else 0


def _who(scope: str, ctx: HookContext) -> str | None:
    """Whose budget a scope names for this run: None when the run has no such party."""
    project = _name(ctx.caller.project)
    if scope == "project":
        return project
    if scope == "run":
        return ctx.state.run_id
    if scope == "agent":
        return None if ctx.agent is None else f"{project}/{_name(ctx.agent.name)}"
    end_user = ctx.caller.end_user
    return None if end_user is None else f"{project}/{_name(end_user)}"


def window_id(window: str, now_ns: int) -> str:
    """The id of the window ``now_ns`` falls in: ``20261124``, ``202611``, a minute number."""
    if window == "minute":
        return str(now_ns // (60 * NS))
    moment = datetime.fromtimestamp(now_ns / NS, UTC)
    return f"{moment:%Y%m%d}" if window == "day" else f"{moment:%Y%m}"


def window_start(window: str, now_ns: int) -> int:
    """When the window ``now_ns`` falls in began (ns since the epoch, UTC)."""
    if window == "minute":
        return now_ns // (60 * NS) * 60 * NS
    moment = datetime.fromtimestamp(now_ns // NS, UTC)
    start = datetime(moment.year, moment.month, moment.day if window == "day" else 1, tzinfo=UTC)
    return int(start.timestamp()) * NS


def window_end(window: str, now_ns: int) -> int:
    """When the window ``now_ns`` falls in ends (ns since the epoch, UTC)."""
    if window == "minute":
        return (now_ns // (60 * NS) + 1) * 60 * NS
    moment = datetime.fromtimestamp(now_ns // NS, UTC)
    if window == "day":
        end = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    else:
        later = moment.year * 12 + moment.month  # the next month, counted from year 0
        end = datetime(later // 12, later % 12 + 1, 1, tzinfo=UTC)
    return int(end.timestamp()) * NS


# -- from a spec ----------------------------------------------------------------------------


def resolve_budgets(config: BudgetsConfig, base_dir: Path | None) -> BudgetsConfig:
    """``config`` with its policy file's budgets merged in (the file relative to
    ``base_dir``, the spec's folder)."""
    if config.policy is None:
        return config
    path = Path(config.policy)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    merged = config.merged(load_budgets_policy(path))
    copy_origin(config, merged)
    return merged


def _where(config: BudgetsConfig, *loc: str | int) -> str:
    found = origin_of(config, *loc)
    return f"{found[0]}:{found[1]}: " if found else ""


def redis_url_for(config: BudgetsConfig) -> str | None:
    """The Redis a ``redis`` backend uses: ``redis_url``, else ``TETHER_REDIS_URL``."""
    return config.redis_url or redis_from_env()[0]


def ledger_for(config: BudgetsConfig, database_url: str | None) -> BudgetLedger:
    """The ledger ``config.backend`` asks for: the SQL store at ``database_url`` (default
    ``TETHER_DATABASE_URL``, else the SQLite store in ``TETHER_HOME``), or Redis."""
    if config.backend == "redis":
        url = redis_url_for(config)
        if url is None:
            raise SpecError(
                "budgets.backend is 'redis' but neither budgets.redis_url nor TETHER_REDIS_URL "
                "is set",
                hint="export TETHER_REDIS_URL=redis://HOST:6379/0, or use backend: sql",
            )
        return shared_redis_ledger(url, redis_from_env()[1])
    from tether.controls.budget_sql import shared_sql_ledger

    return shared_sql_ledger(database_url or Settings.from_env().database_url)


def build_budgets(
    config: BudgetsConfig,
    *,
    models: Sequence[str],
    pricing: PricingTable,
    run_timeout_s: float,
    database_url: str | None = None,
    ledger: BudgetLedger | None = None,
    base_dir: Path | None = None,
) -> BudgetControl:
    """The control of a spec's ``budgets`` section (its policy file merged in)."""
    config = resolve_budgets(config, base_dir)
    spec_section = config
    if ledger is None and config.backend == "redis" and redis_url_for(config) is None:
        raise SpecError(
            f"{_where(spec_section, 'backend')}budgets.backend is 'redis' but no Redis is "
            "named: neither budgets.redis_url nor TETHER_REDIS_URL is set",
            hint="export TETHER_REDIS_URL=redis://HOST:6379/0, or use backend: sql",
        )
    try:
        control = BudgetControl(
            config,
            ledger or ledger_for(config, database_url),
            models=models,
            pricing=pricing,
            hold_s=run_timeout_s + 30.0,
            run_keep_s=run_timeout_s + RUN_KEEP_S,
        )
    except SpecError:
        raise
    except TetherError as exc:  # a US-dollar budget on a model the pricing table lacks
        raise SpecError(f"{_where(spec_section)}budgets: {exc.message}", hint=exc.hint) from None
    return control


class _NoLedger:
    """Stands in for a ledger where a spec is only checked (``tether validate``)."""

    backend = "none"

    def reserve(self, charges: Sequence[BudgetCharge], *, hold_s: float) -> Hold:
        raise BudgetUnavailable("budgets are not counted while a spec is only checked")

    def reconcile(self, hold: Hold, used: Sequence[int]) -> None:
        raise BudgetUnavailable("budgets are not counted while a spec is only checked")

    def spent(self, key: str) -> tuple[int, int]:
        return 0, 0


def check_budgets(
    config: BudgetsConfig, *, base_dir: Path | None, models: Sequence[str], pricing: PricingTable
) -> list[str]:
    """What ``tether validate`` checks of a budgets section without reaching its counters:
    the policy file, prices for a dollar budget. Returns the environment variables it needs
    that are not set (``TETHER_REDIS_URL`` for a Redis backend without ``redis_url``)."""
    merged = resolve_budgets(config, base_dir)
    build_budgets(merged, models=models, pricing=pricing, run_timeout_s=120.0, ledger=_NoLedger())
    if merged.backend == "redis" and redis_url_for(merged) is None:
        return ["TETHER_REDIS_URL"]
    return []
