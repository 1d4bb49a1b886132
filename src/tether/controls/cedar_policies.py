"""Cedar policy files: read, parsed and validated once, with errors at ``file:line``.

cedarpy reports a parse error without a position and a validation error with only the id it
gave the policy (``policy3``). Each file is split into its statements here (a statement ends
at a ``;`` outside strings and comments), which gives every policy id its file and line; the
line of a parse error is the first line at which the statement's text, cut there, fails the
same way, and the line of a validation error is the first line of the policy that names what
the error names (an attribute, an action, a type).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.core import SpecError
from tether.spec.loader import file_not_found, refuse_pipe

if TYPE_CHECKING:
    import cedarpy

MAX_POLICY_BYTES = 1_000_000
ESCALATE = "escalate"
"""The annotation that makes a permit ask a person first: ``@escalate("why")``."""
MAX_ERRORS_SHOWN = 20
MAX_BRACKET_DEPTH = 32
MAX_OPERATORS = 600
"""Per policy. Cedar's parser recurses: a few hundred nested brackets or a couple of thousand
chained operators overflow its stack and kill the process (a segmentation fault, not an
error), so policies past these bounds are refused before Cedar sees them. cedarpy itself
refuses expressions nested more than 100 levels."""
_OPERATOR = re.compile(r"&&|\|\||[=!<>]=|[<>+*!.-]|\b(?:if|in|has|like|is)\b")


@dataclass(frozen=True)
class Statement:
    """One policy as written: where it is, and its text."""

    file: Path
    line: int
    """1-based line where the statement starts (its first annotation)."""
    text: str
    code: str = ""
    """The text without comments and string contents (what the nesting bounds look at)."""

    def too_complex(self) -> str | None:
        """Why Cedar must not see this statement, or ``None``."""
        depth = deepest = 0
        for ch in self.code:
            if ch in "([{":
                depth += 1
                deepest = max(deepest, depth)
            elif ch in ")]}":
                depth -= 1
        if deepest > MAX_BRACKET_DEPTH:
            return f"brackets nested {deepest} deep (at most {MAX_BRACKET_DEPTH})"
        operators = len(_OPERATOR.findall(self.code))
        if operators > MAX_OPERATORS:
            return f"{operators} operators in one policy (at most {MAX_OPERATORS}): split it"
        return None


@dataclass(frozen=True)
class PolicyInfo:
    """What a decision needs to know about one policy."""

    id: str
    """Cedar's id (``policy0``, ... in the order of the files and statements)."""
    name: str
    """Its ``@id`` annotation, else Cedar's id."""
    where: str
    """``file:line`` of the statement."""
    effect: str
    """``permit`` or ``forbid``."""
    escalate: str | None
    """The ``@escalate`` annotation's text (``""`` when bare), ``None`` when it has none."""

    @property
    def label(self) -> str:
        """How decisions name the policy: its ``@id``, else its id and place."""
        return self.name if self.name != self.id else f"{self.id} ({self.where})"


@dataclass(frozen=True)
class LoadedPolicies:
    """A parsed policy set and what is known of each policy."""

    policy_set: cedarpy.PolicySet
    text: str
    """All the files, in order (what was parsed and validated)."""
    policies: dict[str, PolicyInfo]
    statements: list[Statement]


def statements(text: str, file: Path) -> list[Statement]:
    """The statements of a policy file, in order (text left after the last ``;`` that is not
    blank or a comment is a statement too, the one missing its ``;``)."""
    out: list[Statement] = []
    start: int | None = None
    last = 0  # end of the last code (not a comment, not blank) seen
    code: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if not ch.isspace():
            if start is None:
                start = i
            last = i + 1
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            last = i + 1
            code.append('""')
        elif ch == ";" and start is not None:
            line = text.count("\n", 0, start) + 1
            out.append(Statement(file, line, text[start : i + 1], "".join(code)))
            start, code = None, []
        elif start is not None:
            code.append(ch)
        i += 1
    if start is not None:
        line = text.count("\n", 0, start) + 1
        out.append(Statement(file, line, text[start:last], "".join(code)))
    return out


