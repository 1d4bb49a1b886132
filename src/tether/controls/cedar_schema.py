"""The Cedar schema of an agent's tools, and tool arguments as Cedar values.

Entity types and actions (namespace ``Tether``):

- principal ``Tether::Agent::"<agent name>"``, member of ``Tether::Project::"<project>"`` and
  of ``Tether::Role::"<role>"`` for each role of the caller; attributes ``version``,
  ``project``, ``roles``, ``scopes`` (the caller's), and optional ``end_user`` and ``key_id``;
- one action per tool, ``Tether::Action::"<tool name>"``, all in the group
  ``Tether::Action::"call"``;
- resource ``Tether::Tool::"<tool name>"`` with ``side_effects`` and ``scopes``;
- context: ``args`` (the call's arguments, typed per tool), ``risk`` (``score``,
  ``categories``), ``classification``, ``budget``, ``time`` and ``entry_point``.

Arguments are typed from each tool's JSON schema: ``string`` → ``String``, ``integer`` →
``Long``, ``boolean`` → ``Bool``, ``number`` → ``decimal`` (Cedar has no floats: 4 decimal
places), arrays → ``Set``, objects with declared properties → records, at most
``MAX_DEPTH`` levels deep. An argument with no such form (a mapping with free keys, a union,
anything deeper) is left out of the schema and of the request, so a policy that reads it fails
validation when the agent loads; ``untyped`` says which and why.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeAlias

NAMESPACE = "Tether"
CALL_GROUP = "call"
"""The action group every tool's action belongs to: ``action in Tether::Action::"call"``."""
MAX_DEPTH = 4
"""Deepest nesting of records and sets an argument's type may have (the args record is 1)."""
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
DECIMAL_LIMIT = Decimal("922337203685477.5807")
"""Largest magnitude of a Cedar ``decimal``."""
_DECIMAL_WHOLE = int(DECIMAL_LIMIT)
"""Largest whole number a Cedar ``decimal`` holds."""


@dataclass(frozen=True)
class Prim:
    """``String``, ``Long``, ``Boolean`` or the ``decimal`` extension type."""

    name: str


@dataclass(frozen=True)
class SetOf:
    element: CedarType


@dataclass(frozen=True)
class Rec:
    attributes: dict[str, Attr]


@dataclass(frozen=True)
class Attr:
    type: CedarType
    required: bool
    default: Any = None
    """The value the tool uses when the argument is not given (``None``: none)."""


CedarType: TypeAlias = Prim | SetOf | Rec

STRING, LONG, BOOL, DECIMAL, DATETIME = (
    Prim("String"),
    Prim("Long"),
    Prim("Boolean"),
    Prim("decimal"),
    Prim("datetime"),
)
_PRIMS = {"string": STRING, "integer": LONG, "boolean": BOOL, "number": DECIMAL}


_ESCAPES = {"__extn", "__entity", "__expr"}
"""Keys that make a JSON object a special value in Cedar's JSON format, not a record."""


def _check_name(name: str) -> None:
    if name in _ESCAPES:
        raise Untyped(f"a field named {name}, which Cedar's JSON format reserves")


class Untyped(Exception):
    """A JSON schema with no Cedar form; the message says why."""


class Refused(Exception):
    """A value that does not fit its Cedar type; the message says which and why."""


@dataclass
class ToolArgs:
    """The Cedar record type of one tool's arguments."""

    record: Rec
    untyped: dict[str, str] = field(default_factory=dict)
    """Arguments left out (no Cedar form): name → why."""


def tool_args(parameters: dict[str, Any]) -> ToolArgs:
    """The Cedar type of a tool's arguments from its JSON schema."""
    defs = parameters.get("$defs", {}) if isinstance(parameters, dict) else {}
    props = parameters.get("properties", {}) if isinstance(parameters, dict) else {}
    required = set(parameters.get("required", [])) if isinstance(parameters, dict) else set()
    attrs: dict[str, Attr] = {}
    untyped: dict[str, str] = {}
    for name, schema in props.items():
        try:
            _check_name(name)
            attrs[name] = _attr(schema, name in required, defs, 2)
        except Untyped as exc:
            untyped[name] = str(exc)
    return ToolArgs(Rec(attrs), untyped)


