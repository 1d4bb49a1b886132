"""Python function tools: ``@tool`` turns a typed function into a validated ``Tool``."""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_type_hints, overload

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticUserError,
    ValidationError,
    create_model,
)

from tether.core import SpecError, ToolArgumentsError, ToolError, describe_exception
from tether.providers.types import describe_invalid_arguments
from tether.spec.model import TOOL_NAME_PATTERN
from tether.tools.base import DEFAULT_MAX_RESULT_CHARS, SideEffects, ToolResult, clip_result
from tether.tools.isolation import IsolatedCall, call_in_process
from tether.tools.loading import FunctionRef
from tether.tools.threads import run_in_daemon_thread

Isolation = Literal["thread", "process"]

_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)

_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$", re.MULTILINE)
_ARG_LINE = re.compile(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Summary text and per-argument descriptions from a Google-style docstring."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    match = _ARGS_SECTION.search(doc)
    if not match:
        return doc.strip(), {}
    summary = doc[: match.start()].strip()
    params: dict[str, str] = {}
    for line in doc[match.end() :].splitlines():
        arg = _ARG_LINE.match(line)
        if arg:
            params[arg.group(1)] = arg.group(2).strip()
        elif line.strip() and not line.startswith((" ", "\t")):
            break
    return summary, params


_NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def _finite(value: Any) -> Any:
    """``value`` (JSON-ready data) with NaN and infinities as the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def format_result(value: Any, tool_name: str = "") -> str:
    """A tool's return value as the text the model sees: a string as it is, anything else as
    standard JSON. NaN and infinities, which standard JSON has no words for, become the
    strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (a pydantic model's own
    ``ser_json_inf_nan`` setting, ``null`` by default, decides for its fields). A value that
    cannot be turned into JSON is a ``ToolError`` naming its type and where it is defined."""
    if isinstance(value, str):
        return value
    try:
        text = pydantic_core.to_json(value, inf_nan_mode="strings").decode()
        if any(word in text for word in _NON_FINITE):  # maybe a model set to "constants"
            data = pydantic_core.to_jsonable_python(value, inf_nan_mode="strings")
            text = json.dumps(
                _finite(data), allow_nan=False, ensure_ascii=False, separators=(",", ":")
            )
        return text
    except (pydantic_core.PydanticSerializationError, ValueError) as exc:
        kind = type(value)
        culprit = re.search(r"unknown type: <class '([^']+)'>", str(exc))
        what = culprit.group(1) if culprit else f"{kind.__module__}.{kind.__qualname__}"
        who = f"tool '{tool_name}'" if tool_name else "the tool"
        raise ToolError(
            f"{who} returned a value that cannot be turned into JSON ({what}): return text, "
            "numbers, lists, dicts, dataclasses or pydantic models"
        ) from None


def _reference_of(func: Callable[..., Any]) -> FunctionRef | None:
    """Where another process can import ``func`` from, if it can."""
    module = getattr(func, "__module__", None)
    attr = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or not attr.isidentifier():  # nested, a method
        return None
    if module.endswith(".py") and os.path.isabs(module):  # a file loaded from a spec
        return FunctionRef(attr=attr, file=Path(module))
    return FunctionRef(attr=attr, module=module)


def check_tool_name(name: str, *, source: str = "") -> str:
    """``name`` if the OpenAI API would accept it as a function name, else ``SpecError``.
    ``source`` says where the name came from, for the message."""
    if not _TOOL_NAME.match(name):
        raise SpecError(
            f"tool name {name!r}{source} is not valid: use letters, digits, '_' and '-' "
            "(at most 64, starting with a letter or '_')",
        )
    return name


def arguments_model(
    tool_name: str, arguments: dict[str, tuple[Any, Any, str | None]]
) -> type[BaseModel]:
    """A pydantic model of a tool's arguments; ``arguments`` maps each argument's name to
    ``(annotation, default or ..., description)``.

    Every field gets an internal name and the argument's name as its alias, so any argument
    name works: pydantic itself refuses names with a leading underscore and ones that clash
    with ``BaseModel`` (``model_config``, ``model_dump``, ``json``, ...).
    ``validate_arguments`` hands the values back under the arguments' names.
    """
    fields: dict[str, Any] = {
        f"arg_{i}": (annotation, Field(default, alias=name, description=description))
        for i, (name, (annotation, default, description)) in enumerate(arguments.items())
    }
    return create_model(f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields)


def validate_arguments(
    tool_name: str, args_model: type[BaseModel], arguments: dict[str, Any]
) -> dict[str, Any]:
    """Validated keyword arguments, or ``ToolArgumentsError`` saying what is wrong (this text
    goes back to the model so it can correct itself)."""
    if "__raw__" in arguments:
        raise ToolArgumentsError(
            f"invalid arguments for tool '{tool_name}': "
            f"{describe_invalid_arguments(str(arguments['__raw__']))}"
        )
    try:
        parsed = args_model.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ToolArgumentsError(f"invalid arguments for tool '{tool_name}': {problems}") from None
    return {
        (field.alias or name): getattr(parsed, name)
        for name, field in type(parsed).model_fields.items()
    }


class FunctionTool:
    """A Python function exposed as a tool; arguments are validated before the call.

    ``side_effects`` defaults to ``external``, the riskiest class: a tool is treated as acting
    outside the system unless it is declared ``read`` or ``write``.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: SideEffects = "external",
        scopes: tuple[str, ...] | list[str] = (),
        timeout_s: float = 30.0,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
        isolation: Isolation = "thread",
        source: FunctionRef | None = None,
    ) -> None:
        self.func = func
        if name is not None:
            self._name = check_tool_name(name)
        else:  # a lambda, a functools.partial, a callable object
            self._name = check_tool_name(
                str(getattr(func, "__name__", repr(func))),
                source=" (the function's name; pass name=...: @tool(name=...), "
                "tool(name=...)(func) or FunctionTool(func, name=...))",
            )
        summary, arg_docs = _parse_docstring(func.__doc__)
        self._description = description if description is not None else summary
        self._side_effects: SideEffects = side_effects
        self._scopes = tuple(scopes)
        self._timeout_s = timeout_s
        self._max_result_chars = max_result_chars
        self._isolation: Isolation = isolation
        self._source = source
        if isolation == "process" and source is None:
            self._source = _reference_of(func)
            if self._source is None:
                raise SpecError(
                    f"tool '{self._name}': isolation 'process' needs a function that a child "
                    "process can import: a top-level function of an importable module or of a "
                    "file the spec names (file.py:function), not one defined in __main__, "
                    "inside a function, or in a class",
                )
        self._is_async = inspect.iscoroutinefunction(func)
        self._args_model = self._build_args_model(func, arg_docs)
        try:
            self._parameters = self._args_model.model_json_schema()
        except PydanticUserError as exc:  # a type with no JSON schema (a callable)
            raise SpecError(
                f"tool '{self._name}': cannot describe its arguments: {exc.message}"
            ) from None
        self._parameters.pop("title", None)

    def _build_args_model(self, func: Callable[..., Any], docs: dict[str, str]) -> type[BaseModel]:
        try:
            hints = get_type_hints(func)
        except Exception as exc:
            raise SpecError(
                f"tool '{self._name}': cannot read its type hints: {describe_exception(exc)}"
            ) from None
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:  # some builtins have no signature
            raise SpecError(f"tool '{self._name}': cannot read its signature: {exc}") from None
        arguments: dict[str, tuple[Any, Any, str | None]] = {}
        for pname, param in signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise SpecError(f"tool '{self._name}': *args and **kwargs are not supported")
            if param.kind is param.POSITIONAL_ONLY:
                # Tools are called with keyword arguments only.
                raise SpecError(
                    f"tool '{self._name}': parameter '{pname}' is positional-only; "
                    "tool parameters must be passable by name",
                    hint="wrap the function in one whose parameters can be passed by name",
                )
            annotation = hints.get(pname, Any)
            default = ... if param.default is param.empty else param.default
            arguments[pname] = (annotation, default, docs.get(pname))
        try:
            return arguments_model(self._name, arguments)
        except PydanticUserError as exc:  # a type pydantic cannot validate (a socket)
            raise SpecError(
                f"tool '{self._name}': unsupported parameter type: {exc.message}"
            ) from None

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    @property
    def side_effects(self) -> SideEffects:
        return self._side_effects

    @property
    def scopes(self) -> tuple[str, ...]:
        return self._scopes

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def max_result_chars(self) -> int:
        """Longest result text the model sees; a longer one is clipped, with a note."""
        return self._max_result_chars

    @property
    def isolation(self) -> Isolation:
        """``thread`` (in this process) or ``process`` (a child process, killed at the
        timeout)."""
        return self._isolation

    @property
    def args_model(self) -> type[BaseModel]:
        """The pydantic model that validates the arguments."""
        return self._args_model

    def with_metadata(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: SideEffects | None = None,
        scopes: list[str] | None = None,
        timeout_s: float | None = None,
        max_result_chars: int | None = None,
        isolation: Isolation | None = None,
        source: FunctionRef | None = None,
    ) -> FunctionTool:
        """A copy with the given metadata (say, declared in a spec, which wins over the
        decorator); what is ``None`` is kept."""
        return FunctionTool(
            self.func,
            name=name or self._name,
            description=description or self._description,
            side_effects=side_effects or self._side_effects,
            scopes=scopes if scopes is not None else self._scopes,
            timeout_s=timeout_s or self._timeout_s,
            max_result_chars=max_result_chars or self._max_result_chars,
            isolation=isolation or self._isolation,
            source=source or self._source,
        )

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        kwargs = validate_arguments(self._name, self._args_model, arguments)
        if self._isolation == "process":
            assert self._source is not None  # checked when built
            content, data = await call_in_process(
                IsolatedCall(
                    ref=self._source,
                    tool_name=self._name,
                    arguments=dict(arguments),
                    max_result_chars=self._max_result_chars,
                    sys_path=list(sys.path),
                    environ=dict(os.environ),
                    cwd=os.getcwd(),
                )
            )
            return ToolResult(content=content, data=data)
        if self._is_async:
            value = await self.func(**kwargs)
        else:
            value = await run_in_daemon_thread(self.func, kwargs)
        text = format_result(value, self._name)
        return ToolResult(content=clip_result(text, self._max_result_chars), data=value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly (for the user's own tests)."""
        return self.func(*args, **kwargs)


@overload
def tool(func: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: SideEffects = "external",
    scopes: tuple[str, ...] | list[str] = (),
    timeout_s: float = 30.0,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    isolation: Isolation = "thread",
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: SideEffects = "external",
    scopes: tuple[str, ...] | list[str] = (),
    timeout_s: float = 30.0,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    isolation: Isolation = "thread",
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a tool from a typed function: ``@tool`` or ``@tool(side_effects="read")``.

    The argument schema comes from the type hints, the description from the docstring (and
    per-argument descriptions from its ``Args:`` section). ``side_effects`` defaults to
    ``external`` (the riskiest class): declare ``read`` or ``write`` for tools that do less.
    The name (the function's, or ``name=``) must be a valid OpenAI function name. A result
    longer than ``max_result_chars`` is clipped (the model is told its full size).
    ``isolation="process"`` runs each call in a child process that is killed at the timeout
    (the function must then be importable by reference, its result JSON-serializable).
    """

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            f,
            name=name,
            description=description,
            side_effects=side_effects,
            scopes=scopes,
            timeout_s=timeout_s,
            max_result_chars=max_result_chars,
            isolation=isolation,
        )

    return wrap(func) if func is not None else wrap
