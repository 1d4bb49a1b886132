"""The ``guards`` and ``output`` sections of an agent spec, and guards policy files.

A guard rule says which guard runs on which channels, from what score it acts and how::

    guards:
      policy: ../policies/support.yaml   # shared rules (a policy file), run before these
      spotlight: datamark                # untrusted tool output reaches the model marked as data
      documents: [kb_search]             # tools whose results are the ``document`` channel
      rules:
        - guard: injection
          channels: [user, tool_output, document]
          threshold: 0.8
          action: block

A policy file holds the same rules under ``guards:`` (a list), so several agents can share
them. Everything that cannot work is refused when the file loads, naming its line: an unknown
guard, channel or action, a threshold on a guard that gives no score, a regular expression that
is invalid or can take exponential time, an action the guard cannot take (``mask`` on a guard
that finds no spans of text to replace).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.core.patterns import compile_checked
from tether.spec.model import TOOL_NAME_PATTERN, ModelConfig, _Strict

GuardChannel = Literal["user", "tool_output", "document", "output", "tool_args"]
GUARD_CHANNELS: tuple[GuardChannel, ...] = (
    "user",
    "tool_output",
    "document",
    "output",
    "tool_args",
)
"""Where a text comes from: the user's message (``on_input``), a tool's result
(``after_tool``), a document a tool fetched or retrieved (``after_tool`` of the tools listed in
``guards.documents``), the agent's answer (``on_output``), the arguments the model writes for
a tool call (``after_model`` and ``before_tool``: the detectors only)."""
TEXT_CHANNELS: tuple[GuardChannel, ...] = ("user", "tool_output", "document", "output")
"""The channels of whole texts, which every guard can judge (``tool_args`` are JSON values,
judged one by one by the detectors)."""
GuardAction = Literal["block", "mask", "hash", "escalate", "log"]
GUARD_ACTIONS: tuple[GuardAction, ...] = ("block", "mask", "hash", "escalate", "log")
UNKNOWN_GUARD = "unknown_guard"
"""Error type of a rule whose ``guard`` names no known guard."""
MAX_TERMS = 10_000
"""Most terms (or patterns) one deny list or topic list may hold."""
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)


class _GuardRule(_Strict):
    """What every guard rule has."""

    guard: str
    """Which guard: ``injection``, ``deny_list``, ``topics``, ``python``, ``judge``."""
    channels: tuple[GuardChannel, ...]
    """The channels it runs on: ``user``, ``tool_output``, ``document``, ``output``, and for
    the detectors ``tool_args``."""
    threshold: float | None = Field(default=None, gt=0, le=1)
    """The score from which the guard acts (0 < threshold <= 1), for guards that score texts;
    default: the guard's own (the injection model's per-channel thresholds)."""
    action: GuardAction = "block"
    """What happens to a text the guard flags: ``block`` it (a tool result is withheld from
    the model and the run goes on; a user message or an answer ends the run), ``mask`` the
    parts found, ``hash`` them, ``escalate`` to a person (the run pauses), or only ``log``."""
    fail_open: bool = False
    """If the guard itself fails (raises, times out), let the text through and record the
    failure (default: the run stops with outcome ``control_error``)."""

    # What the guard can do, checked when the rule loads.
    allowed_channels: ClassVar[tuple[GuardChannel, ...]] = TEXT_CHANNELS
    allowed_actions: ClassVar[tuple[GuardAction, ...]] = ("block", "escalate", "log")
    scores: ClassVar[bool] = False

    @field_validator("channels")
    @classmethod
    def _channels(cls, channels: tuple[GuardChannel, ...]) -> tuple[GuardChannel, ...]:
        if not channels:
            raise ValueError(f"name at least one channel ({', '.join(cls.allowed_channels)})")
        if len(set(channels)) != len(channels):
            raise ValueError("a channel is named twice")
        wrong = [c for c in channels if c not in cls.allowed_channels]
        if wrong:
            raise ValueError(
                f"the {cls._name()} guard does not run on {', '.join(wrong)}; it runs on "
                f"{', '.join(cls.allowed_channels)}"
            )
        return channels

    @field_validator("action")
    @classmethod
    def _action(cls, action: GuardAction) -> GuardAction:
        if action not in cls.allowed_actions:
            why = (
                " (it finds no values to replace)"
                if action in ("mask", "hash") and "mask" not in cls.allowed_actions
                else ""
            )
            raise ValueError(
                f"the {cls._name()} guard cannot {action}{why}; use "
                f"{', '.join(cls.allowed_actions)}"
            )
        return action

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, threshold: float | None) -> float | None:
        if threshold is not None and not cls.scores:
            raise ValueError(
                f"the {cls._name()} guard gives no score, so a threshold would never apply; "
                "remove it"
            )
        return threshold

    @classmethod
    def _name(cls) -> str:
        default = cls.model_fields["guard"].default
        return str(default) if isinstance(default, str) else cls.__name__


class InjectionRule(_GuardRule):
    """Prompt-injection detection (rules and the shipped classifier, after normalization)."""

    guard: Literal["injection"] = "injection"
    channels: tuple[GuardChannel, ...] = ("user", "tool_output", "document")
    allowed_channels: ClassVar[tuple[GuardChannel, ...]] = ("user", "tool_output", "document")
    scores: ClassVar[bool] = True


def _checked_pattern(pattern: str) -> str:
    compile_checked(pattern, what="the pattern")
    return pattern


Pattern = Annotated[str, AfterValidator(_checked_pattern)]
"""A regular expression (the ``regex`` package's syntax) that can work: valid, and with no
repetition of a repetition (exponential time on an input that almost matches)."""


def _terms(values: list[str], what: str) -> list[str]:
    if len(values) > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS:,} {what}, got {len(values):,}")
    for i, term in enumerate(values):
        if not term.strip():
            raise ValueError(f"{what}[{i}] is empty")
    return values


class DenyListRule(_GuardRule):
    """Words, phrases and patterns a text must not contain."""

    guard: Literal["deny_list"] = "deny_list"
    channels: tuple[GuardChannel, ...] = ("output",)
    allowed_actions: ClassVar[tuple[GuardAction, ...]] = ("block", "mask", "escalate", "log")
    terms: list[str] = Field(default_factory=list)
    """Words or phrases, matched as whole words (``"acme"`` does not match ``"acmes"``)."""
    patterns: list[Pattern] = Field(default_factory=list)
    """Regular expressions (the ``regex`` package's syntax); a repetition of a repetition, which
    can take exponential time, is refused when the file loads."""
    case_sensitive: bool = False
    """Match letter case exactly (default: ignore it)."""
    replacement: str = "[removed]"
    """What ``mask`` puts in place of each match."""

    @field_validator("terms")
    @classmethod
    def _check_terms(cls, terms: list[str]) -> list[str]:
        return _terms(terms, "terms")

    @field_validator("patterns")
    @classmethod
    def _check_patterns(cls, patterns: list[str]) -> list[str]:
        return _terms(patterns, "patterns")

    @model_validator(mode="after")
    def _something_to_match(self) -> DenyListRule:
        if not self.terms and not self.patterns:
            raise ValueError("a deny_list needs 'terms' or 'patterns'")
        return self


class TopicsRule(_GuardRule):
    """The topics a text must be about: one that names none of them is off topic."""

    guard: Literal["topics"] = "topics"
    channels: tuple[GuardChannel, ...] = ("user",)
    allowed: dict[str, list[str]] = Field(min_length=1)
    """Each allowed topic and the words or phrases that show a text is about it
    (``shipping: [delivery, parcel, tracking]``), matched as whole words, ignoring case."""
    min_words: int = Field(default=4, ge=0)
    """Texts shorter than this many words are let through (``thanks!``, ``hi``)."""

    @field_validator("allowed")
    @classmethod
    def _keywords(cls, allowed: dict[str, list[str]]) -> dict[str, list[str]]:
        for topic, words in allowed.items():
            if not words:
                raise ValueError(f"topic {topic!r} has no words")
            _terms(words, f"{topic}")
        return allowed


class PythonRule(_GuardRule):
    """A function of yours, ``(text) -> bool | str | Decision | None`` (sync or async): ``True``
    or ``None`` lets the text through, ``False`` flags it, a string flags it with that string
    as the reason, a ``Decision`` is taken as it is (``Decision.modify`` to rewrite the text)."""

    guard: Literal["python"] = "python"
    channels: tuple[GuardChannel, ...] = ("output",)
    function: str = Field(min_length=1)
    """``module:function`` or ``file.py:function`` (relative to the spec file)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Longest the function may take on one text (a sync one runs in a worker thread)."""


class JudgeRule(_GuardRule):
    """Asks a model whether a text meets a rubric (an LLM judge)."""

    guard: Literal["judge"] = "judge"
    channels: tuple[GuardChannel, ...] = ("output",)
    rubric: str = Field(min_length=1)
    """What a good text is, in words (``The answer must not promise refunds.``)."""
    model: ModelConfig | None = None
    """The judge's model (default: the agent's primary model)."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Longest the judge may take on one text."""
    max_chars: int = Field(default=20_000, gt=0, le=1_000_000)
    """Longest text the judge is shown; a longer one is judged on its start and end."""


DEFAULT_DETECTOR_THRESHOLD = 0.5


def _detector_types() -> dict[str, Any]:
    # The detectors' registry (pii, secrets, presidio, and any a team registered). Imported
    # when a rule names one: loading tether.guards takes a tenth of a second.
    from tether.guards.registry import guard_types

    return guard_types()


class DetectorRule(_GuardRule):
    """A detector of sensitive values: ``pii``, ``secrets``, ``presidio`` (the ``presidio``
    extra), or one registered with ``tether.guards.register_guard``. Its findings are spans of
    values that ``mask`` replaces with their kind (``<EMAIL_ADDRESS>``) and ``hash`` with a
    keyed hash (``<EMAIL_ADDRESS:5f0c2a9e41d7b3c8>``, needs ``TETHER_GUARD_HASH_KEY``)."""

    guard: str
    channels: tuple[GuardChannel, ...] = GUARD_CHANNELS
    """The channels it runs on (default: all five, ``tool_args`` included)."""
    threshold: float = Field(default=DEFAULT_DETECTOR_THRESHOLD, gt=0, le=1)
    """Findings scoring at least this count (0 < threshold <= 1)."""
    kinds: tuple[str, ...] | None = None
    """Only these kinds of findings (``[EMAIL_ADDRESS, CREDIT_CARD]``); default: all."""
    allowed_channels: ClassVar[tuple[GuardChannel, ...]] = GUARD_CHANNELS
    allowed_actions: ClassVar[tuple[GuardAction, ...]] = GUARD_ACTIONS
    scores: ClassVar[bool] = True

    @field_validator("guard")
    @classmethod
    def _known_guard(cls, guard: str) -> str:
        known = _detector_types()
        if guard not in known:
            names = ", ".join([*GUARD_RULES, *known])
            raise ValueError(f"unknown guard {guard!r}; known guards: {names}")
        return guard

    @field_validator("action")
    @classmethod
    def _redactable(cls, action: GuardAction, info: ValidationInfo) -> GuardAction:
        guard = _detector_types().get(info.data.get("guard", ""))
        if guard is not None and action in ("mask", "hash") and not guard.redactable:
            raise ValueError(
                f"guard {guard.name!r} scores whole texts and finds no values to {action}; "
                "use block, escalate or log"
            )
        return action

    @field_validator("kinds")
    @classmethod
    def _kinds_known(
        cls, kinds: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        guard = _detector_types().get(info.data.get("guard", ""))
        if kinds is None or guard is None:
            return kinds
        if not kinds:
            raise ValueError("name at least one kind, or leave kinds out for all of them")
        if guard.kinds is None:
            return kinds  # checked when the guard is built
        unknown = [k for k in kinds if k not in guard.kinds]
        if unknown:
            known = ", ".join(guard.kinds)
            raise ValueError(f"unknown {guard.name} kind(s) {', '.join(unknown)}; known: {known}")
        return kinds

    @classmethod
    def _name(cls) -> str:
        return "detector"


GUARD_RULES: dict[str, type[_GuardRule]] = {
    "injection": InjectionRule,
    "deny_list": DenyListRule,
    "topics": TopicsRule,
    "python": PythonRule,
    "judge": JudgeRule,
}
"""The guards a rule can name besides the detectors' registry (pii, secrets, presidio...)."""
DETECTOR_TAG = "detector"
"""The tag of ``DetectorRule`` in the union (any other guard name goes there, and is checked
against the detectors' registry)."""


def _guard_of(value: Any) -> str | None:
    guard = value.get("guard") if isinstance(value, dict) else getattr(value, "guard", None)
    if guard in GUARD_RULES:
        return str(guard)
    return DETECTOR_TAG if isinstance(guard, str) else None


GuardRule = Annotated[
    Annotated[InjectionRule, Tag("injection")]
    | Annotated[DenyListRule, Tag("deny_list")]
    | Annotated[TopicsRule, Tag("topics")]
    | Annotated[PythonRule, Tag("python")]
    | Annotated[JudgeRule, Tag("judge")]
    | Annotated[DetectorRule, Tag(DETECTOR_TAG)],
    Discriminator(
        _guard_of,
        custom_error_type=UNKNOWN_GUARD,
        custom_error_message="unknown guard; known guards: " + ", ".join(GUARD_RULES),
    ),
]
"""One rule of a policy or a spec, by its ``guard``."""


class GuardsPolicy(_Strict):
    """A guards policy file: rules several agents can share (``guards.policy`` in a spec), and
    what ``tether scan --policy`` applies."""

    guards: list[GuardRule] = Field(default_factory=list)
    """The rules, each applied on its own channels, in order."""

    def rules_for(self, channel: GuardChannel) -> list[_GuardRule]:
        """The rules that run on ``channel``."""
        return [r for r in self.guards if channel in r.channels]


class GuardsConfig(_Strict):
    """An agent's guards: its rules, a shared policy file, and spotlighting."""

    policy: str | None = Field(default=None, min_length=1)
    """A guards policy file (relative to the spec file) whose rules run before ``rules``."""
    rules: list[GuardRule] = Field(default_factory=list)
    """This agent's own rules, run in order after the policy's."""
    spotlight: Literal["datamark", "delimit", "off"] = "off"
    """Mark the tool results and documents that reach the model as data, with a marker that
    changes with every run, and tell the model so in the system prompt: ``datamark`` (every
    space becomes the marker), ``delimit`` (the text is wrapped in marker tags), ``off``."""
    documents: list[str] = Field(default_factory=list)
    """Tools whose results are documents (fetched pages, retrieved passages): guarded as the
    ``document`` channel instead of ``tool_output``. Each must be declared under ``tools``."""

    @field_validator("spotlight", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        # YAML reads an unquoted `off` as false: `spotlight: off` means "off".
        return "off" if value is False else value

    @field_validator("documents")
    @classmethod
    def _tool_names(cls, documents: list[str]) -> list[str]:
        for i, name in enumerate(documents):
            if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
                raise ValueError(f"documents[{i}]: {name!r} is not a tool name")
        return documents

    @property
    def active(self) -> bool:
        """Whether the section asks for anything."""
        return bool(self.policy or self.rules or self.spotlight != "off")


class OutputConfig(_Strict):
    """What the answer must be: JSON matching a schema, re-asked when it is not."""

    json_schema: dict[str, Any] | str
    """A JSON Schema (draft 2020-12), or the path of a ``.json`` or ``.yaml`` file holding
    one (relative to the spec file)."""
    max_reasks: int = Field(default=2, ge=0, le=10)
    """How many times the model is told what was wrong and asked again before the run fails
    (outcome ``error``)."""

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, schema: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(schema, str):
            if not schema.strip():
                raise ValueError("give a schema, or the path of a file holding one")
            return schema
        check_json_schema(schema)
        return schema


def check_json_schema(schema: dict[str, Any]) -> None:
    """``ValueError`` saying what is wrong with ``schema`` as a JSON Schema (draft 2020-12),
    including ``pattern`` keywords that are invalid or can take exponential time."""
    # jsonschema takes some 150 ms to import: only specs with an output schema pay for it.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    for where, pattern in _schema_patterns(schema, ""):
        compile_checked(pattern, what=f"the pattern at {where}", ignore_case=False)


_DATA_KEYWORDS = frozenset({"const", "enum", "examples", "default"})


def _schema_patterns(node: Any, where: str) -> list[tuple[str, str]]:
    """The ``pattern`` (and ``patternProperties`` keys) of a schema, with where they are."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(node, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("pattern"), str):
                found.append((f"{at}/pattern", item["pattern"]))
            props = item.get("patternProperties")
            if isinstance(props, dict):
                found.extend((f"{at}/patternProperties", str(k)) for k in props)
            # Values (const, enum, examples, default) are data, not schemas.
            stack.extend((v, f"{at}/{k}") for k, v in item.items() if k not in _DATA_KEYWORDS)
        elif isinstance(item, list):
            stack.extend((v, f"{at}/{i}") for i, v in enumerate(item))
    return found
