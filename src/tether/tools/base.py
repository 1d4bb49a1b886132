"""The ``Tool`` protocol and what a tool call returns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from tether.providers import ToolDefinition

SideEffects = Literal["read", "write", "external"]

DEFAULT_MAX_RESULT_CHARS = 16_000
"""Longest tool result the model sees by default (``max_result_chars`` of a tool)."""


def clip_result(text: str, max_chars: int, *, full_size: str | None = None) -> str:
    """``text`` if it has at most ``max_chars`` characters, else its start and a note telling
    the model that the result was clipped and how large it was (``full_size`` overrides the
    size stated, for a result that was not read in full)."""
    if len(text) <= max_chars and full_size is None:
        return text
    size = full_size or f"{len(text):,} characters"
    return (
        f"{text[: _token_end(text, max_chars)]}\n[result clipped: the full result is {size}; "
        f"only the first {max_chars:,} characters are shown]"
    )


_TOKEN_CHAR = re.compile(r"[A-Za-z0-9+/=_\-.~]")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9+/=_\-.~]")
TOKEN_BACKOFF = 256
"""Characters a clip may move back to stay out of a token."""


def _token_end(text: str, limit: int) -> int:
    """Where to cut ``text`` at ``limit`` at the latest: before the token (a run of key,
    base64 or URL characters) the limit falls inside, when it starts within ``TOKEN_BACKOFF``
    characters. Half a key or token is no longer what the guards recognize and mask; left
    out whole, it is neither shown nor stored."""
    if limit >= len(text) or not _TOKEN_CHAR.match(text, limit) or limit == 0:
        return limit
    if not _TOKEN_CHAR.match(text, limit - 1):
        return limit  # the limit falls between two tokens
    start = max(0, limit - TOKEN_BACKOFF)
    ends = [m.end() for m in _NOT_TOKEN.finditer(text, start, limit)]
    return ends[-1] if ends else limit


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call produced. ``is_error`` results go back to the model as errors."""

    content: str
    """Text the model sees."""
    is_error: bool = False
    data: Any = None
    """The raw return value, for controls and traces."""


@runtime_checkable
class Tool(Protocol):
    """What the runtime needs from a tool."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON schema of the arguments."""
        ...

    @property
    def side_effects(self) -> SideEffects: ...

    @property
    def scopes(self) -> tuple[str, ...]: ...

    @property
    def timeout_s(self) -> float: ...

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        """Validate ``arguments`` and run. Raises ``ToolArgumentsError`` for bad arguments and
        ``ToolError`` (or anything else) for failures; the runtime turns both into results."""
        ...


class SpecToolFields:
    """The ``Tool`` properties a tool declared in the spec reads from its spec section
    (``self.spec``: name, side effects, scopes) and its argument schema (``self._parameters``).
    Tools override ``description`` and ``timeout_s`` where theirs differ."""

    spec: Any
    _parameters: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def description(self) -> str:
        return str(self.spec.description)

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    @property
    def side_effects(self) -> SideEffects:
        value: SideEffects = self.spec.side_effects
        return value

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.spec.scopes)

    @property
    def timeout_s(self) -> float:
        return float(self.spec.timeout_s)


def definition_of(tool: Tool) -> ToolDefinition:
    """The tool as the model sees it."""
    return ToolDefinition(name=tool.name, description=tool.description, parameters=tool.parameters)
