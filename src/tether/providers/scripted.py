"""``ScriptedModel``: a deterministic, offline model for tests and demos.

A script is a list of steps (reply with text, request tool calls, or fail), optionally chosen
by rules that match the user's input. The step is picked from the conversation itself (the
number of assistant turns since the last user message), so the model holds no state: the same
conversation always gets the same reply, concurrent runs do not interfere, and replays match.
When the steps run out, the last step repeats. ``stream()`` yields the same reply in pieces (a
word of text at a time, tool calls in pieces); a step's ``stream_cut_after`` breaks a stream off
midway, to test what happens to a reply cut short.

Strings in steps (``text`` and string values in tool-call ``arguments``) may use template fields:

- ``{input}``: the user's message;
- ``{NAME}``: the named group ``NAME`` of the rule's ``when`` pattern (empty when the group did
  not take part in the match, as with ``re``);
- ``{result:TOOL}``: the newest result of that tool since the user's message;
- ``{result:TOOL:field.sub}``: a field of that result parsed as JSON (a text without its
  trailing line end).

Results marked as data by spotlighting (``guards.spotlight``) are read without their marks, as
the request's system prompt explains them: templates see the tool's own text.

A field naming anything else (``{order}`` outside a rule with that group, ``{inptu}``) is refused
when the script is loaded. A result the conversation does not have renders as an explicit marker,
never as the raw braces: ``(no result from TOOL)`` when the tool has not been called, and
``(no field.sub in the result of TOOL)`` when its result (an error message, say) is not JSON or
lacks that field. Other braces (``{"a": 1}``, ``{ }``) are plain text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tether.core import ProviderError
from tether.core.jsontext import compact_json_encoder
from tether.providers.script_patterns import compile_when, search
from tether.providers.streaming import StreamEnd, StreamEvent, UsageUpdate, response_events
from tether.providers.types import Message, ModelRequest, ModelResponse, ToolCall, Usage
from tether.spec import load_model, refuse_pipe

_SPOTLIGHT_SIGNS = ("replaced by the character '", "<<data-")
"""Words of the spotlighting instructions (``Spotlight.instruction``): a request without them
has no marked results, and the guards need not load."""
_TEMPLATE_FIELD = re.compile(
    r"\{(input|result:[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.]+)?|[A-Za-z_][A-Za-z0-9_]*)\}"
)


# json.dumps(value) with its defaults, without building an encoder per call.
_json_dumps = compact_json_encoder(ensure_ascii=True, separators=(", ", ": "))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _check_template_fields(steps: list[ScriptStep], groups: set[str] | None) -> None:
    """Refuse a template field that names neither ``input``, a result, nor one of ``groups``
    (the named groups of a rule's ``when``; ``None`` for the top-level steps)."""
    for i, step in enumerate(steps):
        texts = [step.text or ""] + [s for c in step.tool_calls for s in _strings(c.arguments)]
        for text in texts:
            for match in _TEMPLATE_FIELD.finditer(text):
                key = match.group(1)
                if key == "input" or key.startswith("result:") or key in (groups or ()):
                    continue
                if groups is None:
                    named = (
                        "(top-level steps have no named groups: those come from a rule's 'when')"
                    )
                elif groups:
                    named = "or a named group of 'when': " + ", ".join(
                        f"{{{g}}}" for g in sorted(groups)
                    )
                else:
                    named = "('when' has no named groups (?P<NAME>...))"
                raise ValueError(
                    f"steps[{i}]: unknown template field {match.group(0)}; use {{input}}, "
                    f"{{result:TOOL}}, {{result:TOOL:field}} {named}"
                )


class ScriptedToolCall(BaseModel):
    """A tool call the script makes."""

    model_config = ConfigDict(extra="forbid")
    name: str
    """Tool name."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments; string values may use template fields."""


class ScriptStep(BaseModel):
    """One model turn: exactly one of ``text``, ``tool_calls`` or ``error``."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    """Reply text (a final answer unless tool calls come with it)."""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    """Tool calls to request; several run in parallel."""
    error: str | None = None
    """Fail this turn with a ``ProviderError`` carrying this message (retryable)."""
    stream_cut_after: int | None = Field(default=None, ge=0)
    """When streamed: break the stream off after this many text and tool-call pieces, with a
    retryable ``ProviderError``, as a dropped connection would (``complete()`` replies in
    full)."""

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptStep:
        if self.text is None and not self.tool_calls and self.error is None:
            raise ValueError("a step needs 'text', 'tool_calls' or 'error'")
        if self.error is not None and (self.text is not None or self.tool_calls):
            raise ValueError("an 'error' step cannot also reply")
        if self.error is not None and self.stream_cut_after is not None:
            raise ValueError("an 'error' step has no reply to cut: drop 'stream_cut_after'")
        return self


class ScriptRule(BaseModel):
    """Steps used when ``when`` (a regular expression) is found in the user's input."""

    model_config = ConfigDict(extra="forbid")
    when: str
    """Regular expression searched case-insensitively in the user's message (``regex``
    syntax, a superset of ``re``'s). A repetition of a repetition (``(a+)+``) is refused;
    a search that takes longer than a second stops the run with an error."""
    steps: list[ScriptStep] = Field(min_length=1)
    """The turns, in order."""

    @field_validator("when")
    @classmethod
    def _valid_regex(cls, when: str) -> str:
        compile_when(when)
        return when

    @field_validator("steps")
    @classmethod
    def _known_fields(cls, steps: list[ScriptStep], info: ValidationInfo) -> list[ScriptStep]:
        when = info.data.get("when")
        if when is not None:  # else 'when' is invalid and already reported
            _check_template_fields(steps, set(compile_when(when).groupindex))
        return steps


class Script(BaseModel):
    """A script: plain ``steps``, or ``rules`` tried in order (with optional ``steps`` as the
    fallback when no rule matches)."""

    model_config = ConfigDict(extra="forbid")
    rules: list[ScriptRule] = Field(default_factory=list)
    """Input-matched step lists, first match wins."""
    steps: list[ScriptStep] = Field(default_factory=list)
    """Steps when no rule matches (or the whole script when there are no rules)."""

    @field_validator("steps")
    @classmethod
    def _known_fields(cls, steps: list[ScriptStep]) -> list[ScriptStep]:
        _check_template_fields(steps, None)
        return steps

    @model_validator(mode="after")
    def _not_empty(self) -> Script:
        if not self.rules and not self.steps:
            raise ValueError("a script needs 'steps' or 'rules'")
        return self


def _json_field(text: str | None, path: str) -> str | None:
    if text is None:
        return None
    try:
        value: Any = json.loads(text)
    except (ValueError, RecursionError):
        return None
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) else json.dumps(value)


