"""``AgentSpec``: the declarative description of an agent, one-to-one with its YAML file."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.core import content_hash
from tether.sandbox.limits import (
    MAX_CODE_BYTES,
    MAX_FILE_MB,
    MAX_MEMORY_MB,
    MAX_OPEN_FILES,
    MAX_OUTPUT_BYTES,
    MAX_PROCESSES,
    MAX_TIMEOUT_S,
    MAX_WORK_DIR_MB,
    MIN_MEMORY_MB,
    MIN_TIMEOUT_S,
    SandboxLimits,
)
from tether.spec.numbers import refuse_bool
from tether.spec.resilience import ResilienceConfig

if TYPE_CHECKING:
    # The guards module builds on the classes here (a judge's ModelConfig); ``tether.spec``
    # resolves these two names once both modules are loaded (``AgentSpec.model_rebuild``).
    from tether.spec.budgets import BudgetsConfig
    from tether.spec.guards import GuardsConfig, OutputConfig

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
"""Agent names."""
TOOL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
"""Tool names: what the OpenAI API accepts for a function name (``^[a-zA-Z0-9_-]{1,64}$``),
starting with a letter or ``_``."""
URL_FIELD = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""An ``{arg}`` field of an HTTP tool's URL template (``${ENV}`` is not one)."""
_HOST_WITH_PORT = re.compile(r"[^:\[\]]+:\d*")
"""``host:port`` (an IPv6 address has more than one colon)."""
TOOL_KINDS = ("python", "http", "python_sandbox")
UNKNOWN_TOOL_KIND = "unknown_tool_kind"
"""Error type of a tool whose ``kind`` is none of ``TOOL_KINDS``."""
MAX_RESULT_CHARS = 16_000
"""Default ``max_result_chars`` of a tool."""
SPEC_SCHEMA_VERSION = 2
"""Bumped by a change to the spec format or to what a default means; part of every version
hash (2: tools' ``side_effects`` defaults to ``external``, no longer ``read``)."""


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a spec must not silently drop a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads true/yes as a bool, which pydantic would take as 1 for a number.
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _numeric(field.annotation):
                return refuse_bool(value)
        return value


def _numeric(annotation: Any) -> bool:
    """An ``int`` or ``float`` field, optional or not (not one that also takes a bool)."""
    kinds = set(get_args(annotation)) - {type(None)} if get_args(annotation) else {annotation}
    return bool(kinds) and kinds <= {int, float}


class ModelConfig(_Strict):
    """Which model an agent calls, and how."""

    provider: Literal["scripted", "openai"] = "scripted"
    """``scripted`` (offline, deterministic) or ``openai`` (any OpenAI-compatible endpoint)."""
    name: str
    """Model name sent to the provider and used for pricing (``gpt-4.1-mini``); not empty."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature."""
    seed: int | None = None
    """Sampling seed, where the provider supports one."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Cap on completion tokens per call."""
    script: str | None = None
    """``scripted`` only: path to the script YAML, relative to the spec file."""
    base_url: str | None = None
    """``openai`` only: API base URL (default ``https://api.openai.com/v1``)."""
    api_key_env: str = "OPENAI_API_KEY"
    """``openai`` only: name of the environment variable that holds the API key."""
    timeout_s: float = Field(default=60.0, gt=0)
    """``openai`` only: the per-call timeout, in seconds, apart from the run's
    (``limits.timeout_s``): how long one HTTP attempt may take (a reply that is not streamed
    must have arrived whole; a stream its head, then each next event, keep-alive comments
    not counting). A timed-out attempt is retried like a 5xx, then the call fails with a
    retryable error and the chain moves on to the next model."""
    max_retries: int = Field(default=3, ge=0, le=10)
    """Retries on 429 and 5xx with jittered exponential backoff."""
    stream: bool = False
    """Use server-sent-event streaming for completions."""

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("must not be empty")
        return name

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError as exc:  # a bad port, an unbalanced [ in the host
            raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must be an http or https URL, not {url!r}")
        if not host:
            raise ValueError(f"{url!r} has no host")
        return url

    @model_validator(mode="after")
    def _check_provider_fields(self) -> ModelConfig:
        if self.provider == "scripted" and not self.script:
            raise ValueError("a scripted model needs 'script': the path of its script file")
        if self.provider != "scripted" and self.script:
            raise ValueError("'script' applies only to provider 'scripted'")
        return self


class ToolParameter(_Strict):
    """One argument of a declarative (HTTP) tool."""

    type: Literal["string", "integer", "number", "boolean"] = "string"
    """JSON-schema type of the argument."""
    description: str = ""
    """What the argument means, shown to the model."""
    required: bool = True
    """Whether the model must supply it."""