def _attr(schema: Any, required: bool, defs: dict[str, Any], depth: int) -> Attr:
    kind, nullable = _type_of(schema, defs, depth)
    default = schema.get("default") if isinstance(schema, dict) else None
    if default is not None:
        try:
            default = to_cedar(default, kind, "default")
        except Refused:
            default = None
    # An argument the tool always has (given, or its default) needs no `has` check.
    return Attr(kind, (required and not nullable) or default is not None, default)


def _type_of(schema: Any, defs: dict[str, Any], depth: int) -> tuple[CedarType, bool]:
    """The Cedar type of a JSON schema, and whether it also allows null."""
    if depth > MAX_DEPTH:
        raise Untyped(f"nested more than {MAX_DEPTH} levels deep")
    if not isinstance(schema, dict):
        raise Untyped("no type")
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rpartition("/")[2]) if ref.startswith("#/$defs/") else None
        if target is None:
            raise Untyped(f"an unresolvable reference {ref}")
        return _type_of(target, defs, depth)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(real) != 1:
            raise Untyped("a union of several types")
        return _type_of(real[0], defs, depth)[0], len(real) < len(options)
    kind = schema.get("type")
    if isinstance(kind, list):
        real_kinds = [k for k in kind if k != "null"]
        if len(real_kinds) != 1:
            raise Untyped("a union of several types")
        return _type_of({**schema, "type": real_kinds[0]}, defs, depth)[0], len(real_kinds) < len(
            kind
        )
    if kind is None and "enum" in schema:
        values = schema["enum"]
        if values and all(isinstance(v, str) for v in values):
            return STRING, False
        raise Untyped("an enumeration that is not all strings")
    if kind in _PRIMS:
        return _PRIMS[kind], False
    if kind == "array":
        element, _ = _type_of(schema.get("items"), defs, depth + 1)
        return SetOf(element), False
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise Untyped("a mapping with free keys")
        required = set(schema.get("required", []))
        for name in props:
            _check_name(name)
        attrs = {n: _attr(s, n in required, defs, depth + 1) for n, s in props.items()}
        return Rec(attrs), False
    raise Untyped("no type" if kind is None else f"JSON type {kind!r}")


def to_json_type(kind: CedarType) -> dict[str, Any]:
    """``kind`` in Cedar's JSON schema format."""
    if isinstance(kind, Prim):
        if kind.name in ("decimal", "datetime"):
            return {"type": "Extension", "name": kind.name}
        return {"type": kind.name}
    if isinstance(kind, SetOf):
        return {"type": "Set", "element": to_json_type(kind.element)}
    return {
        "type": "Record",
        "attributes": {
            name: {**to_json_type(a.type), "required": a.required}
            for name, a in kind.attributes.items()
        },
    }


def describe(kind: CedarType) -> str:
    """``kind`` as a person reads it: ``a whole number``, ``a set of strings``."""
    if isinstance(kind, Prim):
        return {
            "String": "a string",
            "Long": "a whole number",
            "Boolean": "true or false",
            "decimal": "a number",
            "datetime": "a date and time",
        }[kind.name]
    if isinstance(kind, SetOf):
        return f"a list of {describe(kind.element).removeprefix('a ')}s"
    return "an object"


# -- values -------------------------------------------------------------------------------------


def decimal_value(value: Decimal) -> dict[str, Any]:
    """A Cedar ``decimal`` in Cedar's JSON form."""
    return {"__extn": {"fn": "decimal", "arg": f"{value:.4f}"}}


def exact_decimal(number: float | int | Decimal, where: str) -> dict[str, Any]:
    """``number`` as a Cedar decimal, only if that is exact: a policy comparing an amount must
    not see it rounded across its threshold."""
    if isinstance(number, float):
        if -1e15 < number < 1e15:  # finite
            # The usual case without Decimal: repr is the shortest text that reads back as
            # this float, so at most 4 digits after its point means at most 4 places.
            text = repr(number)
            whole, _, places = text.partition(".")
            if "e" not in text and len(places) <= 4:
                return {"__extn": {"fn": "decimal", "arg": f"{whole}.{places:0<4}"}}
        elif not math.isfinite(number):
            raise Refused(f"{where} is {number}, which no Cedar decimal holds")
    elif type(number) is int and -_DECIMAL_WHOLE <= number <= _DECIMAL_WHOLE:
        return {"__extn": {"fn": "decimal", "arg": f"{number}.0000"}}
    exact = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    if abs(exact) > DECIMAL_LIMIT:
        raise Refused(f"{where} = {number} is beyond the range of a Cedar decimal")
    if exact != exact.quantize(Decimal("0.0001")):
        raise Refused(
            f"{where} = {number} has more than 4 decimal places, which a Cedar decimal "
            "cannot hold exactly"
        )
    return decimal_value(exact)


