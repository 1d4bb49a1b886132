"""Who a run is for and how it came in: the caller, the entry point, the kind of run.

Controls read these from ``HookContext`` (authorization, per-key budgets, rate limits), and
the store keeps them on the run record (filters, the tenant boundary of the server).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from tether.core.errors import TetherError
from tether.core.settings import PROJECT_NAME_RULE, is_project_name

DEFAULT_PROJECT = "default"


class EntryPoint(StrEnum):
    """How a run came into Tether."""

    RUNTIME = "runtime"
    """``Agent.run`` (the runtime, ``tether run``, ``tether demo``)."""
    MODEL_GATEWAY = "model_gateway"
    """A request to the OpenAI-compatible model gateway."""
    TOOL_GATEWAY = "tool_gateway"
    """A tool call through the MCP/tool gateway."""
    SDK = "sdk"
    """A run scope opened by the application's own code (a hand-written agent loop)."""
    OTLP = "otlp"
    """Spans an instrumented application sent to ``POST /v1/traces`` (OpenTelemetry in)."""


class RunKind(StrEnum):
    """What a run is, as the store files it."""

    AGENT_RUN = "agent_run"
    """A whole agent run: input, model and tool calls, output."""
    MODEL_REQUEST = "model_request"
    """One model request (a gateway request): input, one model call, output."""
    TOOL_CALL = "tool_call"
    """One tool call (a tool-gateway request)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the run is for: what authorization, budgets and rate limits key on. (A plain
    dataclass: ``tether.core`` loads without pydantic; ``RunState`` serializes it.)"""

    project: str = DEFAULT_PROJECT
    """The project (tenant) the run belongs to."""
    key_id: str | None = None
    """Id of the API key the request came with (never the key itself)."""
    end_user: str | None = None
    """The application's end user the run acts for, as the application names them."""
    roles: frozenset[str] = field(default_factory=frozenset)
    """Roles of the caller (``admin``, ``developer``, ``viewer``, ``agent``, or the app's own)."""
    scopes: frozenset[str] = field(default_factory=frozenset)
    """Permission scopes the caller holds (matched against a tool's ``scopes``)."""

    def __post_init__(self) -> None:
        """Refuse what would be stored wrongly under every row of the run, or read as something
        else: a project no project may be called (``PROJECT_NAME``, as ``TETHER_PROJECT`` is
        refused: its runs could never be opened in ``tether serve``), an id that is not text
        (it crashed the run's start), ``roles="admin"`` (five one-letter roles to the
        policies). Any iterable of names is taken for ``roles`` and ``scopes``, kept as a
        frozenset."""
        if not isinstance(self.project, str) or not is_project_name(self.project):
            raise TetherError(
                f"Caller.project must be a project name ({PROJECT_NAME_RULE}), got "
                f"{self.project!r:.120}"
            )
        for name in ("key_id", "end_user"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TetherError(f"Caller.{name} must be text or None, got {value!r:.120}")
        for name in ("roles", "scopes"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise TetherError(
                    f"Caller.{name} must be a set of names (e.g. {{'admin'}}), got {value!r:.120}"
                )
            names = value if isinstance(value, frozenset) else frozenset(value)
            if not all(isinstance(n, str) for n in names):
                raise TetherError(f"Caller.{name} must hold names (text), got {value!r:.120}")
            if names is not value:
                object.__setattr__(self, name, names)

    def stored(self) -> dict[str, object]:
        """The caller as the store keeps it (JSON-ready, sorted, empty parts left out)."""
        out: dict[str, object] = {"project": self.project}
        if self.key_id is not None:
            out["key_id"] = self.key_id
        if self.end_user is not None:
            out["end_user"] = self.end_user
        if self.roles:
            out["roles"] = sorted(self.roles)
        if self.scopes:
            out["scopes"] = sorted(self.scopes)
        return out


@dataclass(frozen=True, slots=True)
class AgentRef:
    """The agent a run belongs to, when there is one (a gateway request may have none)."""

    name: str
    version: str = ""
    """Content hash of the agent's spec."""
