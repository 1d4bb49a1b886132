"""A tool call's arguments judged by a guards policy value by value, and masked in place.

The arguments a model writes are JSON: masking their text as a whole could cut through a
quote or an escape and leave something no tool can parse. So each string (and integer) in
them is judged on its own, with its key as context (``card_number: 4111 1111 1111 1111``
reads as a card, ``password: hunter2!`` as a password), each key of an object on its own, and
a value a rule masks or hashes is replaced by its masked text: the arguments stay a JSON
object of the same shape, with strings where values were masked. Arguments that were not a
JSON object to begin with (``{"__raw__": "..."}``) are judged as one text. Values nested
deeper than ``MAX_DEPTH`` are judged as one text, and replaced by its masked form when
something is found there.

The values are first scanned together, one per line, in a few large texts (a call with a
hundred thousand values costs a few scans, not a hundred thousand); only the values a finding
touches are judged again on their own, which decides what is masked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tether.guards.policy import Channel
from tether.guards.stack import ACTION_RANK, GuardStack, GuardVerdict

MAX_DEPTH = 16
"""Deeper values are judged (and masked) as one text."""
MAX_PATH_CHARS = 200
BATCH_CHARS = 1 << 20
"""Values are scanned together in texts of about this many characters."""
_RAW_KEY = "__raw__"  # tether.providers.types.RAW_ARGUMENTS_KEY (providers load no guards)


@dataclass(frozen=True, slots=True)
class ArgumentFinding:
    """A finding in one value (or key) of the arguments; never the value itself."""

    path: str
    """Where: ``to``, ``customer.emails[1]`` (keys as masked), empty at the top."""
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


@dataclass(slots=True)
class _Leaf:
    """A text of the arguments to judge: a value (with its key's words) or a key."""

    text: str
    prefix: str
    path: str
    part: str
    original: Any
    masked: str | None = None


def check_arguments(
    stack: GuardStack, arguments: Mapping[str, Any], channel: Channel = "tool_args"
) -> ArgumentsVerdict:
    """The verdict of ``stack``'s rules on ``channel`` for ``arguments``, with the masked
    arguments (see the module docstring). Never raises for any JSON value; a guard that
    fails is in ``errors`` (and blocks, unless its rule says ``fail_open``)."""
    verdict = ArgumentsVerdict(arguments=arguments)
    leaves: list[_Leaf] = []
    if set(arguments) == {_RAW_KEY} and isinstance(arguments[_RAW_KEY], str):
        shape: Any = {_RAW_KEY: _add(leaves, _value_leaf(arguments[_RAW_KEY], "", None))}
    else:
        shape = _shape(arguments, "", None, 0, leaves)
    for leaf in _suspects(stack, channel, leaves):
        leaf.masked = _judged(stack, channel, leaf, verdict)
    masked_keys = {
        leaf.original: leaf.masked
        for leaf in leaves
        if leaf.part == "key" and leaf.masked is not None
    }
    # The evidence names arguments by their keys as stored: masked, and only then clipped (a
    # path clipped first could end in half a key, which the masking no longer recognizes).
    for i, f in enumerate(verdict.findings):
        path = f.path
        for original, masked in masked_keys.items():
            path = path.replace(str(original), masked)
        if path != f.path or len(path) > MAX_PATH_CHARS:
            verdict.findings[i] = replace(f, path=path[:MAX_PATH_CHARS])
    if any(leaf.masked is not None for leaf in leaves):
        verdict.changed = True
        verdict.arguments = _rebuilt(shape)
    return verdict


def _add(leaves: list[_Leaf], leaf: _Leaf) -> _Leaf:
    leaves.append(leaf)
    return leaf


def _value_leaf(value: Any, path: str, key: str | None) -> _Leaf:
    words = key.replace("_", " ").replace("-", " ").strip() if key else ""
    prefix = f"{words}: " if words else ""
    return _Leaf(str(value), prefix, path, "value", value)


def _shape(value: Any, path: str, key: str | None, depth: int, leaves: list[_Leaf]) -> Any:
    """``value`` with each text to judge replaced by its ``_Leaf`` (objects as lists of
    (key leaf, value) pairs, rebuilt by ``_rebuilt``)."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return _add(leaves, _value_leaf(value, path, key))
    if not isinstance(value, Mapping | list | tuple):
        return value  # true, false, null, numbers with a fraction: nothing to find
    if depth >= MAX_DEPTH:  # judged as one text, without recursion however deep it goes
        return _add(leaves, _Leaf(_flattened(value), "", path, "value", value))
    if isinstance(value, Mapping):
        return _Object(
            [
                (
                    _add(leaves, _Leaf(str(k), "", path, "key", str(k))),
                    _shape(v, _join(path, str(k)), str(k), depth + 1, leaves),
                )
                for k, v in value.items()
            ]
        )
    return [_shape(v, f"{path}[{i}]", key, depth + 1, leaves) for i, v in enumerate(value)]


class _Object(list[tuple[_Leaf, Any]]):
    """An object's (key, value) pairs while its texts are judged."""


def _flattened(value: Any) -> str:
    """Every key and text of a subtree, a line each, however deep (no recursion)."""
    lines: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for k, v in item.items():
                lines.append(str(k))
                stack.append(v)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
            lines.append(str(item))
    return "\n".join(lines)


def _batches(leaves: list[_Leaf]) -> Iterator[list[_Leaf]]:
    batch: list[_Leaf] = []
    size = 0
    for leaf in leaves:
        batch.append(leaf)
        size += len(leaf.prefix) + len(leaf.text) + 1
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _suspects(stack: GuardStack, channel: Channel, leaves: list[_Leaf]) -> list[_Leaf]:
    """The leaves a finding touches when they are scanned together (a line each); all of a
    batch's when a guard scores the batch as a whole (no findings to place) or fails."""
    suspects: list[_Leaf] = []
    for batch in _batches(leaves):
        if len(batch) == 1:
            suspects.extend(batch)
            continue
        starts: list[int] = []
        at = 0
        for leaf in batch:
            starts.append(at)
            at += len(leaf.prefix) + len(leaf.text) + 1
        scanned = stack.check("\n".join(leaf.prefix + leaf.text for leaf in batch), channel)
        if scanned.action == "allow" and not scanned.errors:
            continue
        if scanned.errors or not scanned.findings:
            suspects.extend(batch)
            continue
        hit: set[int] = set()
        for f in scanned.findings:
            i = _index_at(starts, f.start)
            while i < len(batch) and starts[i] < f.end:
                hit.add(i)
                i += 1
        suspects.extend(batch[i] for i in sorted(hit))
    return suspects


def _index_at(starts: list[int], offset: int) -> int:
    """The index of the last start at or before ``offset`` (binary search)."""
    low, high = 0, len(starts) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if starts[middle] <= offset:
            low = middle
        else:
            high = middle - 1
    return low


def _judged(
    stack: GuardStack, channel: Channel, leaf: _Leaf, verdict: ArgumentsVerdict
) -> str | None:
    """The leaf's masked text judged on its own (with its key's words in front of a value),
    or ``None`` when nothing in it is masked."""
    prefix, text = leaf.prefix, leaf.text
    judged = stack.check(prefix + text, channel)
    verdict.take(judged, leaf.path, leaf.part, len(prefix))
    masked = judged.redacted
    if masked is None:
        return None
    if masked.startswith(prefix):
        masked = masked[len(prefix) :]
    else:  # a finding reached into the key's words: the value as masked alone, or whole
        alone = stack.check(text, channel)
        kinds = [f.kind for f in judged.findings if f.end > len(prefix)]
        masked = alone.redacted or (f"<{kinds[0]}>" if kinds else text)
    return None if masked == text else masked


def _rebuilt(shape: Any) -> Any:
    if isinstance(shape, _Leaf):
        return shape.original if shape.masked is None else shape.masked
    if isinstance(shape, _Object):
        out: dict[str, Any] = {}
        for key_leaf, value in shape:
            name = key_leaf.original if key_leaf.masked is None else key_leaf.masked
            while name in out:  # two keys masked alike stay two keys
                name += "#"
            out[name] = _rebuilt(value)
        return out
    if isinstance(shape, list):
        return [_rebuilt(v) for v in shape]
    if isinstance(shape, dict):  # the raw arguments' {"__raw__": leaf}
        return {k: _rebuilt(v) for k, v in shape.items()}
    return shape


def _join(path: str, name: str) -> str:
    """``path.name``, whole (clipped once masked: see ``check_arguments``); a name longer than
    ``MAX_PATH_CHARS`` is not spelled out (the path stays bounded: at most ``MAX_DEPTH``
    names)."""
    if len(name) > MAX_PATH_CHARS:
        name = f"[a key of {len(name):,} characters]"
    return f"{path}.{name}" if path else name