def _unmarked(results: dict[str, str], messages: list[Message]) -> dict[str, str]:
    """Tool results without the marks spotlighting put on them (``tether.guards.spotlight``),
    as the system prompt explains them: a model reads through the marks, and so do templates
    (``{result:TOOL:field}`` parses the result as JSON)."""
    system = "\n".join(m.content for m in messages if m.role == "system")
    if not any(sign in system for sign in _SPOTLIGHT_SIGNS):
        return results
    from tether.guards.spotlight import unmark  # loads the guards: only for marked requests

    return {name: unmark(text, system) for name, text in results.items()}


def _filled(
    step: ScriptStep,
    turn: int,
    user_text: str,
    groups: dict[str, str],
    group_names: set[str],
    since_user: list[Message],
    messages: list[Message],
) -> tuple[list[ToolCall], str]:
    """The step's tool calls and text with their ``{...}`` fields filled in: the input, the
    rule's named groups, the tool results since the user's message."""
    values = dict(groups, input=user_text)
    results: dict[str, str] = {}
    for m in since_user:
        if m.role == "tool" and m.name:
            results[m.name] = m.content
    if results:
        results = _unmarked(results, messages)

    def lookup(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        if key.startswith("result:"):
            _, tool_name, *path = key.split(":")
            if tool_name not in results:
                return f"(no result from {tool_name})"
            if not path:
                return results[tool_name]
            found = _json_field(results[tool_name], path[0])
            if found is None:
                return f"(no {path[0]} in the result of {tool_name})"
            # A field goes into a sentence: without the line end a program's output has
            # (``print``), as a model would quote it.
            return found.rstrip("\r\n")
        if key in group_names:  # the group did not take part in the match
            return ""
        return match.group(0)  # not reachable through a validated script

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _TEMPLATE_FIELD.sub(lookup, value) if "{" in value else value
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    calls = [
        ToolCall(id=f"call_{turn}_{i}", name=c.name, arguments=fill(c.arguments))
        for i, c in enumerate(step.tool_calls)
    ]
    content = fill(step.text) if step.text is not None else ""
    return calls, content


class ScriptedModel:
    """Deterministic model driven by a :class:`Script`."""

    def __init__(
        self,
        script: Script | list[ScriptStep] | list[dict[str, Any]],
        *,
        name: str = "scripted",
        latency_s: float = 0.0,
    ) -> None:
        if isinstance(script, list):
            script = Script(steps=[ScriptStep.model_validate(s) for s in script])
        self.script = script
        self._name = name
        self.latency_s = latency_s
        self._patterns = [compile_when(r.when) for r in script.rules]

    @classmethod
    def from_yaml(cls, path: str | Path, *, name: str = "scripted") -> ScriptedModel:
        """Load a script file; errors name the file, line and field."""
        refuse_pipe(path, "model script")
        return cls(load_model(Script, path), name=name)

    @property
    def provider(self) -> str:
        return "scripted"

    @property
    def name(self) -> str:
        return self._name

    async def _select(self, user_text: str) -> tuple[list[ScriptStep], dict[str, str], set[str]]:
        """The steps for this input, the named groups that matched, and all group names."""
        found = await search(self._patterns, user_text)
        if found is not None:
            i, match = found
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            return self.script.rules[i].steps, groups, set(self._patterns[i].groupindex)
        if self.script.steps:
            return self.script.steps, {}, set()
        raise ProviderError(
            f"scripted model: no rule matches the input {user_text[:80]!r} and the script "
            "has no default 'steps'",
            hint="add a catch-all rule (when: '.*') or top-level steps to the script",
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        response, _ = await self._reply(request)
        return response

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """The reply ``complete()`` gives, streamed: the prompt's usage first (as providers
        that count it up front report it), then the text a word at a time and each tool call
        in pieces, and ``StreamEnd`` with the same response ``complete()`` returns. A step's
        ``stream_cut_after`` breaks the stream off midway."""
        response, step = await self._reply(request)
        yield UsageUpdate(Usage(input_tokens=response.usage.input_tokens))
        pieces = 0
        for event in response_events(response, pieces=True):
            if step.stream_cut_after is not None and pieces >= step.stream_cut_after:
                raise ProviderError(
                    f"scripted model: stream cut after {pieces} piece(s) (stream_cut_after)",
                    retryable=True,
                )
            pieces += not isinstance(event, StreamEnd)
            yield event

    async def _reply(self, request: ModelRequest) -> tuple[ModelResponse, ScriptStep]:
        """The reply to ``request`` and the step it comes from."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        messages = request.messages
        last_user = len(messages) - 1
        while last_user >= 0 and messages[last_user].role != "user":
            last_user -= 1
        user_text = messages[last_user].content if last_user >= 0 else ""
        since_user = messages[last_user + 1 :]
        turn = 0
        for m in since_user:
            turn += m.role == "assistant"
        if self._patterns:
            steps, groups, group_names = await self._select(user_text)
        else:  # no rules: the steps (no worker thread to search with)
            steps, groups, group_names = self.script.steps, {}, set()
        step = steps[min(turn, len(steps) - 1)]
        if step.error is not None:
            raise ProviderError(f"scripted model error: {step.error}", retryable=True)

        text = step.text
        if step.tool_calls or (text is not None and "{" in text):
            calls, content = _filled(
                step, turn, user_text, groups, group_names, since_user, messages
            )
        else:  # a plain reply: nothing to fill in
            calls, content = [], text or ""
        prompt_chars = 0
        for m in messages:
            prompt_chars += len(m.content)
        out_chars = len(content)
        for c in calls:
            out_chars += len(_json_dumps(c.arguments))
        response = ModelResponse(
            content=content,
            tool_calls=calls,
            usage=Usage(
                input_tokens=prompt_chars // 4 + 1,
                output_tokens=out_chars // 4 + 1,
            ),
            model=self._name,
            finish_reason="tool_calls" if calls else "stop",
        )
        return response, step
