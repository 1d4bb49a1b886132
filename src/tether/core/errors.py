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
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.retryable = retryable


class StoreError(TetherError):
    """The trace store cannot be opened, migrated, read or written."""


class PolicyViolation(TetherError):
    """A control blocked an action and the caller asked for an exception instead of a result."""


class BudgetExceeded(PolicyViolation):
    """A budget or limit was exceeded."""
