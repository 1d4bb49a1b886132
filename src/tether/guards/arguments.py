"""A tool call's arguments judged by a guards policy value by value, and masked in place.

The arguments a model writes are JSON: masking their text as a whole could cut through a
quote or an escape and leave something no tool can parse. So each string (and integer) in
them is judged on its own, with its key as context (``card_number: 4111 1111 1111 1111``
reads as a card, ``password: hunter2!`` as a password), each key of an object on its own, and
a value a rule masks or hashes is replaced by its masked text: the arguments stay a JSON
object of the same shape, with strings where values were masked. Arguments that were not a
JSON object to begin with (``{"__raw__": "..."}``) are judged as one text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.guards.policy import Channel
from tether.guards.stack import ACTION_RANK, GuardStack, GuardVerdict

MAX_DEPTH = 16
"""Deeper values are judged (and masked) as the JSON text of the whole subtree."""
MAX_PATH_CHARS = 200
_RAW_KEY = "__raw__"  # tether.providers.types.RAW_ARGUMENTS_KEY (providers load no guards)


@dataclass(frozen=True, slots=True)
class ArgumentFinding:
    """A finding in one value (or key) of the arguments; never the value itself."""

    path: str
    """Where: ``to``, ``customer.emails[1]`` (keys as masked), empty for the whole text."""
    part: str
    """``value`` or ``key``."""
    guard: str
    kind: str
    start: int
    """Offsets in the value's own text."""
    end: int
    score: float


@dataclass
class ArgumentsVerdict:
    """What a policy's rules of one channel say about a tool call's arguments."""

    arguments: Mapping[str, Any]
    """The arguments with what mask and hash rules found replaced (the same object when
    nothing was)."""
    action: str = "allow"
    """The strongest action taken: allow, log, hash, mask, escalate or block."""
    score: float = 0.0
    categories: dict[str, None] = field(default_factory=dict)
    findings: list[ArgumentFinding] = field(default_factory=list)
    errors: dict[str, None] = field(default_factory=dict)
    changed: bool = False
    """Some value or key was masked or hashed."""

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def escalated(self) -> bool:
        return self.action == "escalate"

    def take(self, verdict: GuardVerdict, path: str, part: str, offset: int) -> None:
        if ACTION_RANK[verdict.action] > ACTION_RANK[self.action]:
            self.action = verdict.action
        self.score = max(self.score, verdict.score)
        self.categories.update(dict.fromkeys(verdict.categories))
        self.errors.update(dict.fromkeys(verdict.errors))
        for f in verdict.findings:
            if f.end <= offset:  # in the key's words, which are judged as a key
                continue
            start, end = max(f.start - offset, 0), f.end - offset
            self.findings.append(ArgumentFinding(path, part, f.guard, f.kind, start, end, f.score))


def check_arguments(
    stack: GuardStack, arguments: Mapping[str, Any], channel: Channel = "tool_args"
) -> ArgumentsVerdict:
    """The verdict of ``stack``'s rules on ``channel`` for ``arguments``, with the masked
    arguments (see the module docstring). Never raises for any JSON value; a guard that
    fails is in ``errors`` (and blocks, unless its rule says ``fail_open``)."""
    verdict = ArgumentsVerdict(arguments=arguments)
    walker = _Walker(stack, channel, verdict)
    if set(arguments) == {_RAW_KEY} and isinstance(arguments[_RAW_KEY], str):
        masked: Any = {_RAW_KEY: walker.text(arguments[_RAW_KEY], "", None)}
    else:
        masked = walker.value(dict(arguments), "", None, 0)
    if verdict.changed:
        verdict.arguments = masked
    return verdict


class _Walker:
    __slots__ = ("channel", "stack", "verdict")

    def __init__(self, stack: GuardStack, channel: Channel, verdict: ArgumentsVerdict) -> None:
        self.stack, self.channel, self.verdict = stack, channel, verdict

    def value(self, value: Any, path: str, key: str | None, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value, path, key)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            masked = self.text(str(value), path, key)
            return value if masked == str(value) else masked
        if depth >= MAX_DEPTH:  # judged, and masked, as one text
            text = json.dumps(value, ensure_ascii=False)
            masked = self.text(text, path, key)
            return value if masked == text else masked
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                name = self.key(str(k), path)
                while name in out:  # two keys masked alike stay two keys
                    name += "#"
                out[name] = self.value(v, _join(path, name), str(k), depth + 1)
            return out
        if isinstance(value, list | tuple):
            return [
                self.value(v, f"{path}[{i}]"[:MAX_PATH_CHARS], key, depth + 1)
                for i, v in enumerate(value)
            ]
        return value  # not JSON: left as it is

    def key(self, key: str, path: str) -> str:
        verdict = self.stack.check(key, self.channel)
        self.verdict.take(verdict, path, "key", 0)
        if verdict.redacted is None or verdict.redacted == key:
            return key
        self.verdict.changed = True
        return verdict.redacted

    def text(self, text: str, path: str, key: str | None) -> str:
        """``text`` masked as the rules say, judged with its key's words in front of it."""
        masked = self._masked(text, path, key)
        if masked != text:
            self.verdict.changed = True
        return masked

    def _masked(self, text: str, path: str, key: str | None) -> str:
        prefix = f"{key.replace('_', ' ').replace('-', ' ').strip()}: " if key else ""
        if prefix == ": ":
            prefix = ""
        verdict = self.stack.check(prefix + text, self.channel)
        self.verdict.take(verdict, path, "value", len(prefix))
        masked = verdict.redacted
        if masked is None:
            return text
        if masked.startswith(prefix):
            return masked[len(prefix) :]
        # A finding reached into the key's words: the value is masked as judged alone, or
        # whole when only the two together made the finding.
        alone = self.stack.check(text, self.channel)
        if alone.redacted is not None:
            return alone.redacted
        kinds = [f.kind for f in verdict.findings if f.end > len(prefix)]
        return f"<{kinds[0]}>" if kinds else text


def _join(path: str, name: str) -> str:
    return (f"{path}.{name}" if path else name)[:MAX_PATH_CHARS]