class _ToolBase(_Strict):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    """Tool name as the model sees it: letters, digits, ``_`` and ``-``, at most 64."""
    description: str = ""
    """What the tool does, shown to the model (Python tools default to their docstring)."""
    side_effects: Literal["read", "write", "external"] = "external"
    """Least-privilege class: ``read`` only reads, ``write`` changes state, ``external`` acts
    outside the system (sends mail, pays). Undeclared means ``external``, the riskiest class, so
    that forgetting to declare a tool never makes it look harmless to the controls."""
    scopes: list[str] = Field(default_factory=list)
    """Scopes the caller must hold for this tool (checked by authorization controls)."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Time limit for one call."""
    max_result_chars: int = Field(default=MAX_RESULT_CHARS, gt=0, le=1_000_000)
    """Longest result the model sees; a longer one is clipped, with a note giving its size."""


class PythonToolSpec(_ToolBase):
    """A Python function tool. Either passed to ``Agent(tools=[...])`` or imported by path."""

    kind: Literal["python"] = "python"
    function: str | None = None
    """``module:function`` or ``file.py:function`` (relative to the spec file). Omit when the
    function is passed in from Python."""
    isolation: Literal["thread", "process"] = "thread"
    """``thread``: calls run in a thread of the agent's process; one that times out keeps
    running there until it returns. ``process``: each call runs in a child process that is
    killed at the timeout (the function must be importable by reference, and its result
    JSON-serializable)."""


