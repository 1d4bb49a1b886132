"""``check_spec``: what ``tether validate`` runs: a spec checked the way ``Agent.from_yaml``
would build it, without running it or opening a trace store."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tether.controls import CedarAuthorization
from tether.controls.budgets import check_budgets
from tether.controls.cedar_policies import load_policies
from tether.controls.guard_build import build_guards
from tether.core import ProviderError, SpecError
from tether.providers import Model, ScriptedModel, build_model
from tether.resilience import missing_redis, timeout_warnings
from tether.runtime.structured import OutputSchema
from tether.spec import AgentSpec, load_spec
from tether.spec.loader import read_yaml
from tether.tools import HttpTool, Tool, build_tools, check_tools
from tether.trace import PricingTable
from tether.trace.pricing import pricing_from_env


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Errors in what a spec points at (a script, a tool file, an environment variable, an
    API key) name the spec file."""
    try:
        yield
    except (SpecError, ProviderError) as exc:
        # A file the spec points at (a guards policy) keeps its problems, file by file.
        problems = exc.problems if isinstance(exc, SpecError) else None
        raise SpecError(f"{path}: {exc.message}", hint=exc.hint, problems=problems) from None


def _check_cost_limit(spec: AgentSpec, model_names: Sequence[str], pricing: PricingTable) -> None:
    if spec.limits.max_cost_usd is None:
        return
    unpriced = [name for name in model_names if pricing.price_for(name) is None]
    if unpriced:
        raise SpecError(
            f"limits.max_cost_usd is set but the pricing table (version {pricing.version}) "
            f"has no price for {', '.join(unpriced)}: the cost limit could never trip",
            hint="use a priced model name, add its price to the file TETHER_PRICES_FILE names, "
            "pass Agent(pricing=...) with a table that prices it, or remove max_cost_usd",
        )


@dataclass
class SpecCheck:
    """What :func:`check_spec` found: the spec, what it builds, and what the environment lacks."""

    path: Path
    spec: AgentSpec
    models: list[Model]
    """The models that could be built (a model whose API key is not set is left out)."""
    tools: dict[str, Tool]
    missing_env: list[str] = field(default_factory=list)
    """Environment variables the agent needs to run that are not set here."""
    warnings: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    """Python tools checked by reference only (``import_tools=False``): not in ``tools``."""
    authorization: CedarAuthorization | None = None
    """The spec's Cedar policies, loaded against its tools (``None``: no ``authorization``
    section, or tools not imported, whose argument types the policies are checked against)."""


_EMPTY_SECTIONS = {
    "authorization": "no Cedar policy decides the tool calls: every declared tool may be called",
    "budgets": "no budget or rate limit is counted",
}


def _empty_section_warnings(path: Path) -> list[str]:
    """A section written with nothing under it (its lines commented out) is null in YAML,
    which reads as no section at all: for these, that lets through what the author meant to
    restrict, without a word."""
    data, _ = read_yaml(path)
    if not isinstance(data, dict):
        return []
    return [
        f"{name}: is empty (null), so {effect}; fill it in, or remove the line"
        for name, effect in _EMPTY_SECTIONS.items()
        if name in data and data[name] is None
    ]


