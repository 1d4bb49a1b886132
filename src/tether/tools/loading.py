"""Finding the Python function a spec names (``module:function`` or ``file.py:function``):
importing it, or checking the reference without running any of its code."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.core import SpecError, describe_exception

_SHAPE = "must look like 'module:function' or 'file.py:function'"


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """Where a function lives: enough for this process, or another one, to import it."""

    attr: str
    """The function's name in its module."""
    file: Path | None = None
    """Absolute path of the ``.py`` file (for ``file.py:function``)."""
    module: str | None = None
    """Importable module name (for ``module:function``)."""

    def __str__(self) -> str:
        return f"{self.file or self.module}:{self.attr}"


def parse_ref(ref: str, base_dir: Path | None) -> FunctionRef:
    """The reference ``ref`` points at, checked for shape only (nothing is read or imported).
    A relative file resolves from ``base_dir``."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise SpecError(f"function {ref!r} {_SHAPE}")
    if not attr.isidentifier():
        raise SpecError(f"function {ref!r}: {attr!r} is not a Python name ({_SHAPE})")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return FunctionRef(attr=attr, file=path.absolute())
    if not all(part.isidentifier() for part in target.split(".")):
        raise SpecError(f"function {ref!r}: {target!r} is not a module name ({_SHAPE})")
    return FunctionRef(attr=attr, module=target)


def _failure_site(exc: BaseException) -> str:
    """``file:line`` where an import failed (the innermost frame outside importlib)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _import_failure(what: str, exc: BaseException) -> str:
    """Why importing ``what`` failed, naming the file and line where it did."""
    site = _failure_site(exc)
    if isinstance(exc, SystemExit):
        return f"importing {what} called sys.exit({exc.code!r}) at {site}"
    if isinstance(exc, KeyboardInterrupt):
        return f"importing {what} was interrupted (KeyboardInterrupt at {site})"
    return f"importing {what} failed at {site}: {describe_exception(exc)}"


def _module_from_file(path: Path) -> Any:
    # The module is named after its file, so class names in messages and tracebacks
    # (``<class '/srv/agent/tools.py.Order'>``) say where the code lives.
    mod_name = str(path.resolve())
    module = sys.modules.get(mod_name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # sys.exit() and Ctrl-C at import time are spec errors too
        del sys.modules[mod_name]
        raise SpecError(_import_failure(str(path), exc)) from None
    return module


def load_function(ref: FunctionRef) -> Callable[..., Any]:
    """Import the module ``ref`` names (running its code) and return the function."""
    if ref.file is not None:
        if not ref.file.is_file():
            raise SpecError(f"file {ref.file} not found")
        module = _module_from_file(ref.file)
    else:
        assert ref.module is not None
        try:
            module = importlib.import_module(ref.module)
        except ImportError as exc:
            missing = exc.name or ""
            if not (ref.module == missing or ref.module.startswith(missing + ".")):
                # The module exists; something it imports does not.
                raise SpecError(_import_failure(f"module {ref.module!r}", exc)) from None
            raise SpecError(f"cannot import module {ref.module!r}: {exc}") from None
        except BaseException as exc:  # sys.exit() and Ctrl-C at import time are spec errors too
            raise SpecError(_import_failure(f"module {ref.module!r}", exc)) from None
    func = getattr(module, ref.attr, None)
    if func is None or not callable(func):
        raise SpecError(f"{ref.file or ref.module} has no callable {ref.attr!r}")
    return func  # type: ignore[no-any-return]


def import_function(ref: str, base_dir: Path | None) -> Callable[..., Any]:
    """Resolve ``module:function`` or ``path/to/file.py:function`` (relative to ``base_dir``).
    Importing runs the module's code; every failure, ``sys.exit()`` included, is a
    ``SpecError`` naming the file and line."""
    parsed = parse_ref(ref, base_dir)
    try:
        return load_function(parsed)
    except SpecError as exc:
        raise SpecError(f"function {ref!r}: {exc.message}", hint=exc.hint) from None


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def check_function_ref(ref: str, base_dir: Path | None) -> list[str]:
    """Check ``ref`` without running any code: its shape; for a file, that it exists, parses
    and defines the function at top level; for a module, that its top-level package can be
    found (finding a submodule would import its parents). Raises ``SpecError``; returns
    warnings for what could not be settled without running the code."""
    parsed = parse_ref(ref, base_dir)
    if parsed.file is not None:
        path = parsed.file
        try:
            source = path.read_bytes()
        except FileNotFoundError:
            raise SpecError(f"function {ref!r}: file {path} not found") from None
        except OSError as exc:
            raise SpecError(f"function {ref!r}: cannot read {path}: {exc.strerror}") from None
        try:
            tree = ast.parse(source, filename=str(path))
        except (SyntaxError, ValueError) as exc:
            site = f"{path}:{exc.lineno}" if isinstance(exc, SyntaxError) else str(path)
            raise SpecError(f"function {ref!r}: {site}: not valid Python: {exc}") from None
        if parsed.attr not in _top_level_names(tree):
            return [
                f"function {ref!r}: {path} has no top-level definition of {parsed.attr!r} "
                "(it may be made at import time; not checked without importing)"
            ]
        return []
    assert parsed.module is not None
    top = parsed.module.split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise SpecError(
            f"function {ref!r}: no module named {top!r} on the Python path",
            hint="install the package, or run from the folder that contains it",
        )
    return []
