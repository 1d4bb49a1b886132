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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from tether.core import SpecError, ToolArgumentsError
from tether.tools.base import SideEffects, ToolResult

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


def validate_arguments(
    tool_name: str, args_model: type[BaseModel], arguments: dict[str, Any]
) -> dict[str, Any]:
    """Validated keyword arguments, or ``ToolArgumentsError`` saying what is wrong (this text
    goes back to the model so it can correct itself)."""
    if "__raw__" in arguments:
        raise ToolArgumentsError(
            f"invalid arguments for tool '{tool_name}': not valid JSON: "
            f"{str(arguments['__raw__'])[:200]}"
        )
    try:
        parsed = args_model.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ToolArgumentsError(f"invalid arguments for tool '{tool_name}': {problems}") from None
    return {k: getattr(parsed, k) for k in type(parsed).model_fields}


class FunctionTool:
    """A Python function exposed as a tool; arguments are validated before the call."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: SideEffects = "read",
        scopes: tuple[str, ...] | list[str] = (),
        timeout_s: float = 30.0,
    ) -> None:
        self.func = func
        self._name = name or func.__name__
        summary, arg_docs = _parse_docstring(func.__doc__)
        self._description = description if description is not None else summary
        self._side_effects: SideEffects = side_effects
        self._scopes = tuple(scopes)
        self._timeout_s = timeout_s
        self._is_async = inspect.iscoroutinefunction(func)
        self._args_model = self._build_args_model(func, arg_docs)
        self._parameters = self._args_model.model_json_schema()
        self._parameters.pop("title", None)

    def _build_args_model(self, func: Callable[..., Any], docs: dict[str, str]) -> type[BaseModel]:
        try:
            hints = get_type_hints(func)
        except Exception as exc:
            raise SpecError(f"tool '{self._name}': cannot read its type hints: {exc}") from None
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(func).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise SpecError(f"tool '{self._name}': *args and **kwargs are not supported")
            annotation = hints.get(pname, Any)
            default = ... if param.default is param.empty else param.default
            fields[pname] = (annotation, Field(default, description=docs.get(pname)))
        return create_model(f"{self._name}_args", __config__=ConfigDict(extra="forbid"), **fields)

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
    side_effects: SideEffects = "read",
    scopes: tuple[str, ...] | list[str] = (),
    timeout_s: float = 30.0,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: SideEffects = "read",
    scopes: tuple[str, ...] | list[str] = (),
    timeout_s: float = 30.0,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a tool from a typed function: ``@tool`` or ``@tool(side_effects="write")``.

    The argument schema comes from the type hints, the description from the docstring (and
    per-argument descriptions from its ``Args:`` section).
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