def read_policy_file(path: Path) -> str:
    """A policy file's text; ``SpecError`` naming it when it cannot be read."""
    refuse_pipe(path, "policy file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise file_not_found(path, "policy file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the policy file: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise SpecError(f"{path}: policy files are limited to {MAX_POLICY_BYTES} bytes")
    try:
        # A byte order mark (Windows editors write one) is not Cedar: read past it, as the
        # YAML files are read.
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse_error(text: str) -> str | None:
    import cedarpy

    try:
        cedarpy.PolicySet.from_str(text)
    except ValueError as exc:
        return str(exc) or "does not parse"
    return None


_ENDS = ("unexpected end of input", "unexpected token `;`")
"""Errors a statement cut short gives by itself (Cedar's parser gives no positions)."""


def _parse_error_line(statement: Statement, error: str) -> int:
    """The line of ``statement`` where ``error`` arises: the first cut of the statement that
    fails with the same error, as it is or ended with a ``;`` (an error at the end names the
    statement's last line). Cut short, a statement's error is hidden behind "unexpected end of
    input" (the parser reports the input ending while it recovers): the error on a policy's
    first line (``permt(...)``, ``action = = ...``) was put on the line after it."""
    lines = statement.text.split("\n")
    if error != "unexpected end of input" and len(lines) <= 200:  # each cut is a parse or two
        for k in range(1, len(lines)):
            cut = "\n".join(lines[:k])
            if _parse_error(cut) == error or (
                error not in _ENDS and _parse_error(cut + "\n;") == error
            ):
                return statement.line + k - 1
    return statement.line + len(lines) - 1


def load_policies(files: list[Path]) -> LoadedPolicies:
    """Read and parse the policy files; ``SpecError`` at ``file:line`` for one that does not
    parse, holds a template, or repeats an ``@id``."""
    import cedarpy

    texts: list[str] = []
    found: list[Statement] = []
    seen: dict[Path, Path] = {}
    for path in files:
        same = seen.setdefault(path.resolve(), path)
        if same is not path:
            also = f" (also as {same})" if str(same) != str(path) else ""
            raise SpecError(
                f"{path}: listed twice among the policy files{also}",
                hint="name each policy file once",
            )
        text = read_policy_file(path)
        for statement in statements(text, path):
            why = statement.too_complex()
            if why is not None:
                raise SpecError(f"{path}:{statement.line}: Cedar policy too complex: {why}")
        error = _parse_error(text)
        if error is not None:
            for statement in statements(text, path):
                own = _parse_error(statement.text)
                if own is not None:
                    line = _parse_error_line(statement, own)
                    raise SpecError(f"{path}:{line}: Cedar policy does not parse: {own}")
            raise SpecError(f"{path}: Cedar policies do not parse: {error}")
        texts.append(text)
        found += statements(text, path)
    combined = "\n".join(texts)
    policy_set = cedarpy.PolicySet.from_str(combined)
    try:
        tree = policy_set.to_pst()
    except ValueError as exc:  # nested past cedarpy's limit (100 levels)
        for statement in found:
            try:
                cedarpy.PolicySet.from_str(statement.text).to_pst()
            except ValueError:
                where = f"{statement.file}:{statement.line}"
                raise SpecError(f"{where}: Cedar policy too complex: {exc}") from None
        raise SpecError(f"Cedar policies too complex: {exc}") from None
    if tree.templates:
        first = sorted(tree.templates)[0]
        raise SpecError(
            f"{_where(found, first)}: Cedar templates (?principal, ?resource) are not supported: "
            "write the principal or resource out"
        )
    if len(found) != len(tree.static_policies) + len(tree.templates):
        found = []  # the split disagrees with Cedar's: name files, not lines that may be wrong
    return LoadedPolicies(policy_set, combined, _infos(tree.static_policies, found), found)


def _where(found: list[Statement], policy_id: str) -> str:
    """``file:line`` of Cedar's ``policyN``, counted over the statements of all files."""
    match = re.fullmatch(r"policy(\d+)", policy_id)
    if match and int(match.group(1)) < len(found):
        statement = found[int(match.group(1))]
        return f"{statement.file}:{statement.line}"
    return "the policy files"


def _infos(static: Mapping[str, Any], found: list[Statement]) -> dict[str, PolicyInfo]:
    infos: dict[str, PolicyInfo] = {}
    named: dict[str, str] = {}
    for policy_id, policy in static.items():
        notes = dict(policy.annotations)
        where = _where(found, policy_id)
        name = notes.get("id") or policy_id
        if name in named and name != policy_id:
            raise SpecError(f'{where}: @id("{name}") is also the id of the policy at {named[name]}')
        named[name] = where
        for note in notes:
            _check_annotation(note, where)
        escalate = notes.get(ESCALATE)
        if escalate is not None and policy.effect != "permit":
            raise SpecError(
                f"{where}: @{ESCALATE} applies to permit policies (a forbid always denies)"
            )
        infos[policy_id] = PolicyInfo(policy_id, name, where, policy.effect, escalate)
    return infos


_KNOWN_ANNOTATIONS = {"id": '@id("name")', ESCALATE: f'@{ESCALATE}("why")'}


def _check_annotation(note: str, where: str) -> None:
    """Refuse an annotation that reads as a misspelt one of Tether's: a misspelt @escalate
    would make its permit a plain allow (Cedar keeps any annotation). Others are the
    author's own (``@description``...) and pass."""
    if note in _KNOWN_ANNOTATIONS:
        return
    for known, usage in _KNOWN_ANNOTATIONS.items():
        lower = note.lower()
        if lower == known or (
            len(known) > 2
            and (
                lower.startswith(known[:5])
                or difflib.SequenceMatcher(None, lower, known).ratio() >= 0.8
            )
        ):
            raise SpecError(
                f"{where}: @{note} is not an annotation Tether knows: did you mean {usage}?"
            )


_NAMED = re.compile(r"`([^`]+)`")


def validation_error(
    loaded: LoadedPolicies, errors: list[tuple[str, str]], hint: str | None
) -> SpecError:
    """One ``SpecError`` listing the validation errors (policy id, message) at ``file:line``."""
    lines: list[str] = []
    for policy_id, message in errors:
        where = _error_line(loaded, policy_id, message)
        text = re.sub(r"^for policy `[^`]+`, ", "", message)
        line = f"{where}: {text}"
        if line not in lines:  # the same error for several actions is said once
            lines.append(line)
    shown = lines[:MAX_ERRORS_SHOWN]
    if len(lines) > MAX_ERRORS_SHOWN:
        shown.append(f"... and {len(lines) - MAX_ERRORS_SHOWN} more")
    return SpecError(
        "Cedar policies do not validate against the schema of the agent's tools:\n"
        + "\n".join(shown),
        hint=hint,
    )


def _error_line(loaded: LoadedPolicies, policy_id: str, message: str) -> str:
    match = re.fullmatch(r"policy(\d+)", policy_id)
    if not match or int(match.group(1)) >= len(loaded.statements):
        return _where(loaded.statements, policy_id)
    statement = loaded.statements[int(match.group(1))]
    names = [n for n in _NAMED.findall(message) if n != policy_id]
    for name in names:
        # `args.amont` is written context.args.amont; `Tether::Action::"refund"` as it is.
        needle = name.rpartition(".")[2] if "::" not in name else name.rpartition("::")[2]
        for k, text in enumerate(statement.text.split("\n")):
            if needle and needle in text:
                return f"{statement.file}:{statement.line + k}"
    return f"{statement.file}:{statement.line}"
