"""Build an agent's tools from its spec plus the tools passed in from Python."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tether.core import SpecError
from tether.spec import HttpToolSpec, PythonToolSpec, ToolSpec, origin_of
from tether.tools.base import Tool
from tether.tools.function import FunctionTool, check_tool_name
from tether.tools.http import HttpTool


def import_function(ref: str, base_dir: Path | None) -> Callable[..., Any]:
    """Resolve ``module:function`` or ``path/to/file.py:function`` (relative to ``base_dir``)."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise SpecError(f"function {ref!r} must look like 'module:function' or 'file.py:function'")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise SpecError(f"function {ref!r}: file {path} not found")
        mod_name = f"tether_user_tools_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(mod_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise SpecError(f"function {ref!r}: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                raise SpecError(f"function {ref!r}: importing {path} failed: {exc!r}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise SpecError(f"function {ref!r}: cannot import module {target!r}: {exc}") from None
        except Exception as exc:
            raise SpecError(
                f"function {ref!r}: importing module {target!r} failed: {exc!r}"
            ) from exc
    func = getattr(module, attr, None)
    if func is None or not callable(func):
        raise SpecError(f"function {ref!r}: {target} has no callable {attr!r}")
    return func  # type: ignore[no-any-return]


def _as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    if isinstance(obj, Tool):
        check_tool_name(obj.name)  # a Tool of the user's own making
        return obj
    if callable(obj):
        return FunctionTool(obj)
    raise SpecError(f"{obj!r} is not a tool or a function")


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
        where = f"tools[{i}] '{spec.name}'"
        origin = origin_of(spec, "function")
        if origin is not None:  # loaded by load_spec: name the line (callers name the file)
            where += f" (line {origin[1]})"
        if isinstance(spec, HttpToolSpec):
            tools[spec.name] = HttpTool(spec, strict_env=strict_env)
            continue
        assert isinstance(spec, PythonToolSpec)
        impl = given.pop(spec.name, None)
        if impl is None and spec.function:
            try:
                found = import_function(spec.function, base_dir)
                if isinstance(found, FunctionTool):
                    # Already a tool (``@tool``-decorated): keep its metadata, take the spec's name.
                    impl = FunctionTool(
                        found.func,
                        name=spec.name,
                        description=found.description,
                        side_effects=found.side_effects,
                        scopes=found.scopes,
                        timeout_s=found.timeout_s,
                    )
                else:
                    impl = FunctionTool(found, name=spec.name)
            except SpecError as exc:
                raise SpecError(f"{where}: {exc.message}", hint=exc.hint) from None
        if impl is None:
            raise SpecError(
                f"{where}: no implementation",
                hint="set 'function: module:function' in the spec, or pass the function in "
                "Agent(..., tools=[...])",
            )
        if isinstance(impl, FunctionTool):
            # Only what the spec actually declares overrides the decorator: a field left to its
            # default must not downgrade side_effects to "read" or drop required scopes.
            declared = spec.model_fields_set
            impl = impl.with_metadata(
                description=spec.description or None,
                side_effects=spec.side_effects if "side_effects" in declared else None,
                scopes=list(spec.scopes) if "scopes" in declared else None,
                timeout_s=spec.timeout_s if "timeout_s" in declared else None,
            )
        tools[spec.name] = impl
    tools.update(given)
    return tools
