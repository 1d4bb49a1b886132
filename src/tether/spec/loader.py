"""Load specs from YAML with errors that name the file, the line and the field."""

from __future__ import annotations

import os
import stat
import weakref
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tether.core import SpecError
from tether.spec.guards import DETECTOR_TAG, GUARD_RULES, UNKNOWN_GUARD
from tether.spec.model import TOOL_KINDS, UNKNOWN_TOOL_KIND

M = TypeVar("M", bound=BaseModel)

MAX_SPEC_BYTES = 1_000_000


MAX_NESTING = 100
"""Deepest nesting of mappings and lists a spec may have (PyYAML composes recursively)."""


class _NotSupported(yaml.MarkedYAMLError):
    """YAML that parses but that specs refuse (anchors, aliases, absurd nesting)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what has no place in a spec.

    Duplicate keys: the second ``name:`` silently winning is a bug waiting to happen.
    Anchors and aliases: a few hundred bytes of nested aliases ("billion laughs") expand to
    gigabytes; specs are short enough to spell everything out.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _NotSupported(
                problem="YAML anchors (&name) and aliases (*name) are not supported in specs; "
                "write the value out where it is used",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise _NotSupported(
                    problem=f"nested deeper than {MAX_NESTING} levels",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # int() refuses a decimal of more than 4,300 digits (a ValueError, not a YAML error):
        # said like any other bad value, at its line, instead of as an unexpected error.
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"the integer {node.value[:20]}... is too long", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):  # `? [a, b]`: no field is named by a list
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found a key that is a {'list' if isinstance(key, list) else 'mapping'}",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _parse(text: str) -> tuple[Any, yaml.Node | None]:
    """Data and node tree from one pass of the parser (what ``yaml.load`` does, keeping the
    tree for line numbers)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return data, node
    finally:
        loader.dispose()


def file_not_found(path: Path, what: str = "file") -> SpecError:
    """The error for a file that is not there, with the absolute path looked for: a path a
    spec names is taken from the spec's folder, the spec's own from the current one, and the
    message shows it joined already (``specs/../policies/x.yaml``)."""
    return SpecError(f"{path}: {what} not found", hint=f"no file at {path.resolve()}")


