"""``tether policy``: check an agent's Cedar policies, show its schema, run policy fixtures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tether.cli import render
from tether.cli.base import EXIT_ERROR, handle_errors, warn
from tether.cli.terminal import PlainStyle, visible
from tether.core import SpecError

if TYPE_CHECKING:
    from tether.controls import Authorizer
    from tether.spec import AgentSpec


def _authorizer(spec_path: Path) -> Authorizer:
    """The spec's policies loaded against its tools (importing its Python tools)."""
    return _authorized(spec_path)[0]


def _authorized(spec_path: Path) -> tuple[Authorizer, AgentSpec]:
    """The spec's authorizer and the spec."""
    from tether.runtime import check_spec

    check = check_spec(spec_path)  # loads the policies against the tools, naming the spec
    if check.authorization is None:
        raise SpecError(
            f"{spec_path}: the agent has no authorization section",
            hint="add `authorization: {policies: [tools.cedar]}` to the spec",
        )
    return check.authorization.authorizer, check.spec


@click.group()
def policy() -> None:
    """Cedar tool authorization: check policies, show the schema, run fixtures.

    Checking a spec imports its Python tools (their argument types make the schema), which
    runs their code: use these commands on specs you trust."""


@policy.command("check")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def check(spec: Path, as_json: bool) -> None:
    """Parse and validate SPEC's policies against the schema of its tools."""
    authorizer, agent = _authorized(spec)
    policies = sorted(p.label for p in authorizer.loaded.policies.values())
    if as_json:
        click.echo(render.dumps({"file": str(spec), "valid": True, "policies": policies}))
        return
    if not policies and agent.tools:
        warn("the policy files hold no Cedar policy, so every tool call is denied (default deny)")
    style = PlainStyle(sys.stdout)
    count = f"{len(policies)} Cedar {'policy' if len(policies) == 1 else 'policies'}"
    click.echo(
        f"{style('✓', fg='green')} {visible(spec)}: {count} valid: "
        f"{visible(', '.join(policies)) or 'none'}",
        color=style.enabled,
    )


@policy.command("schema")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print Cedar's JSON schema format.")
@handle_errors
def schema(spec: Path, as_json: bool) -> None:
    """Print the Cedar schema generated from SPEC's tools (what policies are checked against)."""
    from tether.controls.authz import schema_json, schema_text
    from tether.controls.cedar_schema import tool_args
    from tether.runtime import check_spec

    tools = check_spec(spec).tools
    if as_json:
        args = {name: tool_args(t.parameters) for name, t in tools.items()}
        click.echo(render.dumps(schema_json(tools, args)))
        return
    click.echo(visible(schema_text(tools)))


@policy.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@handle_errors
def test(file: Path, as_json: bool) -> None:
    """Run the policy fixtures in FILE (YAML or JSON: agent, cases of principal, action,
    context and the expected decision); exit 1 when a case gets another decision."""
    from tether.controls.authz_fixtures import (
        FixtureFile,
        agent_path,
        check_cases,
        run_cases,
    )
    from tether.spec.loader import load_with_tree, origin_of, remember_origin

    fixtures, node = load_with_tree(FixtureFile, file)
    remember_origin(fixtures, file, node)
    lines = [
        (found[1] if (found := origin_of(fixtures, "cases", i)) else None)
        for i in range(len(fixtures.cases))
    ]
    authorizer, spec = _authorized(agent_path(file, fixtures))
    check_cases(authorizer, fixtures, lines, file)
    results = run_cases(authorizer, fixtures, lines, spec.limits.max_tool_calls)
    failed = [r for r in results if not r.ok]
    if as_json:
        cases: list[dict[str, Any]] = [
            {
                "name": r.case.name,
                "line": r.line,
                "ok": r.ok,
                "expected": r.case.expect,
                "decision": r.verdict.effect,
                "policies": list(r.verdict.policies),
                "reason": r.verdict.reason,
            }
            for r in results
        ]
        summary = {"passed": len(results) - len(failed), "failed": len(failed)}
        click.echo(render.dumps({"file": str(file), **summary, "cases": cases}))
    else:
        style = PlainStyle(sys.stdout)
        out = []
        for r in results:
            where = f"{file}:{r.line}" if r.line else str(file)
            if r.ok:
                out.append(f"{style('✓', fg='green')} {visible(r.case.name)}: {r.verdict.effect}")
            else:
                out.append(
                    f"{style('✗', fg='red')} {visible(r.case.name)} ({visible(where)}): "
                    f"{visible(r.why())}"
                )
        out.append(f"{len(results) - len(failed)} of {len(results)} cases passed")
        click.echo("\n".join(out), color=style.enabled)
    if failed:
        sys.exit(EXIT_ERROR)
