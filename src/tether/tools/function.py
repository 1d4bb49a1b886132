"""Python function tools: ``@tool`` turns a typed function into a validated ``Tool``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import re
import threading
from collections.abc import Callable
from typing import Any, get_type_hints, overload

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticUserError,
    ValidationError,
    create_model,
)

from tether.core import SpecError, ToolArgumentsError
from tether.providers.types import describe_invalid_arguments
from tether.spec.model import TOOL_NAME_PATTERN
from tether.tools.base import SideEffects, ToolResult

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


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled (tool timeout, run stopped)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def run_in_daemon_thread(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a blocking function in its own daemon thread and await its result.

    Unlike ``asyncio.to_thread``, a call that never returns (a hung tool that timed out or was
    abandoned when the run stopped) does not keep the process from exiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(func, **kwargs)
        except StopIteration as exc:  # a Future refuses StopIteration; keep what it said
            error = RuntimeError(f"the tool raised StopIteration({exc})")
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit/KeyboardInterrupt in a tool thread: the tool
            error = RuntimeError(f"the tool raised {type(exc).__name__}({exc})")  # failed
        # If the event loop is gone, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, value, error)

    name = f"tether-tool-{getattr(func, '__name__', 'call')}"
    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def format_result(value: Any) -> str:
    """A tool's return value as the text the model sees."""
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value).decode()


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
            raise SpecError(f"tool '{self._name}': cannot read its type hints: {exc}") from None
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

    def with_metadata(
        self,
        *,
        description: str | None = None,
        side_effects: SideEffects | None = None,
        scopes: list[str] | None = None,
        timeout_s: float | None = None,
    ) -> FunctionTool:
        """A copy with spec-declared metadata applied (the spec wins over the decorator)."""
        return FunctionTool(
            self.func,
            name=self._name,
            description=description or self._description,
            side_effects=side_effects or self._side_effects,
            scopes=scopes if scopes is not None else self._scopes,
            timeout_s=timeout_s or self._timeout_s,
        )

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        kwargs = validate_arguments(self._name, self._args_model, arguments)
        if self._is_async:
            value = await self.func(**kwargs)
        else:
            value = await run_in_daemon_thread(self.func, kwargs)
        return ToolResult(content=format_result(value), data=value)

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
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a tool from a typed function: ``@tool`` or ``@tool(side_effects="read")``.

    The argument schema comes from the type hints, the description from the docstring (and
    per-argument descriptions from its ``Args:`` section). ``side_effects`` defaults to
    ``external`` (the riskiest class): declare ``read`` or ``write`` for tools that do less.
    The name (the function's, or ``name=``) must be a valid OpenAI function name.
    """

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            f,
            name=name,
            description=description,
            side_effects=side_effects,
            scopes=scopes,
            timeout_s=timeout_s,
        )

    return wrap(func) if func is not None else wrap
