"""Load specs from YAML with errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tether.core import SpecError

M = TypeVar("M", bound=BaseModel)

MAX_SPEC_BYTES = 1_000_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: in a spec, the second ``name:`` silently
    winning is a bug waiting to happen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file into plain data plus its node tree (for line numbers)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise SpecError(f"{p}: file not found") from None
    except OSError as exc:
        raise SpecError(f"{p}: cannot read: {exc.strerror}") from None
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{p}: file is {size} bytes; specs are limited to {MAX_SPEC_BYTES}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission, ...
        raise SpecError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise SpecError(f"{where}: malformed YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: malformed YAML: {exc}") from None
    return data, node


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


def _data_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # The tool union adds its tag ("python"/"http") right after ``tools[i]`` in the location;
    # the YAML has no such key. Fields that really are named "http" (a parameter) stay.
    return tuple(
        p
        for i, p in enumerate(loc)
        if not (
            p in ("python", "http")
            and i >= 2
            and loc[i - 2] == "tools"
            and isinstance(loc[i - 1], int)
        )
    )


def validation_message(path: str | Path, exc: ValidationError, node: yaml.Node | None) -> str:
    """One line per error: ``file:line: field.path: message``."""
    lines = []
    for err in exc.errors():
        loc = _data_loc(tuple(err["loc"]))
        line = _line_of(node, loc)
        where = f"{path}:{line}" if line else str(path)
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {_field_path(loc)}: {message}")
    return "\n".join(lines)


def load_model(model: type[M], path: str | Path) -> M:
    """Read ``path`` and validate it as ``model``; raise ``SpecError`` naming file, line, field."""
    data, node = read_yaml(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError(f"{path}:1: expected a mapping of fields, found {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            f"invalid {model.__name__} in {path}:\n{validation_message(path, exc, node)}"
        ) from None
