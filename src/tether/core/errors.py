"""The one exception hierarchy. Every error Tether raises on purpose derives from TetherError.

Control-flow outcomes (a run stopped by a limit, a loop broken, a run blocked by a policy) are
results on ``RunResult``, not exceptions.
"""

from __future__ import annotations


class TetherError(Exception):
    """Root of every error Tether raises on purpose.

    ``hint`` says what the user can do about it; the CLI prints it under the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(TetherError):
    """An agent spec (or a file it references) is malformed or invalid.

    ``problems`` lists schema errors one by one (``file``, ``line``, ``field``, ``message``),
    in file order, for tools that show them (``tether validate --json``).
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        problems: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class ToolError(TetherError):
    """A tool failed. Inside a run this goes back to the model as the tool's result."""


class ToolArgumentsError(ToolError):
    """The model called a tool with arguments that do not match its schema."""


class ProviderError(TetherError):
    """A model provider failed: timeout, HTTP error, or a reply that cannot be parsed."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        misconfigured: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.retryable = retryable
        self.misconfigured = misconfigured
        """The model is not set up correctly (an unknown model name, a missing key): the
        status code alone cannot tell, since OpenAI-compatible servers answer differently."""


class StoreError(TetherError):
    """The trace store cannot be opened, migrated, read or written.

    Raised as itself, it means the store failed (down, unreachable, not a database, a schema
    it cannot use): worth retrying later. Its subclasses ``NotFound`` and ``InvalidQuery``
    are answers about the request, with the store working; ``CorruptRecord`` a stored record
    that cannot be read back."""


class NotFound(StoreError):
    """The store works and has no such run (or trace)."""


class InvalidQuery(StoreError):
    """The store works, and cannot answer the read as asked: an id too short or matching
    several runs, a malformed page cursor."""


class CorruptRecord(StoreError):
    """The store works and holds a record it cannot read back (a checkpoint edited by hand or
    written by an incompatible version): neither the request's fault nor worth retrying."""


class Conflict(TetherError):
    """What was asked clashes with the state of what it acts on, and asking again will not
    change that: a tool call answered already, a run resumed already (HTTP 409)."""


MAX_EXCEPTION_TEXT = 2_000
"""Longest description :func:`describe_exception` gives (an exception can carry megabytes)."""


def describe_exception(exc: BaseException, *, limit: int = MAX_EXCEPTION_TEXT) -> str:
    """``TypeName: text`` for an exception, safe on any exception: a ``__str__`` that raises
    (or returns something that is not a string) falls back to ``repr()``, then to a
    placeholder. The result is at most about ``limit`` characters. Only a Ctrl-C
    (``KeyboardInterrupt``) raised while describing passes through."""
    name = type(exc).__name__
    text: str | None = None
    for describe in (str, repr):
        try:
            value = describe(exc)
        except KeyboardInterrupt:
            raise
        except BaseException:  # a broken __str__ must not turn into a crash
            continue
        if isinstance(value, str):
            text = value if describe is str else f"(str() failed; repr: {value})"
            break
    if text is None:
        text = "(its str() and repr() both failed)"
    described = f"{name}: {text}" if text else name
    if len(described) > limit:
        cut = len(described) - limit
        described = f"{described[:limit]}… ({cut} more characters)"
    return described
