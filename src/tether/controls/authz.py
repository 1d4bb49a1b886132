"""Tool authorization with Cedar: every tool call is decided by the spec's policies.

Once a spec names policies (``authorization: {policies: [tools.cedar]}``), a call that no
policy permits is refused (default deny), a call a ``forbid`` matches is refused naming that
policy, and a call permitted by a policy annotated ``@escalate("why")`` pauses the run for a
person's approval. Policies, the schema generated from the agent's tools and the tools'
entities are parsed and validated once, when the agent is built; a policy that does not parse
or that reads an attribute the schema lacks is an error there, at its file and line, never a
silent deny at request time. See ``cedar_schema`` for the entities, actions and context.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from tether.controls.budget_ledger import BudgetUnavailable
from tether.controls.budgets import MICRO, BudgetsLeft
from tether.controls.cedar_policies import LoadedPolicies, load_policies, validation_error
from tether.controls.cedar_schema import (
    CALL_GROUP,
    DATETIME,
    DECIMAL,
    LONG,
    NAMESPACE,
    STRING,
    Attr,
    Rec,
    Refused,
    SetOf,
    ToolArgs,
    clamped_long,
    record_builder,
    render_schema,
    rounded_decimal,
    scaled_long,
    to_json_type,
    tool_args,
)
from tether.controls.pipeline import Control, Decision, HookContext, Verdict
from tether.core import AgentRef, Caller, EntryPoint, SpecError
from tether.providers import ToolCall
from tether.tools import Tool

if TYPE_CHECKING:
    import cedarpy

    from tether.spec import AgentSpec

log = logging.getLogger("tether.authz")
_N = TypeVar("_N", int, float)

AGENT, PROJECT, ROLE, TOOL, ACTION = (
    f"{NAMESPACE}::{t}" for t in ("Agent", "Project", "Role", "Tool", "Action")
)
MAX_CACHED_PRINCIPALS = 1024
MAX_CACHED_VERDICTS = 4096
MAX_CACHED_ANSWERS = 4096


@dataclass(frozen=True)
class Risk:
    """What guards found in the run so far (read from ``ctx.risk`` when a guard sets it)."""

    score: float = 0.0
    """0 (nothing found) to 1."""
    categories: frozenset[str] = frozenset()
    """What was found (``prompt_injection``, ``pii``, ...)."""


@dataclass(frozen=True)
class Budget:
    """What the run has spent, and what its limits leave."""

    cost_usd: float = 0.0
    tokens: int = 0
    tool_calls: int = 0
    turns: int = 0
    usd_left: float | None = None
    """The tightest room left of the run's ``max_cost_usd`` and the US-dollar budgets that
    apply to the call (``budgets``); ``None``: none of them is set."""
    tokens_left: int | None = None
    """The same for ``max_total_tokens`` and the token budgets; ``None``: none is set."""
    tool_calls_left: int = 0


@dataclass(frozen=True)
class AuthzRequest:
    """One tool call to decide, with everything policies may read."""

    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    caller: Caller = field(default_factory=Caller)
    agent: AgentRef | None = None
    """``None``: the agent the policies were loaded for."""
    risk: Risk = field(default_factory=Risk)
    classification: frozenset[str] = frozenset()
    """Data classification labels of the run (``pii``, ``confidential``), when provided."""
    budget: Budget = field(default_factory=Budget)
    now: datetime | None = None
    """``None``: the authorizer's clock."""
    entry_point: EntryPoint = EntryPoint.RUNTIME


@dataclass(frozen=True)
class AuthzVerdict:
    """What the policies decided, and why."""

    effect: Literal["allow", "deny", "escalate"]
    reason: str
    policies: tuple[str, ...] = ()
    """The deciding policies: ``@id`` annotations, else Cedar's ids with file and line."""
    note: str = ""
    """``escalate``: the ``@escalate`` annotations' text."""


