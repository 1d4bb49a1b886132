"""Build an agent's tools from its spec plus the tools passed in from Python."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.core import SpecError
from tether.spec import HttpToolSpec, PythonSandboxToolSpec, PythonToolSpec, ToolSpec, origin_of
from tether.tools.base import Tool
from tether.tools.function import FunctionTool, check_tool_name
from tether.tools.http import HttpTool
from tether.tools.loading import check_function_ref, import_function, parse_ref
from tether.tools.sandbox import PythonSandboxTool

logger = logging.getLogger(__name__)


def _as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    if isinstance(obj, Tool):
        check_tool_name(obj.name)  # a Tool of the user's own making
        return obj
    if callable(obj):
        return FunctionTool(obj)
    raise SpecError(f"{obj!r} is not a tool or a function")


def _where(i: int, spec: ToolSpec) -> str:
    where = f"tools[{i}] '{spec.name}'"
    origin = origin_of(spec, "function")
    if origin is not None:  # loaded by load_spec: name the line (callers name the file)
        where += f" (line {origin[1]})"
    return where


def _no_implementation(where: str) -> SpecError:
    return SpecError(
        f"{where}: no implementation",
        hint="set 'function: module:function' in the spec, or pass the function in "
        "Agent(..., tools=[...])",
    )


def build_tools(
    specs: Sequence[ToolSpec],
    *,
    base_dir: Path | None = None,
    provided: Sequence[Tool | Callable[..., Any]] = (),
    strict_env: bool = True,
) -> dict[str, Tool]:
    """Tools by name. Declared tools take their metadata from the spec; Python tools passed in
    but not declared are added as they are (passing one in is an explicit grant).
    ``strict_env=False`` lets HTTP tools load with unset ``${ENV}`` variables (for checks)."""
    given = {t.name: t for t in map(_as_tool, provided)}
    tools: dict[str, Tool] = {}
    for i, spec in enumerate(specs):
        where = _where(i, spec)
        if isinstance(spec, HttpToolSpec):
            tools[spec.name] = HttpTool(spec, strict_env=strict_env)
            continue
        if isinstance(spec, PythonSandboxToolSpec):
            tools[spec.name] = _sandbox_tool(spec, where, logger.warning)
            continue
        assert isinstance(spec, PythonToolSpec)
        impl = given.pop(spec.name, None)
        if impl is None and spec.function:
            try:
                found = import_function(spec.function, base_dir)
                # The child of an isolated call imports the function from the same place.
                source = parse_ref(spec.function, base_dir)
                if isinstance(found, FunctionTool):
                    # Already a tool (``@tool``-decorated): keep its metadata, take the spec's name.
                    impl = found.with_metadata(name=spec.name, source=source)
                else:
                    impl = FunctionTool(found, name=spec.name, source=source)
            except SpecError as exc:
                raise SpecError(f"{where}: {exc.message}", hint=exc.hint) from None
        if impl is None:
            raise _no_implementation(where)
        if isinstance(impl, FunctionTool):
            # Only what the spec actually declares overrides the decorator: a field left to its
            # default must not downgrade side_effects to "read" or drop required scopes.
            declared = spec.model_fields_set
            try:
                impl = impl.with_metadata(
                    description=spec.description or None,
                    side_effects=spec.side_effects if "side_effects" in declared else None,
                    scopes=list(spec.scopes) if "scopes" in declared else None,
                    timeout_s=spec.timeout_s if "timeout_s" in declared else None,
                    max_result_chars=(
                        spec.max_result_chars if "max_result_chars" in declared else None
                    ),
                    isolation=spec.isolation if "isolation" in declared else None,
                )
            except SpecError as exc:
                raise SpecError(f"{where}: {exc.message}", hint=exc.hint) from None
        tools[spec.name] = impl
    tools.update(given)
    return tools


def _sandbox_tool(
    spec: PythonSandboxToolSpec, where: str, warn: Callable[[str], object]
) -> PythonSandboxTool:
    """The sandbox tool; where the sandbox cannot run here, a warning (its calls will fail,
    closed: no code runs unsandboxed)."""
    from tether.sandbox import SandboxUnavailable

    tool = PythonSandboxTool(spec)
    try:
        tool.sandbox.check()
    except SandboxUnavailable as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        warn(f"{where}: the sandbox cannot run here: {exc.message}; calls will fail{hint}")
    return tool


@dataclass
class ToolCheck:
    """What :func:`check_tools` found without running any tool code."""

    tools: dict[str, Tool]
    """The tools that could be built without running their code (HTTP tools)."""
    not_imported: list[str] = field(default_factory=list)
    """Python tools whose function was checked by reference only."""
    warnings: list[str] = field(default_factory=list)


def check_tools(specs: Sequence[ToolSpec], *, base_dir: Path | None = None) -> ToolCheck:
    """Check the spec's tools without importing any tool module (so without running code
    from it): HTTP tools are built (unset ``${ENV}`` variables allowed); a Python tool's
    ``function`` is checked by reference (see ``check_function_ref``). Raises ``SpecError``
    naming the tool and its line."""
    check = ToolCheck(tools={})
    for i, spec in enumerate(specs):
        where = _where(i, spec)
        if isinstance(spec, HttpToolSpec):
            check.tools[spec.name] = HttpTool(spec, strict_env=False)
            continue
        if isinstance(spec, PythonSandboxToolSpec):
            check.tools[spec.name] = _sandbox_tool(spec, where, check.warnings.append)
            continue
        assert isinstance(spec, PythonToolSpec)
        if not spec.function:
            raise _no_implementation(where)
        try:
            found = check_function_ref(spec.function, base_dir)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc.message}", hint=exc.hint) from None
        check.warnings += [f"{where}: {w}" for w in found]
        check.not_imported.append(spec.name)
    return check
