"""Structured answers: the answer must be JSON matching a JSON Schema or a pydantic model.

``OutputSchema.check`` says what is wrong with an answer; the paradigms re-ask the model with
that (``reask_note``) at most ``max_reasks`` times, each attempt a model call of its own and a
``tether.output.validation`` event on the run's span, before the run fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tether.core import SpecError
from tether.spec import OutputConfig, check_json_schema, read_yaml

MAX_PROBLEMS = 8
"""Problems reported (and told to the model) per attempt at most."""
MAX_SCHEMA_CHARS = 6_000
"""Longest schema text put in the system prompt and the re-ask note."""
_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```\Z", re.DOTALL)


def unfenced(text: str) -> str:
    """``text`` without surrounding whitespace and, if it is one Markdown code block
    (```json ... ```), without the fence."""
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group(1).strip() if match else stripped


class OutputSchema:
    """What an answer must be: JSON matching ``schema`` (a JSON Schema, draft 2020-12) or
    valid for a pydantic ``model``. ``max_reasks``: how many times the model is told what was
    wrong and asked again before the run fails."""

    def __init__(self, schema: dict[str, Any] | type[BaseModel], *, max_reasks: int = 2) -> None:
        if not 0 <= max_reasks <= 10:
            raise ValueError(f"max_reasks must be within 0..10, got {max_reasks!r}")
        self.max_reasks = max_reasks
        self.model: type[BaseModel] | None = None
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            self.model = schema
            self.schema: dict[str, Any] = schema.model_json_schema()
        elif isinstance(schema, dict):
            check_json_schema(schema)
            self.schema = schema
        else:
            raise TypeError(
                f"an output schema is a JSON Schema (dict) or a pydantic model class, got "
                f"{type(schema).__name__}"
            )
        from jsonschema import Draft202012Validator  # heavy: only agents with a schema load it

        self._validator = Draft202012Validator(self.schema) if self.model is None else None
        text = json.dumps(self.schema, ensure_ascii=False, separators=(",", ":"))
        self.schema_text = text if len(text) <= MAX_SCHEMA_CHARS else text[:MAX_SCHEMA_CHARS] + " …"

    @classmethod
    def from_config(cls, config: OutputConfig, base_dir: Path | None = None) -> OutputSchema:
        """The schema of a spec's ``output`` section; a file path is read (JSON or YAML)
        relative to ``base_dir``, its errors naming the file."""
        schema = config.json_schema
        if isinstance(schema, str):
            path = Path(schema)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            data, _ = read_yaml(path)  # YAML is a superset of JSON
            if not isinstance(data, dict):
                raise SpecError(f"{path}: a JSON Schema is an object (a mapping)")
            try:
                check_json_schema(data)
            except ValueError as exc:
                raise SpecError(f"{path}: {exc}") from None
            schema = data
        return cls(schema, max_reasks=config.max_reasks)

    def instruction(self) -> str:
        """What the system prompt says about the answer's shape."""
        return (
            "Give your final answer as a JSON value that matches this JSON Schema, with no "
            f"other text around it:\n{self.schema_text}"
        )

    def check(self, text: str) -> tuple[str, list[str]]:
        """The answer as it will be given (unfenced) and what is wrong with it (empty: valid)."""
        answer = unfenced(text)
        if self.model is not None:
            try:
                self.model.model_validate_json(answer)
            except ValidationError as exc:
                return answer, [_pydantic_problem(e) for e in exc.errors()[:MAX_PROBLEMS]]
            return answer, []
        try:
            data = json.loads(answer)
        except RecursionError:
            return answer, ["the JSON is nested too deeply"]
        except ValueError as exc:
            return answer, [f"the answer is not JSON: {exc}"]
        assert self._validator is not None
        try:
            errors = sorted(
                self._validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))
            )
        except RecursionError:
            return answer, ["the JSON is nested too deeply"]
        return answer, [_schema_problem(e) for e in errors[:MAX_PROBLEMS]]

    def reask_note(self, problems: list[str]) -> str:
        """What the model is told when its answer did not match."""
        listed = "\n".join(f"- {p}" for p in problems)
        return (
            f"Your last answer does not match the required format:\n{listed}\n"
            "Reply again with only the corrected JSON value, matching this JSON Schema:\n"
            f"{self.schema_text}"
        )


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _schema_problem(error: Any) -> str:
    where = "/" + "/".join(str(p) for p in error.absolute_path)
    return f"at {where}: {_clip(error.message)}"


def _pydantic_problem(error: Any) -> str:
    loc = error.get("loc") or ()
    where = "/" + "/".join(str(p) for p in loc)
    return f"at {where}: {_clip(str(error.get('msg', 'invalid')))}"