def _context_type(args: Rec) -> Rec:
    return Rec(
        {
            "args": Attr(args, True),
            "risk": Attr(
                Rec(
                    {
                        "score": Attr(DECIMAL, True),
                        "score_pct": Attr(LONG, True),
                        "categories": _strings(),
                    }
                ),
                True,
            ),
            "classification": _strings(),
            "budget": Attr(
                Rec(
                    {
                        "cost_usd": Attr(DECIMAL, True),
                        "cost_usd_micros": Attr(LONG, True),
                        "tokens": Attr(LONG, True),
                        "tool_calls": Attr(LONG, True),
                        "turns": Attr(LONG, True),
                        "usd_left": Attr(DECIMAL, False),
                        "usd_left_micros": Attr(LONG, False),
                        "tokens_left": Attr(LONG, False),
                        "tool_calls_left": Attr(LONG, True),
                    }
                ),
                True,
            ),
            "time": Attr(
                Rec(
                    {
                        "now": Attr(DATETIME, True),
                        "hour": Attr(LONG, True),
                        "weekday": Attr(LONG, True),
                    }
                ),
                True,
            ),
            "entry_point": Attr(STRING, True),
        }
    )


def _strings() -> Attr:
    return Attr(SetOf(STRING), True)


def schema_json(tools: Mapping[str, Tool], args: Mapping[str, ToolArgs]) -> dict[str, Any]:
    """The Cedar schema (JSON format) of an agent with these tools."""
    agent_attrs = {
        "version": Attr(STRING, True),
        "project": Attr(STRING, True),
        "roles": _strings(),
        "scopes": _strings(),
        "end_user": Attr(STRING, False),
        "key_id": Attr(STRING, False),
    }
    tool_attrs = {"side_effects": Attr(STRING, True), "scopes": _strings()}
    actions: dict[str, Any] = {CALL_GROUP: {}}
    for name in tools:
        actions[name] = {
            "memberOf": [{"id": CALL_GROUP}],
            "appliesTo": {
                "principalTypes": ["Agent"],
                "resourceTypes": ["Tool"],
                "context": to_json_type(_context_type(args[name].record)),
            },
        }
    return {
        NAMESPACE: {
            "commonTypes": {},
            "entityTypes": {
                "Project": {},
                "Role": {},
                "Agent": {
                    "memberOfTypes": ["Project", "Role"],
                    "shape": to_json_type(Rec(agent_attrs)),
                },
                "Tool": {"shape": to_json_type(Rec(tool_attrs))},
            },
            "actions": actions,
        }
    }


def schema_text(tools: Mapping[str, Tool]) -> str:
    """The schema of an agent with these tools in Cedar schema syntax (for people)."""
    return render_schema(schema_json(tools, {n: tool_args(t.parameters) for n, t in tools.items()}))


def _uid(kind: str, id: str) -> dict[str, str]:
    return {"type": kind, "id": id}


_OPTIONAL_HINT = (
    "an optional attribute is absent when it has no value (context.budget's usd_left, "
    "usd_left_micros and tokens_left without a limit or budget of that kind, "
    "principal.end_user without an end user): test it first, as in "
    "`context.budget has usd_left_micros && context.budget.usd_left_micros < 500000`"
)


_MISSING_ATTRIBUTE = re.compile(r"attribute `([^`]+)` on entity type `Tether::(\w+)` not found")


def _hint(
    args: Mapping[str, ToolArgs],
    errors: Sequence[tuple[str, str]],
    schema: Mapping[str, Any],
) -> str | None:
    """What to do about validation ``errors``: a misspelt attribute of the agent or a tool
    (the one meant), reading an optional attribute unguarded, how arguments are seen."""
    untyped = _untyped_hint(args)
    for _, message in errors:
        found = _MISSING_ATTRIBUTE.search(message)
        entity = found and schema["Tether"]["entityTypes"].get(found.group(2))
        if not found or not entity:
            continue
        known = sorted(entity["shape"]["attributes"])
        close = difflib.get_close_matches(found.group(1), known, n=1, cutoff=0.7)
        meant = f"did you mean `{close[0]}`? " if close else ""
        return f"{meant}Tether::{found.group(2)} has the attributes {', '.join(known)}; {untyped}"
    if any("optional attribute" in message for _, message in errors):
        return f"{_OPTIONAL_HINT}; {untyped}" if untyped else _OPTIONAL_HINT
    return untyped