def scaled_long(number: float, scale: int, *, up: bool | None) -> int:
    """``number`` times ``scale`` as a whole number, rounded up, down (budgets: spent up, left down,
    so that a policy errs on the careful side) or to the nearest (``up=None``), clamped to the
    ``Long`` range (NaN is taken as the careful infinity)."""
    if math.isnan(number):
        number = math.inf if up is not False else -math.inf
    scaled = round(number * scale, 6)  # 0.7 * 10_000 is 7000.000000000001
    if math.isinf(scaled):  # infinite, or past a float once scaled (1e305 dollars in micros)
        return LONG_MAX if scaled > 0 else -LONG_MAX
    steps = round(scaled) if up is None else math.ceil(scaled) if up else math.floor(scaled)
    return clamped_long(steps)


def clamped_long(number: int) -> int:
    """``number`` clamped to the ``Long`` range (symmetric: ``-LONG_MAX`` at the bottom)."""
    return max(-LONG_MAX, min(LONG_MAX, number))


@functools.lru_cache(maxsize=1024)
def rounded_decimal(number: float, *, up: bool | None) -> dict[str, Any]:
    """``number`` to 4 places, rounded as ``scaled_long`` rounds, clamped to the decimal
    range."""
    steps = scaled_long(number, 10_000, up=up)
    sign = "-" if steps < 0 else ""
    whole, frac = divmod(abs(steps), 10_000)
    return {"__extn": {"fn": "decimal", "arg": f"{sign}{whole}.{frac:04d}"}}


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_TRUE, _FALSE = {"true", "1", "yes", "on", "t", "y"}, {"false", "0", "no", "off", "f", "n"}


def _from_text(value: str, kind: Prim) -> Any:
    """A number or truth value a model sent as text, read as the tool's own validation reads it
    (pydantic's lax mode: ``"7"`` is 7); only the plain forms, so the policy never sees a value
    other than the one the tool gets (other forms are refused)."""
    text = value.strip()
    if kind is LONG and _INTEGER_TEXT.fullmatch(text):
        return int(text)
    if kind is DECIMAL and _NUMBER_TEXT.fullmatch(text):
        return Decimal(text)
    if kind is BOOL and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    return value


def to_cedar(value: Any, kind: CedarType, where: str) -> Any:
    """``value`` (parsed JSON) as Cedar JSON of type ``kind``; ``Refused`` naming ``where``
    when it does not fit."""
    if isinstance(kind, Prim) and kind is not STRING and isinstance(value, str):
        value = _from_text(value, kind)
    if isinstance(kind, Prim):
        if kind is STRING and isinstance(value, str):
            return value
        if kind is BOOL and isinstance(value, bool):
            return value
        if kind is LONG and isinstance(value, int) and not isinstance(value, bool):
            if not LONG_MIN <= value <= LONG_MAX:
                raise Refused(f"{where} = {value} is beyond the range of a Cedar Long")
            return value
        numeric = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        if kind is DECIMAL and numeric:
            return exact_decimal(value, where)
    elif isinstance(kind, SetOf):
        if isinstance(value, list):
            return [to_cedar(v, kind.element, f"{where}[{i}]") for i, v in enumerate(value)]
    elif isinstance(value, dict):
        return record(value, kind, where)
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise Refused(f"{where} is {shown}, not {describe(kind)}")


def record(
    values: dict[str, Any], kind: Rec, where: str, *, keep: Collection[str] | None = None
) -> dict[str, Any]:
    """A record of ``kind`` from ``values``: attributes not in ``kind`` (or, given ``keep``,
    not in it) are left out, a null is an argument not given, a missing one takes its default;
    a required one missing is ``Refused``."""
    out: dict[str, Any] = {}
    for name, attr in kind.attributes.items():
        if keep is not None and name not in keep:
            continue
        value = values.get(name)
        inner = f"{where}.{name}" if where else name
        if value is None:
            if attr.default is not None:
                out[name] = attr.default
            elif attr.required:
                raise Refused(f"{inner} is missing")
            continue
        out[name] = to_cedar(value, attr.type, inner)
    return out