def refuse_pipe(path: str | Path, what: str) -> None:
    """``SpecError`` when ``path``, a file a spec names, is a named pipe or a socket: opening
    one that nobody writes to waits for ever (``tether validate`` hung on a policy file made
    with ``mkfifo``). The spec given on the command line may be a pipe (``<(...)``); the files
    it names are files. Nothing is said of a path that cannot be looked at: reading it says."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        kind = "named pipe" if stat.S_ISFIFO(mode) else "socket"
        raise SpecError(f"{path}: the {what} is a {kind}, not a file")


def read_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file into plain data plus its node tree (for line numbers)."""
    p = Path(path)
    try:
        # Read at most one byte past the limit: a file's stated size says nothing for a
        # device (/dev/zero), a pipe or a file that grows while it is read.
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise file_not_found(p) from None
    except OSError as exc:  # a directory, no permission, ...
        raise SpecError(f"{p}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{p}: file is over the limit: specs are limited to {MAX_SPEC_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        kind = "" if isinstance(exc, _NotSupported) else "malformed YAML: "
        raise SpecError(f"{where}: {kind}{what}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: malformed YAML: {exc}") from None


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest node along ``loc`` that exists in the YAML tree."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    child = v
                    line = k.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_UNION_TAGS = {"tools": frozenset(TOOL_KINDS), "rules": frozenset([*GUARD_RULES, DETECTOR_TAG])}
_UNION_TAGS["guards"] = _UNION_TAGS["rules"]  # a policy file's list


def _data_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # A tagged union (tools by ``kind``, guard rules by ``guard``) adds its tag right after
    # ``tools[i]`` (``rules[i]``) in the location; the YAML has no such key. Fields that really
    # are named like a tag (an HTTP tool's parameter "http") stay.
    return tuple(
        p
        for i, p in enumerate(loc)
        if not (
            i >= 2 and isinstance(loc[i - 1], int) and p in _UNION_TAGS.get(str(loc[i - 2]), ())
        )
    )


def validation_message(path: str | Path, exc: ValidationError, node: yaml.Node | None) -> str:
    """One line per error, in file order: ``file:line: field.path: message``."""
    return "\n".join(_problem_line(p) for p in validation_problems(path, exc, node))


def _problem_line(problem: dict[str, Any]) -> str:
    where = f"{problem['file']}:{problem['line']}" if problem["line"] else str(problem["file"])
    return f"{where}: {problem['field']}: {problem['message']}"


def validation_problems(
    path: str | Path, exc: ValidationError, node: yaml.Node | None
) -> list[dict[str, Any]]:
    """The errors of ``exc`` as ``file``, ``line``, ``field``, ``message``, in file order."""
    problems = []
    for err in exc.errors():
        loc = _data_loc(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == UNKNOWN_TOOL_KIND and isinstance(err["input"], dict):
            # Point at the ``kind:`` line and say what it held.
            loc = (*loc, "kind")
            kind = err["input"].get("kind")
            message = message.replace("unknown tool kind", f"unknown tool kind {kind!r}", 1)
        elif err["type"] == UNKNOWN_GUARD:
            known = ", ".join(GUARD_RULES)
            guard = err["input"].get("guard") if isinstance(err["input"], dict) else None
            if not isinstance(err["input"], dict):
                message = f"a rule is a mapping starting with 'guard: NAME' ({known})"
            elif guard is None:
                message = f"the rule names no guard: add 'guard: NAME' ({known})"
            else:
                loc = (*loc, "guard")
                message = f"unknown guard {guard!r}; known guards: {known}"
        problems.append(
            {
                "file": str(path),
                "line": _line_of(node, loc),
                "field": _field_path(loc),
                "message": message,
            }
        )
    # Stable: errors on one line keep pydantic's order; errors without a line go last.
    problems.sort(key=lambda p: p["line"] if p["line"] is not None else 1 << 30)
    return problems


def load_with_tree(model: type[M], path: str | Path) -> tuple[M, yaml.Node | None]:
    data, node = read_yaml(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError(f"{path}:1: expected a mapping of fields, found {kind}")
    try:
        return model.model_validate(data), node
    except ValidationError as exc:
        problems = validation_problems(path, exc, node)
        lines = "\n".join(_problem_line(p) for p in problems)
        raise SpecError(
            f"invalid {model.__name__} in {path}:\n{lines}", problems=problems
        ) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read ``path`` and validate it as ``model``; raise ``SpecError`` naming file, line, field."""
    return load_with_tree(model, path)[0]


# Where loaded models came from, for errors found after loading (a tool's function that cannot
# be imported). Kept beside the models rather than in them: a private attribute would make two
# equal specs from different files compare unequal. Keyed by id(), cleared when a model dies.
_ORIGINS: dict[int, tuple[weakref.ref[BaseModel], Path, yaml.Node, tuple[int | str, ...]]] = {}


def remember_origin(
    obj: BaseModel, path: str | Path, node: yaml.Node | None, loc: tuple[int | str, ...] = ()
) -> None:
    """Record that ``obj`` was loaded from the file ``path``, at ``loc`` of its tree ``node``."""
    if node is None:
        return
    key = id(obj)

    def forget(ref: weakref.ref[BaseModel]) -> None:
        if _ORIGINS.get(key, (None,))[0] is ref:
            del _ORIGINS[key]

    _ORIGINS[key] = (weakref.ref(obj, forget), Path(path), node, loc)


def origin_of(obj: BaseModel, *loc: int | str) -> tuple[Path, int] | None:
    """File and 1-based line of ``obj`` (or of its field ``loc``) if it was loaded from YAML."""
    found = _ORIGINS.get(id(obj))
    if found is None or found[0]() is not obj:
        return None
    _, path, node, prefix = found
    line = _line_of(node, (*prefix, *loc))
    return (path, line) if line is not None else None


def copy_origin(source: BaseModel, target: BaseModel) -> None:
    """``target`` (made from ``source``: a section merged with a policy file) was loaded from
    where ``source`` was."""
    found = _ORIGINS.get(id(source))
    if found is not None and found[0]() is source:
        remember_origin(target, found[1], found[2], found[3])
