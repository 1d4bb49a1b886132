"""Policy fixtures: requests with the decision the policies must reach (``tether policy test``).

A fixture file (YAML or JSON) names the agent whose policies and tools it tests and lists
cases::

    agent: agent.yaml                 # relative to this file
    cases:
      - name: support refunds a small order
        principal: {roles: [support], project: acme, end_user: alice}
        action: issue_refund          # the tool called (the resource is that tool)
        context:
          args: {order_id: 7, amount: 20.5}
          risk: {score: 0.1, categories: []}
          time: "2026-11-23T10:00:00Z"
        expect: allow                 # allow | deny | escalate
        policies: [small-refunds]     # optional: the policies that must decide it
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tether.controls.authz import Authorizer, AuthzRequest, AuthzVerdict, Budget, Risk
from tether.core import AgentRef, Caller, EntryPoint, SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixturePrincipal(_Strict):
    """Who calls: the agent (default: the one tested) and the caller."""

    agent: str | None = None
    """Agent name (default: the spec's)."""
    version: str | None = None
    """Agent version (default: the spec's)."""
    project: str = "default"
    end_user: str | None = None
    key_id: str | None = None
    roles: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)


class FixtureRisk(_Strict):
    score: float = Field(default=0.0, ge=0, le=1)
    categories: list[str] = Field(default_factory=list)


class FixtureBudget(_Strict):
    cost_usd: float = Field(default=0.0, ge=0)
    tokens: int = Field(default=0, ge=0)
    tool_calls: int = Field(default=0, ge=0)
    turns: int = Field(default=0, ge=0)
    usd_left: float | None = None
    tokens_left: int | None = None
    tool_calls_left: int | None = None
    """Default: the spec's ``limits.max_tool_calls`` minus ``tool_calls``, as at run time."""


class FixtureContext(_Strict):
    """The request's context (what the runtime fills from the run)."""

    args: dict[str, Any] = Field(default_factory=dict)
    """The call's arguments, as the model would send them."""
    risk: FixtureRisk = Field(default_factory=FixtureRisk)
    classification: list[str] = Field(default_factory=list)
    budget: FixtureBudget = Field(default_factory=FixtureBudget)
    time: datetime | None = None
    """When the call is made (UTC when no zone is given; default: now)."""
    entry_point: EntryPoint = EntryPoint.RUNTIME


class FixtureCase(_Strict):
    """One request and the decision expected."""

    name: str = Field(min_length=1)
    principal: FixturePrincipal = Field(default_factory=FixturePrincipal)
    action: str = Field(min_length=1)
    """The tool called."""
    resource: str | None = None
    """The tool (the same as ``action``; may be left out)."""
    context: FixtureContext = Field(default_factory=FixtureContext)
    expect: Literal["allow", "deny", "escalate"]
    policies: list[str] | None = None
    """The deciding policies expected (``@id`` or Cedar id), in any order."""

    @field_validator("resource")
    @classmethod
    def _resource_is_the_tool(cls, resource: str | None, info: Any) -> str | None:
        action = info.data.get("action")
        if resource is not None and action is not None and resource != action:
            raise ValueError(f"the resource is the tool the action calls: {action!r}")
        return resource


class FixtureFile(_Strict):
    agent: str
    """The agent spec whose policies and tools are tested, relative to the fixture file."""
    cases: list[FixtureCase] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    case: FixtureCase
    line: int | None
    verdict: AuthzVerdict

    @property
    def ok(self) -> bool:
        if self.verdict.effect != self.case.expect:
            return False
        expected = self.case.policies
        return expected is None or sorted(expected) == sorted(self._deciding())

    def _deciding(self) -> list[str]:
        # A label is "id (file:line)" for a policy without @id: match on the id.
        return [p.split(" (", 1)[0] for p in self.verdict.policies]

    def why(self) -> str:
        """What went wrong, for a failed case."""
        got = self.verdict
        if got.effect != self.case.expect:
            return f"expected {self.case.expect}, got {got.effect}: {got.reason}"
        return (
            f"expected policies {sorted(self.case.policies or [])}, "
            f"decided by {sorted(self._deciding())}: {got.reason}"
        )


def request_of(case: FixtureCase, agent: AgentRef, max_tool_calls: int = 20) -> AuthzRequest:
    """The request of a case; ``max_tool_calls``: the spec's limit (what the budget's
    ``tool_calls_left`` counts down from when the case does not give it)."""
    p, c = case.principal, case.context
    budget = c.budget.model_dump()
    if budget["tool_calls_left"] is None:
        budget["tool_calls_left"] = max_tool_calls - c.budget.tool_calls
    when = c.time
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return AuthzRequest(
        tool=case.action,
        args=c.args,
        caller=Caller(
            project=p.project,
            key_id=p.key_id,
            end_user=p.end_user,
            roles=frozenset(p.roles),
            scopes=frozenset(p.scopes),
        ),
        agent=AgentRef(name=p.agent or agent.name, version=p.version or agent.version),
        risk=Risk(c.risk.score, frozenset(c.risk.categories)),
        classification=frozenset(c.classification),
        budget=Budget(**budget),
        now=when,
        entry_point=c.entry_point,
    )


def check_cases(
    authorizer: Authorizer, fixtures: FixtureFile, lines: list[int | None], file: Path
) -> None:
    """Refuse cases naming a tool or an argument the agent does not have.

    At run time such a call is denied, so a typo'd case expecting a deny would pass without
    testing the policy it was written for."""
    errors = []
    for i, (case, line) in enumerate(zip(fixtures.cases, lines, strict=True)):
        where = f"{file}:{line}" if line else str(file)
        names = authorizer.arguments_of(case.action)
        if names is None:
            known = ", ".join(authorizer.tool_names) or "none"
            errors.append(
                f"{where}: cases[{i}].action: {case.action!r} is not one of the agent's tools "
                f"(they are: {known})"
            )
            continue
        for arg in case.context.args:
            if arg not in names:
                errors.append(
                    f"{where}: cases[{i}].context.args: {arg!r} is not an argument of "
                    f"{case.action} (it has: {', '.join(names) or 'none'})"
                )
    if errors:
        raise SpecError(f"invalid policy fixtures in {file}:\n" + "\n".join(errors))


def run_cases(
    authorizer: Authorizer,
    fixtures: FixtureFile,
    lines: list[int | None],
    max_tool_calls: int = 20,
) -> list[CaseResult]:
    """Decide every case with the loaded policies (``max_tool_calls``: the spec's limit)."""
    return [
        CaseResult(
            case, line, authorizer.decide(request_of(case, authorizer.agent, max_tool_calls))
        )
        for case, line in zip(fixtures.cases, lines, strict=True)
    ]


def agent_path(fixture_path: Path, fixtures: FixtureFile) -> Path:
    return fixture_path.parent / fixtures.agent