def record_builder(
    kind: Rec, *, keep: Collection[str] | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``record(values, kind, "", keep=keep)`` with its plan made once (for a tool's arguments,
    on every call): the attributes kept, their names for messages and a converter for each.
    The same records and the same refusals."""
    steps = [
        (name, attr.default, attr.required, _converter(attr.type, name))
        for name, attr in kind.attributes.items()
        if keep is None or name in keep
    ]

    def build(values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, default, required, convert in steps:
            value = values.get(name)
            if value is None:
                if default is not None:
                    out[name] = default
                elif required:
                    raise Refused(f"{name} is missing")
                continue
            out[name] = convert(value)
        return out

    return build


def _converter(kind: CedarType, where: str) -> Callable[[Any], Any]:
    """``to_cedar(value, kind, where)``, the common value of a primitive type taken first (it
    converts the same: a ``str`` for a String, an ``int`` in range for a Long, a ``bool`` for
    a Boolean, a ``float`` or ``int`` for a decimal); anything else goes through ``to_cedar``."""
    if kind is STRING:
        return lambda value: value if type(value) is str else to_cedar(value, kind, where)
    if kind is BOOL:
        return lambda value: value if type(value) is bool else to_cedar(value, kind, where)
    if kind is LONG:
        return lambda value: (
            value
            if type(value) is int and LONG_MIN <= value <= LONG_MAX
            else to_cedar(value, kind, where)
        )
    if kind is DECIMAL:
        return lambda value: (
            exact_decimal(value, where)
            if type(value) is float or type(value) is int
            else to_cedar(value, kind, where)
        )
    return lambda value: to_cedar(value, kind, where)


# -- the schema as people read it ----------------------------------------------------------------

_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_KEYWORDS = {"true", "false", "if", "then", "else", "in", "is", "like", "has", "permit", "forbid"}


def cedar_string(text: str) -> str:
    """``text`` as a Cedar string literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return '"' + "".join(out) + '"'


def _name(name: str) -> str:
    return name if _IDENT.fullmatch(name) and name not in _KEYWORDS else cedar_string(name)


def _render_type(kind: dict[str, Any], indent: str) -> str:
    t = kind["type"]
    if t == "Extension":
        return str(kind["name"])
    if t == "Boolean":
        return "Bool"
    if t == "Set":
        return f"Set<{_render_type(kind['element'], indent)}>"
    if t == "Record":
        attrs = kind["attributes"]
        if not attrs:
            return "{}"
        inner = indent + "  "
        lines = [
            f"{inner}{_name(n)}{'' if a.get('required', True) else '?'}: {_render_type(a, inner)}"
            for n, a in sorted(attrs.items())
        ]
        return "{\n" + ",\n".join(lines) + f"\n{indent}}}"
    return str(t)


def render_schema(schema: dict[str, Any]) -> str:
    """A schema in Cedar's JSON format (as ``schema_json`` builds it) in Cedar schema syntax."""
    out: list[str] = []
    for namespace, body in schema.items():
        out.append(f"namespace {namespace} {{")
        for name, entity in body["entityTypes"].items():
            parents = entity.get("memberOfTypes")
            head = f"  entity {name}" + (f" in [{', '.join(parents)}]" if parents else "")
            shape = entity.get("shape")
            out.append(f"{head} {_render_type(shape, '  ')};" if shape else f"{head};")
        for name, action in body["actions"].items():
            groups = [cedar_string(g["id"]) for g in action.get("memberOf", [])]
            head = f"  action {cedar_string(name)}" + (
                f" in [{', '.join(groups)}]" if groups else ""
            )
            applies = action.get("appliesTo")
            if not applies:
                out.append(f"{head};")
                continue
            context = _render_type(applies["context"], "    ")
            out.append(
                f"{head} appliesTo {{\n"
                f"    principal: [{', '.join(applies['principalTypes'])}],\n"
                f"    resource: [{', '.join(applies['resourceTypes'])}],\n"
                f"    context: {context}\n  }};"
            )
        out.append("}")
    return "\n".join(out) + "\n"