class HttpToolSpec(_ToolBase):
    """A declarative HTTP tool: one request built from a URL template and the arguments."""

    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    """HTTP method."""
    url: str
    """URL template: ``{arg}`` is filled from the arguments, ``${ENV}`` from the environment."""
    allowed_hosts: list[str] = Field(min_length=1)
    """Hosts the tool may reach; a URL resolving elsewhere is refused."""
    parameters: dict[str, ToolParameter] = Field(default_factory=dict, validate_default=True)
    """Arguments; those not used in the URL go in the query (GET, DELETE) or JSON body
    (others), left out when an optional one is not given. A URL field must be required."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers; values may use ``${ENV}`` (never written to traces)."""
    allowed_networks: list[str] = Field(default_factory=list)
    """Networks (CIDR, ``10.0.0.0/8``, or one address) the tool may connect to although they
    are private, loopback, link-local, metadata or otherwise not public; refused by default."""
    max_redirects: int = Field(default=0, ge=0, le=10)
    """Redirects followed, each checked like the first request (host and address); 0 refuses
    them. Headers are sent only to the origin of ``url``."""

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not a network: write an address or a CIDR block "
                    "(127.0.0.1, 10.0.0.0/8, fd00::/8)"
                ) from None
        return networks

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names_only(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if "://" in host or "/" in host:
                raise ValueError(f"{host!r}: allowed_hosts takes host names, not URLs")
            if host.startswith("[") or _HOST_WITH_PORT.fullmatch(host):
                bare = host[1:].partition("]")[0] if host[0] == "[" else host.rpartition(":")[0]
                raise ValueError(
                    f"{host!r}: allowed_hosts takes host names without ports or brackets: "
                    f"write {bare!r} (the port belongs in the url)"
                )
            if not host.strip():
                raise ValueError("allowed_hosts has an empty entry")
        return hosts

    @field_validator("parameters")
    @classmethod
    def _url_fields_are_required_parameters(
        cls, parameters: dict[str, ToolParameter], info: ValidationInfo
    ) -> dict[str, ToolParameter]:
        url = info.data.get("url")
        if not isinstance(url, str):  # the url itself is invalid, and reported
            return parameters
        used = sorted(set(URL_FIELD.findall(url)))
        undeclared = [name for name in used if name not in parameters]
        if undeclared:
            raise ValueError(f"url uses {undeclared} which are not in 'parameters'")
        optional = [name for name in used if not parameters[name].required]
        if optional:
            raise ValueError(
                f"url uses optional parameters {optional}: a parameter in the url must be "
                "required (leave an optional one out of the url: it is then sent in the query "
                "or body, and only when given)"
            )
        return parameters


_SANDBOX_DEFAULTS = SandboxLimits()


class PythonSandboxToolSpec(_ToolBase):
    """Runs the Python code the model writes in a bubblewrap sandbox: no network, no host
    files, an unprivileged uid, and limits on time, memory, processes, files and output.
    Where bubblewrap is missing, each call fails with an error result; code never runs
    unsandboxed."""

    kind: Literal["python_sandbox"]
    timeout_s: float = Field(
        default=_SANDBOX_DEFAULTS.timeout_s, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S
    )
    """Wall-clock seconds of one run; then every process of it is killed."""
    memory_mb: int = Field(
        default=_SANDBOX_DEFAULTS.memory_mb,
        ge=MIN_MEMORY_MB,
        le=MAX_MEMORY_MB,
    )
    """Address space of each process, in MiB."""
    cpu_s: int | None = Field(default=None, ge=1, le=int(MAX_TIMEOUT_S))
    """CPU seconds of each process (default: the timeout rounded up, plus 1)."""
    max_processes: int = Field(default=_SANDBOX_DEFAULTS.max_processes, ge=1, le=MAX_PROCESSES)
    """Processes and threads at once, the program itself included."""
    max_file_mb: int = Field(default=_SANDBOX_DEFAULTS.max_file_mb, ge=1, le=MAX_FILE_MB)
    """Largest file the program may write, in MiB."""
    max_open_files: int = Field(default=_SANDBOX_DEFAULTS.max_open_files, ge=16, le=MAX_OPEN_FILES)
    """Open file descriptors per process."""
    work_dir_mb: int = Field(default=_SANDBOX_DEFAULTS.work_dir_mb, ge=1, le=MAX_WORK_DIR_MB)
    """Room in the private work dir ``/tmp`` (in memory) besides the program, in MiB."""
    max_output_bytes: int = Field(
        default=_SANDBOX_DEFAULTS.max_output_bytes, ge=1, le=MAX_OUTPUT_BYTES
    )
    """Bytes kept of stdout and of stderr each; more ends the run (the model sees at most
    ``max_result_chars`` of the result)."""
    max_code_bytes: int = Field(default=_SANDBOX_DEFAULTS.max_code_bytes, ge=1, le=MAX_CODE_BYTES)
    """Longest program accepted, in bytes."""

    def sandbox_limits(self) -> SandboxLimits:
        """These limits as the sandbox takes them (the fields of the same names)."""
        return SandboxLimits(**{f.name: getattr(self, f.name) for f in fields(SandboxLimits)})


def _tool_kind(value: Any) -> str | None:
    # Not a mapping at all: let the python variant say what it expected.
    kind = (
        value.get("kind", "python") if isinstance(value, dict) else getattr(value, "kind", "python")
    )
    return kind if kind in TOOL_KINDS else None


ToolSpec = Annotated[
    Annotated[PythonToolSpec, Tag("python")]
    | Annotated[HttpToolSpec, Tag("http")]
    | Annotated[PythonSandboxToolSpec, Tag("python_sandbox")],
    Discriminator(
        _tool_kind,
        custom_error_type=UNKNOWN_TOOL_KIND,
        custom_error_message="unknown tool kind; valid kinds are 'python' (the default), "
        "'http' and 'python_sandbox'",
    ),
]


MAX_BUDGET_USD = 10_000_000.0
"""The largest US-dollar budget or run cost limit (more is a typo, not a budget)."""
MAX_BUDGET_TOKENS = 10**13
"""The largest token budget or run token limit."""
MAX_TIMEOUT_S = 604_800.0
"""The longest run timeout: a week."""


class Limits(_Strict):
    """Run limits, checked before each model call and each tool call (``timeout_s`` cancels
    whatever is running). Tripping one ends the run with outcome ``limit_exceeded``; partial
    results are kept. A call already made is not undone, so token and cost totals can end up
    at most one model call past their limit."""

    # Bounded like budgets (``spec.budgets``): a value past these is a typo, not a limit,
    # and an unbounded one overflows what reads it (Cedar's 64-bit Longs, timers).
    max_turns: int = Field(default=10, gt=0, le=100_000)
    """Model calls per run."""
    max_tool_calls: int = Field(default=20, ge=0, le=1_000_000)
    """Tool calls per run."""
    max_total_tokens: int | None = Field(default=None, gt=0, le=MAX_BUDGET_TOKENS)
    """Input plus output tokens per run."""
    max_cost_usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD, allow_inf_nan=False)
    """Model cost per run, in US dollars (from the pricing table)."""
    timeout_s: float = Field(default=120.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    """Wall-clock time per run, in seconds (at most a week: a run that long is a job)."""


class LoopBreakerConfig(_Strict):
    """When the loop breaker stops a run: the same tool called with the same arguments
    ``max_repeats`` times in the run (not only in a row) with no new information (the latest
    earlier ones all returned the same result) ends the run with outcome ``loop_detected``."""

    max_repeats: int = Field(default=3, ge=2)
    """Identical calls that stop the run (the last one is not made); at least 2."""
    exempt_tools: list[str] = Field(default_factory=list)
    """Tools never counted: those meant to be polled with the same arguments (a job's
    status). Each must be declared under ``tools``."""


# -- tool authorization (Cedar) ------------------------------------------------------------------


class AuthorizationConfig(_Strict):
    """Cedar policies that decide every tool call. Once set, a call no policy permits is
    refused (default deny)."""

    policies: list[str] = Field(min_length=1)
    """Policy files (``.cedar``), relative to the spec file."""
    schema_: Literal["auto"] = Field(default="auto", alias="schema")
    """``auto``: the Cedar schema is generated from the agent's tools; policies are validated
    against it when the agent loads."""

    @field_validator("policies", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("policies")
    @classmethod
    def _not_blank(cls, paths: list[str]) -> list[str]:
        if any(not path.strip() for path in paths):
            raise ValueError("a policy file path is empty")
        return paths


def _check_declared(names: list[str], field: str, info: ValidationInfo) -> None:
    """Each of ``names`` (a list ``field`` of a section) must be one of the spec's tools."""
    tools = info.data.get("tools")
    if tools is None:  # the tools themselves are invalid, and reported
        return
    declared = [tool.name for tool in tools]
    for i, name in enumerate(names):
        if name not in declared:
            raise ValueError(
                f"{field}[{i}]: {name!r} is not a tool of this agent "
                f"(declared under 'tools': {', '.join(declared) or 'none'})"
            )


def _no_guards() -> GuardsConfig:
    from tether.spec.guards import GuardsConfig

    return GuardsConfig()


class AgentSpec(_Strict):
    """An agent: who it is, what it may use, how it reasons and where it stops."""

    name: str = Field(pattern=NAME_PATTERN)
    """Agent name; traces and versions are grouped by it."""
    description: str = ""
    """One line for humans."""
    persona: str = ""
    """Who the agent is (goes first in the system prompt)."""
    goal: str = ""
    """What the agent is for."""
    instructions: str = ""
    """How the agent must behave."""
    model: ModelConfig
    """Primary model."""
    fallback_models: list[ModelConfig] = Field(default_factory=list)
    """Tried in order when the primary model fails after its retries."""
    tools: list[ToolSpec] = Field(default_factory=list)
    """Tools the agent may call. Anything not listed is denied."""
    paradigm: Literal["react", "plan_execute"] = "react"
    """``react``: think, call tools, repeat. ``plan_execute``: plan the tool calls once, run
    them, then answer."""
    limits: Limits = Field(default_factory=Limits)
    """Run limits."""
    loop_breaker: LoopBreakerConfig = Field(default_factory=LoopBreakerConfig)
    """When repeating the same tool call stops the run."""
    guards: GuardsConfig = Field(default_factory=lambda: _no_guards())
    """Guards on the input, tool results, documents and answer; spotlighting."""
    output: OutputConfig | None = None
    """The answer's required shape (a JSON Schema), re-asked when it does not match."""
    authorization: AuthorizationConfig | None = None
    """Cedar policies deciding each tool call (default deny once set); none: every declared
    tool may be called."""
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    """Circuit breakers on the model endpoints and the answer given when every model is down."""
    budgets: BudgetsConfig | None = None
    """Token and US-dollar budgets (per project, agent, end user or run; per run, day or
    month) and rate limits, each model call checked against them before it is made."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form labels (team, owner, ticket)."""

    @field_validator("tools")
    @classmethod
    def _unique_tool_names(cls, tools: list[ToolSpec]) -> list[ToolSpec]:
        seen: set[str] = set()
        for tool in tools:
            if tool.name in seen:
                raise ValueError(f"tool name '{tool.name}' is declared twice")
            seen.add(tool.name)
        return tools

    @field_validator("loop_breaker")
    @classmethod
    def _exempt_tools_are_declared(
        cls, loop_breaker: LoopBreakerConfig, info: ValidationInfo
    ) -> LoopBreakerConfig:
        _check_declared(loop_breaker.exempt_tools, "exempt_tools", info)
        return loop_breaker

    @field_validator("guards")
    @classmethod
    def _documents_are_declared(cls, guards: GuardsConfig, info: ValidationInfo) -> GuardsConfig:
        _check_declared(guards.documents, "documents", info)
        return guards

    @property
    def version(self) -> str:
        """Content hash of the normalized spec: equal specs share a version.

        Fields left at their defaults are not hashed, so a release that adds a field (with a
        default) keeps every existing agent's version. Computed on each access: a cached value
        would be carried over, stale, by ``model_copy(update=...)``."""
        normalized = self.model_dump(mode="json", exclude_defaults=True)
        return content_hash({"spec_schema": SPEC_SCHEMA_VERSION, "spec": normalized})[:16]

    def system_prompt(self) -> str:
        """Persona, goal and instructions, in that order, as the system message."""
        parts = [
            self.persona.strip(),
            self.goal.strip() and f"Goal: {self.goal.strip()}",
            self.instructions,
        ]
        return "\n\n".join(p.strip() for p in parts if p and p.strip())