def _untyped_hint(args: Mapping[str, ToolArgs]) -> str | None:
    left_out = [
        f"{tool}.{name} ({why})"
        for tool, typed in args.items()
        for name, why in typed.untyped.items()
    ]
    base = (
        "policies see a tool's arguments as context.args, typed per tool: constrain the action "
        '(action == Tether::Action::"TOOL") before reading them; `tether policy schema SPEC` '
        "prints the schema"
    )
    if left_out:
        return f"{base}; arguments with no Cedar type, not visible: {', '.join(left_out)}"
    return base


class Authorizer:
    """A loaded policy set with the schema and entities of one agent's tools: decides calls."""

    def __init__(
        self,
        loaded: LoadedPolicies,
        tools: Mapping[str, Tool],
        agent: AgentRef,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        import cedarpy

        if CALL_GROUP in tools:
            raise SpecError(
                f"a tool named {CALL_GROUP!r} clashes with the Cedar action group "
                f'Tether::Action::"{CALL_GROUP}" (every tool\'s action is in it): rename the tool'
            )
        self.loaded = loaded
        self.agent = agent
        self._clock = clock or (lambda: datetime.now(UTC))
        self._args = {name: tool_args(tool.parameters) for name, tool in tools.items()}
        self.schema_json = schema_json(tools, self._args)
        self.schema = cedarpy.Schema.from_json_str(json.dumps(self.schema_json))
        result = cedarpy.validate_policies(loaded.text, self.schema)
        if not result.validation_passed:
            errors = [(e.policy_id, e.error) for e in result.errors]
            if not tools:  # Cedar says "unable to find an applicable action": there is none
                raise SpecError(
                    "the agent declares no tools, so its Cedar policies have no action to "
                    'apply to (each tool is an action Tether::Action::"TOOL"): '
                    + validation_error(loaded, errors, None).message.partition(":\n")[2],
                    hint="declare the agent's tools (tools:), or drop the authorization "
                    "section: an agent without tools has no tool call to authorize",
                )
            raise validation_error(loaded, errors, _hint(self._args, errors, self.schema_json))
        tool_entities = [
            {
                "uid": _uid(TOOL, name),
                "attrs": {"side_effects": tool.side_effects, "scopes": sorted(tool.scopes)},
                "parents": [],
            }
            for name, tool in tools.items()
        ]
        # With the schema, Cedar adds the action entities (each tool's action in "call").
        self._entities = cedarpy.Entities.from_json_str(json.dumps(tool_entities), self.schema)
        self._principals: dict[tuple[str, str, Caller], cedarpy.Entities] = {}
        self._read = _named(loaded.text)
        self._all = _named(json.dumps(self.schema_json))
        self._targets = {name: (_uid(ACTION, name), _uid(TOOL, name)) for name in tools}
        """Each tool's action and resource, as Cedar requests name them."""
        self._plans = {name: _ContextPlan(self._args[name].record, self._read) for name in tools}
        """How each tool's context is built (what the policies name, planned once)."""
        self._agent_uid = _uid(AGENT, agent.name)
        self._last_principal: tuple[AgentRef, Caller, cedarpy.Entities] | None = None
        """The last principal's entities, by identity (a run asks for the same agent and
        caller objects on every call)."""
        self._ask = _asker(loaded.policy_set, self._entities)
        self._verdicts: dict[tuple[str, bool, tuple[str, ...]], AuthzVerdict] = {}
        """Verdicts by tool and Cedar's answer (decision and deciding policies)."""
        self.reads_budget_left = "budget" in self._read and bool(
            {"usd_left", "usd_left_micros", "tokens_left"} & self._read
        )
        """Whether some policy may read what the budgets leave (then each call looks it up)."""

    def arguments_of(self, tool: str) -> list[str] | None:
        """The names of a tool's arguments, in the schema's order (None: not one of the tools)."""
        args = self._args.get(tool)
        return None if args is None else [*args.record.attributes, *args.untyped]

    @property
    def tool_names(self) -> list[str]:
        return list(self._args)

    @classmethod
    def load(
        cls,
        files: Sequence[str | Path],
        tools: Mapping[str, Tool],
        agent: AgentRef,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Authorizer:
        """Read, parse and validate the policy files against the tools' schema."""
        return cls(load_policies([Path(f) for f in files]), tools, agent, clock=clock)

    def schema_text(self) -> str:
        """The generated schema in Cedar's schema syntax (what policies are checked against)."""
        return render_schema(self.schema_json)

    def _with_principal(self, agent: AgentRef, caller: Caller) -> cedarpy.Entities:
        """The tools' entities plus the principal's (parsed once per agent and caller)."""
        last = self._last_principal
        if last is not None and last[0] is agent and last[1] is caller:
            return last[2]
        key = (agent.name, agent.version, caller)
        found = self._principals.get(key)
        if found is not None:
            self._last_principal = (agent, caller, found)
            return found
        attrs: dict[str, Any] = {
            "version": agent.version,
            "project": caller.project,
            "roles": sorted(caller.roles),
            "scopes": sorted(caller.scopes),
        }
        if caller.end_user is not None:
            attrs["end_user"] = caller.end_user
        if caller.key_id is not None:
            attrs["key_id"] = caller.key_id
        parents = [_uid(PROJECT, caller.project), *(_uid(ROLE, r) for r in sorted(caller.roles))]
        delta = [
            {"uid": _uid(AGENT, agent.name), "attrs": attrs, "parents": parents},
            *({"uid": p, "attrs": {}, "parents": []} for p in parents),
        ]
        # orjson: text no UTF-8 can hold (a lone surrogate) raises here, not as Cedar's vague
        # "error during entity deserialization" (``decide`` denies the call for it).
        entities = self._entities.with_added_json_str(orjson.dumps(delta).decode(), self.schema)
        if len(self._principals) >= MAX_CACHED_PRINCIPALS:
            self._principals.clear()
        self._principals[key] = entities
        self._last_principal = (agent, caller, entities)
        return entities

    def context(self, request: AuthzRequest, *, whole: bool = False) -> dict[str, Any]:
        """The Cedar context of a request; ``Refused`` when an argument does not fit its type.

        Only the attributes some policy names are built: Cedar reads a context in the JSON
        form, and parsing what no policy reads (decimals, datetimes) costs more than deciding.
        A policy can only read an attribute by naming it (Cedar has no computed attribute
        names), so the words and string literals of the policy text are a safe superset.
        ``whole``: every attribute (what the schema describes)."""
        if whole:
            return _ContextPlan(self._args[request.tool].record, self._all).build(
                request, self._clock
            )
        return self._plans[request.tool].build(request, self._clock)

    def decide(self, request: AuthzRequest) -> AuthzVerdict:
        """Allow, deny or escalate one call (default deny; fails closed on any error)."""
        tool = request.tool
        plan = self._plans.get(tool)
        if plan is None:
            known = ", ".join(self._args) or "none"
            return AuthzVerdict(
                "deny", f"tool {tool!r} is not one of the agent's tools (they are: {known})"
            )
        agent = request.agent or self.agent
        try:
            context = orjson.dumps(plan.build(request, self._clock)).decode()
            entities = self._with_principal(agent, request.caller)
        except Refused as exc:
            return AuthzVerdict("deny", f"tool {tool!r}: argument {exc}")
        except orjson.JSONEncodeError:  # text no UTF-8 can hold: a lone surrogate from JSON
            return AuthzVerdict(
                "deny",
                f"tool {tool!r}: an argument or the caller holds text that is not valid Unicode",
            )
        action, resource = self._targets[tool]
        cedar_request = {
            "principal": (
                self._agent_uid if agent.name == self.agent.name else _uid(AGENT, agent.name)
            ),
            "action": action,
            "resource": resource,
            "context": context,
        }
        # No schema here: the context is built from the same types the policies were
        # validated against, and checking it again costs more than the decision itself.
        allowed, reasons, errors = self._ask(cedar_request, entities)
        if errors:
            return self._failed(tool, errors)
        key = (tool, allowed, reasons)
        verdict = self._verdicts.get(key)
        if verdict is None:  # the same answer for the same tool is the same verdict
            verdict = self._verdict(tool, allowed, reasons)
            if len(self._verdicts) >= MAX_CACHED_VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _failed(self, tool: str, errors: Sequence[str]) -> AuthzVerdict:
        """The denial when policies failed to evaluate, naming them as decisions do (Cedar's
        errors name its own ids, ``policy3``, not the ``@id``)."""
        labels: dict[str, None] = {}

        def name(m: re.Match[str]) -> str:
            info = self.loaded.policies.get(m.group(1))
            if info is None:
                return m.group(0)
            labels[info.label] = None
            return info.label

        named = [_CEDAR_POLICY_ID.sub(name, str(e)) for e in errors]
        return AuthzVerdict(
            "deny",
            f"tool {tool!r} denied: a Cedar policy failed to evaluate: {named[0]}",
            tuple(labels),
        )

    def _verdict(self, tool: str, allowed: bool, reasons: tuple[str, ...]) -> AuthzVerdict:
        """The verdict of Cedar's answer (no errors) about a call of ``tool``."""
        infos = [self.loaded.policies[p] for p in reasons]
        labels = tuple(p.label for p in infos)
        if not allowed:
            if not infos:
                why = "no Cedar policy permits it (default deny)"
                return AuthzVerdict("deny", f"tool {tool!r} denied: {why}")
            return AuthzVerdict(
                "deny", f"tool {tool!r} denied by Cedar {_policies(labels)}", labels
            )
        asking = [p for p in infos if p.escalate is not None]
        if asking:
            asked = tuple(p.label for p in asking)
            note = "; ".join(p.escalate for p in asking if p.escalate)
            reason = f"tool {tool!r} needs approval under Cedar {_policies(asked)}"
            return AuthzVerdict("escalate", f"{reason}: {note}" if note else reason, asked, note)
        return AuthzVerdict(
            "allow", f"tool {tool!r} permitted by Cedar {_policies(labels)}", labels
        )


Answer = tuple[bool, tuple[str, ...], tuple[str, ...]]
"""Cedar's answer to one request: whether it is allowed, the deciding policies' ids, the
errors."""
Ask = Callable[[dict[str, Any], "cedarpy.Entities"], Answer]
"""Asks Cedar one request (its context as JSON text, as cedarpy takes it) with the given
entities."""


_EXTENSION = object()
"""``_asker``'s default: cedarpy's own extension function."""


def _asker(
    policy_set: cedarpy.PolicySet, entities: cedarpy.Entities, batch: Any = _EXTENSION
) -> Ask:
    """How a decision is asked of Cedar. cedarpy's ``is_authorized`` wraps its extension's
    ``is_authorized_batch``: it copies the request, writes the context with the standard
    ``json`` module, reads the answer with it and builds result objects, about a quarter of a
    decision. Tether calls the extension itself (as cedarpy's own wrapper does: the context
    as JSON text, the entities' inner handle), reading the answer with orjson; where the
    extension does not answer a probe request as ``is_authorized`` does (another cedarpy), it
    asks through ``is_authorized`` (which passes a context given as text as it is).

    Cedar answers each call; the text of its answer is read once per distinct text, its
    timings (the ``metrics`` member, last) left out: the same decision, reasons and errors
    read the same (what the probe checks: ``metrics`` last, else every answer is read).
    ``batch``: the extension function to try (tests)."""
    import cedarpy

    def public(request: dict[str, Any], ents: cedarpy.Entities) -> Answer:
        result = cedarpy.is_authorized(request, policy_set, ents)
        diagnostics = result.diagnostics
        return result.allowed, tuple(diagnostics.reasons), tuple(diagnostics.errors)

    if batch is _EXTENSION:
        batch = getattr(getattr(cedarpy, "_internal", None), "is_authorized_batch", None)

    def read(text: str) -> Answer:
        answer = orjson.loads(text)
        diagnostics = answer["diagnostics"]
        reasons, errors = diagnostics["reason"], diagnostics["errors"]
        return answer["decision"] == "Allow", tuple(reasons), tuple(errors)

    answers: dict[str, Answer] = {}
    """Answers read, by their text without the timings."""
    timed = False
    """Whether the answer's last member is ``metrics`` (set by the probe)."""

    def direct(request: dict[str, Any], ents: cedarpy.Entities) -> Answer:
        assert batch is not None
        (text,) = batch([request], policy_set, ents._inner, None, False)
        if not timed:
            return read(text)
        # A bare `,"metrics":` is a key (quotes inside strings are escaped), and the last one
        # the answer's own (metrics is its last member).
        cut = text.rfind(',"metrics":')
        key = text[:cut] if cut > 0 else text
        found = answers.get(key)
        if found is None:
            found = read(text)
            if len(answers) >= MAX_CACHED_ANSWERS:
                answers.clear()
            answers[key] = found
        return found

    # The probe: a principal no entity describes, the action group, an empty context
    # (policies reading the context error, which both must report alike).
    probe = {
        "principal": _uid(AGENT, "probe"),
        "action": _uid(ACTION, CALL_GROUP),
        "resource": _uid(TOOL, "probe"),
        "context": "{}",
    }
    try:
        if batch is not None:
            (text,) = batch([probe], policy_set, entities._inner, None, False)
            timed = list(orjson.loads(text))[-1:] == ["metrics"]
            if direct(probe, entities) == public(probe, entities):
                return direct
    except Exception:  # an extension of another shape: the public call it is
        pass
    return public


class _ContextPlan:
    """How the context of one tool's calls is built: the parts the policies name, decided
    once at load (``read``: the words and strings of the policies), with the arguments'
    record planned by ``record_builder``."""

    def __init__(self, args: Rec, read: frozenset[str]) -> None:
        self.read = read
        self.args = record_builder(args, keep=read) if "args" in read else None
        self.risk = "risk" in read
        self.score, self.score_pct = "score" in read, "score_pct" in read
        self.categories = "categories" in read
        self.classification = "classification" in read
        self.budget = "budget" in read
        # Tether's own counts and limits, clamped to a Long: a spec may set a limit past 2^63
        # (Cedar refuses a Python int past 64 bits, which would fail the whole decision).
        self.counts = tuple(
            n for n in ("tokens", "tool_calls", "turns", "tool_calls_left") if n in read
        )
        self.cost_usd, self.cost_usd_micros = "cost_usd" in read, "cost_usd_micros" in read
        self.usd_left, self.usd_left_micros = "usd_left" in read, "usd_left_micros" in read
        self.tokens_left = "tokens_left" in read
        self.time = "time" in read
        self.entry_point = "entry_point" in read

    def build(self, request: AuthzRequest, clock: Callable[[], datetime]) -> dict[str, Any]:
        """The context of ``request``; ``Refused`` when an argument does not fit its type."""
        out: dict[str, Any] = {}
        if self.args is not None:
            out["args"] = self.args(request.args)
        if self.risk:
            risk = request.risk
            found: dict[str, Any] = {}
            out["risk"] = found
            score = min(max(risk.score, 0.0), 1.0)
            if self.score:
                found["score"] = rounded_decimal(score, up=None)
            if self.score_pct:  # rounded up: the careful side of a threshold
                found["score_pct"] = scaled_long(score, 100, up=True)
            if self.categories:
                found["categories"] = sorted(risk.categories)
        if self.classification:
            out["classification"] = sorted(request.classification)
        if self.budget:
            out["budget"] = self._budget(request.budget)
        if self.time:
            now = request.now or clock()
            if now.tzinfo is not UTC:  # a naive one is local time (as ``astimezone`` takes it)
                now = now.astimezone(UTC)
            out["time"] = _time_context((now - _EPOCH) // _SECOND, self.read)
        if self.entry_point:
            out["entry_point"] = request.entry_point.value
        return out

    def _budget(self, budget: Budget) -> dict[str, Any]:
        """``context.budget``: the attributes the policies name."""
        out: dict[str, Any] = {}
        if self.cost_usd:
            out["cost_usd"] = rounded_decimal(budget.cost_usd, up=True)
        for name in self.counts:
            out[name] = clamped_long(getattr(budget, name))
        if self.cost_usd_micros:
            out["cost_usd_micros"] = scaled_long(budget.cost_usd, MICRO, up=True)
        if budget.usd_left is not None:
            if self.usd_left:
                out["usd_left"] = rounded_decimal(budget.usd_left, up=False)
            if self.usd_left_micros:
                out["usd_left_micros"] = scaled_long(budget.usd_left, MICRO, up=False)
        if self.tokens_left and budget.tokens_left is not None:
            out["tokens_left"] = clamped_long(budget.tokens_left)
        return out


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


_CEDAR_POLICY_ID = re.compile(r"(?<=policy )`([^`]+)`")
"""A policy id as Cedar's evaluation errors quote it: error while evaluating policy `policy1`."""
_ESCAPE = re.compile(r"\\(?:u\{([0-9a-fA-F]{1,6})\}|x([0-9a-fA-F]{2})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def _unescape(literal: str) -> str:
    """A Cedar string literal's value: ``\\u{5f}``, ``\\x5f``, ``\\n``... decoded."""

    def one(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2)
        if code is not None:
            number = int(code, 16)
            return chr(number) if number <= 0x10FFFF else m.group(0)
        return _SIMPLE_ESCAPES.get(m.group(3), m.group(3))

    return _ESCAPE.sub(one, literal)


def _named(text: str) -> frozenset[str]:
    """Every word and string literal of policy text (what a policy can name an attribute by),
    string literals both as written and decoded (``context["score\\u{5f}pct"]`` names
    ``score_pct``)."""
    strings = _STRING.findall(text)
    return (
        frozenset(_WORD.findall(text))
        | frozenset(strings)
        | frozenset(_unescape(s) for s in strings if "\\" in s)
    )


_EPOCH, _SECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(seconds=1)


@functools.lru_cache(maxsize=8)
def _time_context(second: int, read: frozenset[str]) -> dict[str, Any]:
    """``context.time`` at ``second`` (whole seconds since the epoch, UTC): the attributes the
    policies name (Cedar parsing a ``datetime`` it is not asked about costs ~10 µs), to the
    second (calls within one second share it)."""
    now = _EPOCH + timedelta(seconds=second)
    out: dict[str, Any] = {}
    if "now" in read:
        out["now"] = {"__extn": {"fn": "datetime", "arg": now.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    if "hour" in read:
        out["hour"] = now.hour
    if "weekday" in read:
        out["weekday"] = now.isoweekday()
    return out


def _policies(labels: Sequence[str]) -> str:
    if len(labels) == 1:
        return f"policy {labels[0]}"
    # An @id holding the separator is quoted: "a, b" read as two policies.
    shown = [json.dumps(label, ensure_ascii=False) if "," in label else label for label in labels]
    return f"policies {', '.join(shown)}"


# -- the control --------------------------------------------------------------------------------


def _risk_of(ctx: HookContext) -> Risk:
    """``ctx.risk`` when guards provide one (an object or mapping with ``score`` and
    ``categories``); no risk otherwise."""
    found = getattr(ctx, "risk", None)
    if found is None:
        return Risk()
    if isinstance(found, Risk):
        return found
    get = found.get if isinstance(found, Mapping) else lambda k, d=None: getattr(found, k, d)
    score = get("score", 0.0)
    return Risk(
        float(score) if isinstance(score, int | float) else 0.0,
        frozenset(str(c) for c in get("categories", ()) or ()),
    )


def _labels_of(ctx: HookContext) -> frozenset[str]:
    """``ctx.data_classification`` when the run provides one (a label or labels)."""
    found = getattr(ctx, "data_classification", None)
    if not found:
        return frozenset()
    return frozenset([found] if isinstance(found, str) else (str(x) for x in found))


def request_from(
    ctx: HookContext, call: ToolCall, budgets: BudgetsLeft | None = None
) -> AuthzRequest:
    """The authorization request for a call at ``before_tool``; ``budgets``: what the
    budgets that apply to the call leave (the tighter of it and the run's limits is read)."""
    state, limits = ctx.state, ctx.limits
    usage = state.usage.total_tokens
    left = budgets or BudgetsLeft()
    run_usd = None if limits.max_cost_usd is None else limits.max_cost_usd - state.cost_usd
    run_tokens = None if limits.max_total_tokens is None else limits.max_total_tokens - usage
    budget = Budget(
        cost_usd=state.cost_usd,
        tokens=usage,
        tool_calls=state.tool_calls,
        turns=state.turns,
        usd_left=_tightest(run_usd, left.usd),
        tokens_left=_tightest(run_tokens, left.tokens),
        tool_calls_left=limits.max_tool_calls - state.tool_calls,
    )
    return AuthzRequest(
        tool=call.name,
        args=call.arguments,
        caller=ctx.caller,
        agent=ctx.agent,
        risk=_risk_of(ctx),
        classification=_labels_of(ctx),
        budget=budget,
        entry_point=ctx.entry_point,
    )


def _tightest(*rooms: _N | None) -> _N | None:
    """The smallest of the rooms that are set (``None`` when none is)."""
    known = [r for r in rooms if r is not None]
    return min(known) if known else None


class CedarAuthorization(Control):
    """Decides each tool call with Cedar policies at ``before_tool``: a deny refuses the call
    (the model is told which policy), an ``@escalate`` permit pauses the run for approval."""

    name = "cedar_authorization"
    record_allow = True

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    @classmethod
    def from_spec(
        cls,
        spec: AgentSpec,
        tools: Mapping[str, Tool],
        base_dir: str | Path | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> CedarAuthorization:
        """The control for a spec's ``authorization`` section (policy paths relative to
        ``base_dir``, the spec's folder)."""
        if spec.authorization is None:
            raise SpecError(f"agent {spec.name!r} has no authorization section")
        base = Path(base_dir) if base_dir is not None else Path()
        files = [base / p for p in spec.authorization.policies]
        agent = AgentRef(name=spec.name, version=spec.version)
        return cls(Authorizer.load(files, tools, agent, clock=clock))

    async def before_tool(self, ctx: HookContext, call: ToolCall) -> Decision:
        if call.raw_arguments is not None:
            return Decision.block(f"tool {call.name!r}: the arguments are not a JSON object")
        left: BudgetsLeft | None = None
        budgets = ctx.budgets
        if budgets is not None and self.authorizer.reads_budget_left:
            try:  # the ledger's lookups block (SQL, Redis): off the event loop
                left = await asyncio.to_thread(budgets.left, ctx)
            except BudgetUnavailable as exc:
                if not budgets.fail_open:
                    return Decision.block(
                        f"tool {call.name!r} refused (fail closed): the policies read "
                        f"context.budget, and the budgets could not be read: {exc.message}"
                    )
                log.warning("context.budget without the budgets (fail_open): %s", exc.message)
        verdict = self.authorizer.decide(request_from(ctx, call, left))
        if verdict.effect == "allow":
            return Decision(Verdict.ALLOW, verdict.reason)
        if verdict.effect == "escalate":
            message = "This action needs a person's approval" + (
                f": {verdict.note}" if verdict.note else "."
            )
            return Decision.escalate(verdict.reason, message=message)
        return Decision.block(verdict.reason)
