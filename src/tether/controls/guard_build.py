"""Building the guard controls a spec's ``guards`` section (and its policy file) asks for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tether.controls.guard_base import GuardControl, GuardOptions
from tether.controls.guard_spotlight import SpotlightControl
from tether.controls.pipeline import Control
from tether.core import ProviderError, SpecError, TetherError
from tether.providers import Model, build_model
from tether.spec import GuardsConfig, load_guards_policy, origin_of
from tether.spec.guards import (
    DenyListRule,
    DetectorRule,
    InjectionRule,
    JudgeRule,
    PythonRule,
    TopicsRule,
    _GuardRule,
)


def policy_path(config: GuardsConfig, base_dir: Path | None) -> Path | None:
    """Where ``guards.policy`` points (relative to the spec's folder)."""
    if config.policy is None:
        return None
    path = Path(config.policy)
    return path if path.is_absolute() or base_dir is None else base_dir / path


def guard_rules(config: GuardsConfig, base_dir: Path | None) -> list[tuple[str, _GuardRule]]:
    """The rules to run, the policy file's first, each with where it comes from
    (``guards[i]`` of the policy, ``guards.rules[i]`` of the spec)."""
    rules: list[tuple[str, _GuardRule]] = []
    path = policy_path(config, base_dir)
    if path is not None:
        policy = load_guards_policy(path)
        rules += [(f"guards[{i}]", r) for i, r in enumerate(policy.guards)]
    rules += [(f"guards.rules[{i}]", r) for i, r in enumerate(config.rules)]
    return rules


def build_guards(
    config: GuardsConfig,
    *,
    base_dir: Path | None = None,
    model: Model | None = None,
    extra: Sequence[Control] = (),
    import_functions: bool = True,
    missing_env: set[str] | None = None,
) -> list[Control]:
    """The controls of ``config``: one per rule (the policy's, then the spec's), then the
    ``extra`` controls, then spotlighting (last, so it marks only what every guard let
    through). ``model`` is the judges' default model (the agent's primary model).
    ``import_functions=False`` (``tether validate --no-import``) checks Python guards'
    references without importing them, and leaves those guards out. With ``missing_env``
    (``tether validate``) a judge whose model's API key is not set here is left out and the
    variable added to it, as for the agent's own model."""
    controls: list[Control] = []
    names: dict[str, int] = {}
    for where, rule in guard_rules(config, base_dir):
        try:
            if isinstance(rule, PythonRule) and not import_functions:
                from tether.tools.loading import check_function_ref

                check_function_ref(rule.function, base_dir)
                continue
            judges_agent_model = isinstance(rule, JudgeRule) and rule.model is None
            if judges_agent_model and missing_env is not None and model is None:
                continue  # the agent's model lacks its key here: reported with it
            control = build_rule(rule, documents=config.documents, base_dir=base_dir, model=model)
        except ProviderError as exc:
            unset = _unset_key(rule)
            if missing_env is None or unset is None:
                raise SpecError(f"{_located(rule, where)}: {exc.message}", hint=exc.hint) from None
            missing_env.add(unset)
            continue
        except (TetherError, ValueError, TypeError) as exc:
            message = exc.message if isinstance(exc, TetherError) else str(exc)
            hint = exc.hint if isinstance(exc, TetherError) else None
            raise SpecError(f"{_located(rule, where)}: {message}", hint=hint) from None
        count = names.get(control.name, 0) + 1
        names[control.name] = count
        if count > 1:  # two rules of one guard: events tell them apart
            control.name = f"{control.name}#{count}"
        controls.append(control)
    controls.extend(extra)
    if config.spotlight != "off":
        controls.append(SpotlightControl(config.spotlight))
    return controls


def _unset_key(rule: _GuardRule) -> str | None:
    """The API key variable a judge's own model names and this environment leaves unset."""
    config = rule.model if isinstance(rule, JudgeRule) else None
    if config is None or config.provider != "openai" or os.environ.get(config.api_key_env):
        return None
    return config.api_key_env


def _located(rule: _GuardRule, where: str) -> str:
    origin = origin_of(rule, "guard")
    if origin is None:
        return where
    if where.startswith("guards.rules"):  # the spec's own: callers name the spec file
        return f"{where} (line {origin[1]})"
    return f"{origin[0]}:{origin[1]}: {where}"  # the policy file's


def build_rule(
    rule: _GuardRule,
    *,
    documents: Sequence[str] = (),
    base_dir: Path | None = None,
    model: Model | None = None,
) -> GuardControl:
    """The control of one rule."""
    common: GuardOptions = {
        "channels": rule.channels,
        "action": rule.action,
        "documents": documents,
        "fail_open": rule.fail_open,
    }
    if isinstance(rule, InjectionRule):
        from tether.controls.guard_injection import InjectionGuard

        return InjectionGuard(threshold=rule.threshold, **common)
    if isinstance(rule, DenyListRule):
        from tether.controls.guard_deny import DenyListGuard

        return DenyListGuard(
            terms=rule.terms,
            patterns=rule.patterns,
            case_sensitive=rule.case_sensitive,
            replacement=rule.replacement,
            **common,
        )
    if isinstance(rule, TopicsRule):
        from tether.controls.guard_topics import TopicsGuard

        return TopicsGuard(rule.allowed, min_words=rule.min_words, **common)
    if isinstance(rule, PythonRule):
        from tether.controls.guard_python import FunctionGuard
        from tether.tools.loading import import_function

        function = import_function(rule.function, base_dir)
        return FunctionGuard(function, timeout_s=rule.timeout_s, **common)
    if isinstance(rule, DetectorRule):
        from tether.controls.guard_pii import PiiGuard

        return PiiGuard.from_rule(rule, documents=documents)
    if isinstance(rule, JudgeRule):
        from tether.controls.guard_judge import JudgeGuard

        judge = build_model(rule.model, base_dir) if rule.model is not None else model
        if judge is None:
            raise SpecError("the judge has no model: give it 'model:' or run it in an agent")
        return JudgeGuard(
            judge,
            rule.rubric,
            timeout_s=rule.timeout_s,
            max_chars=rule.max_chars,
            **common,
        )
    raise SpecError(f"no control for guard {rule.guard!r}")
