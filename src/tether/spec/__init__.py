"""Agent specs: the pydantic models and their YAML loader."""

from pathlib import Path

from tether.spec.budgets import (
    BudgetLimit,
    BudgetsConfig,
    BudgetsPolicy,
    RateLimit,
)
from tether.spec.guards import (
    GuardRule,
    GuardsConfig,
    GuardsPolicy,
    OutputConfig,
    check_json_schema,
)
from tether.spec.loader import (
    copy_origin,
    load_model,
    load_with_tree,
    origin_of,
    read_yaml,
    refuse_pipe,
    remember_origin,
    validation_message,
)
from tether.spec.model import (
    AgentSpec,
    HttpToolSpec,
    Limits,
    LoopBreakerConfig,
    ModelConfig,
    PythonSandboxToolSpec,
    PythonToolSpec,
    ToolParameter,
    ToolSpec,
)
from tether.spec.resilience import CircuitBreakerConfig, ResilienceConfig

AgentSpec.model_rebuild(
    _types_namespace={
        "GuardsConfig": GuardsConfig,
        "OutputConfig": OutputConfig,
        "BudgetsConfig": BudgetsConfig,
    }
)


def load_guards_policy(path: str | Path) -> GuardsPolicy:
    """Read and validate a guards policy file; ``SpecError`` naming file, line and field."""
    refuse_pipe(path, "guards policy file")
    policy, node = load_with_tree(GuardsPolicy, path)
    for i, rule in enumerate(policy.guards):  # so errors found when building name the line
        remember_origin(rule, path, node, ("guards", i))
    return policy


def load_budgets_policy(path: str | Path) -> BudgetsPolicy:
    """Read and validate a budgets policy file; ``SpecError`` naming file, line and field."""
    refuse_pipe(path, "budgets policy file")
    policy, node = load_with_tree(BudgetsPolicy, path)
    remember_origin(policy.budgets, path, node, ("budgets",))
    return policy


def load_spec(path: str | Path) -> AgentSpec:
    """Load and validate an agent spec from a YAML file."""
    spec, node = load_with_tree(AgentSpec, path)
    for i, tool in enumerate(spec.tools):  # so errors found when building tools name the line
        remember_origin(tool, path, node, ("tools", i))
    for i, rule in enumerate(spec.guards.rules):
        remember_origin(rule, path, node, ("guards", "rules", i))
    if spec.budgets is not None:  # a Redis URL missing is found when the agent is built
        remember_origin(spec.budgets, path, node, ("budgets",))
    return spec


__all__ = [
    "AgentSpec",
    "BudgetLimit",
    "BudgetsConfig",
    "BudgetsPolicy",
    "CircuitBreakerConfig",
    "GuardRule",
    "GuardsConfig",
    "GuardsPolicy",
    "HttpToolSpec",
    "Limits",
    "LoopBreakerConfig",
    "ModelConfig",
    "OutputConfig",
    "PythonSandboxToolSpec",
    "PythonToolSpec",
    "RateLimit",
    "ResilienceConfig",
    "ToolParameter",
    "ToolSpec",
    "check_json_schema",
    "copy_origin",
    "load_budgets_policy",
    "load_guards_policy",
    "load_model",
    "load_spec",
    "origin_of",
    "read_yaml",
    "refuse_pipe",
    "validation_message",
]