def check_spec(
    path: str | Path, *, pricing: PricingTable | None = None, import_tools: bool = True
) -> SpecCheck:
    """Check a spec file the way ``Agent.from_yaml`` would build it, without running it or
    opening a trace store. Missing environment variables (API keys, URLs of HTTP tools) are
    reported in ``missing_env`` instead of raised, so specs can be checked where secrets are
    not available (CI). Everything else raises ``SpecError`` naming the file.

    Building a Python tool imports its module, which runs that module's code: check only
    specs you trust, or pass ``import_tools=False`` to check tool references without
    importing them (see ``check_tools``)."""
    path = Path(path)
    spec = load_spec(path)
    base_dir = path.parent
    missing: set[str] = set()
    models: list[Model] = []
    with _naming(path):
        for config in (spec.model, *spec.fallback_models):
            try:
                models.append(build_model(config, base_dir))
            except ProviderError:
                if config.provider == "openai" and not os.environ.get(config.api_key_env):
                    missing.add(config.api_key_env)
                    continue
                raise
        not_imported: list[str] = []
        tool_warnings: list[str] = []
        if import_tools:
            tools = build_tools(spec.tools, base_dir=base_dir, strict_env=False)
        else:
            found = check_tools(spec.tools, base_dir=base_dir)
            tools, not_imported, tool_warnings = found.tools, found.not_imported, found.warnings
        _check_cost_limit(
            spec,
            [c.name for c in (spec.model, *spec.fallback_models)],
            pricing or pricing_from_env(),
        )
        # The guards and the output schema as the agent would build them: a policy file, a
        # guard's function or model, a schema file that cannot work is an error now.
        build_guards(
            spec.guards,
            base_dir=base_dir,
            model=models[0] if models else None,
            import_functions=import_tools,
            missing_env=missing,
        )
        if spec.output is not None:
            OutputSchema.from_config(spec.output, base_dir)
        if spec.budgets is not None:  # a policy file, prices for a dollar budget
            missing.update(
                check_budgets(
                    spec.budgets,
                    base_dir=base_dir,
                    models=[c.name for c in (spec.model, *spec.fallback_models)],
                    pricing=pricing or pricing_from_env(),
                )
            )
        # The Cedar policies as the agent would load them: checked against the tools' schema
        # when every tool was built; else (tools not imported) read and parsed only, as the
        # schema needs the tools' signatures.
        authorization = None
        policy_warnings: list[str] = []
        if spec.authorization is not None:
            if not not_imported:
                authorization = CedarAuthorization.from_spec(spec, tools, base_dir)
                loaded = authorization.authorizer.loaded
            else:
                loaded = load_policies([base_dir / p for p in spec.authorization.policies])
            if not loaded.policies and spec.tools:
                policy_warnings.append(
                    "authorization: the policy files hold no Cedar policy, so every tool "
                    "call is denied (default deny)"
                )
    missing.update(var for t in tools.values() if isinstance(t, HttpTool) for var in t.missing_env)
    missing.update(missing_redis(spec.resilience))
    check = SpecCheck(
        path=path,
        spec=spec,
        models=models,
        tools=tools,
        missing_env=sorted(missing),
        not_imported=not_imported,
        authorization=authorization,
    )
    if check.missing_env:
        check.warnings.append(
            f"not set in this environment: {', '.join(check.missing_env)} "
            "(needed to run, not to validate)"
        )
    check.warnings += _empty_section_warnings(path)
    check.warnings += tool_warnings
    check.warnings += policy_warnings
    check.warnings += _script_warnings(models, {*tools, *not_imported})
    check.warnings += _unsent_key_warnings(spec, missing)
    check.warnings += timeout_warnings(spec)
    return check


def _unsent_key_warnings(spec: AgentSpec, missing: set[str]) -> list[str]:
    """A local server needs no key, so an unset ``api_key_env`` is no error there (nor in
    ``missing``); but one the spec names explicitly is wanted, and the server's answer to its
    absence can mislead (LiteLLM answers 500)."""
    unsent = [
        config
        for config in (spec.model, *spec.fallback_models)
        if config.provider == "openai"
        and "api_key_env" in config.model_fields_set
        and not (os.environ.get(config.api_key_env) or "").strip()
        and config.api_key_env not in missing
    ]
    if not unsent:
        return []
    from tether.providers.http_client import display_url  # loads httpx: only when needed

    return [
        f"model {config.name!r}: api_key_env {config.api_key_env} is not set, so no API key "
        f"will be sent to {display_url(config.base_url or '')}"
        for config in unsent
    ]


def _script_warnings(models: list[Model], tools: set[str]) -> list[str]:
    """Scripted models that call tools the agent does not have (the run would get errors)."""
    out = []
    for model in models:
        if not isinstance(model, ScriptedModel):
            continue
        script = model.script
        steps = [*script.steps, *(s for rule in script.rules for s in rule.steps)]
        called = {c.name for step in steps for c in step.tool_calls}
        for name in sorted(called - set(tools)):
            out.append(
                f"script of model '{model.name}' calls tool '{name}', which the agent does not have"
            )
    return out
