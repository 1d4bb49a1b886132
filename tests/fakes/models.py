"""Real ``Model`` implementations that fail the way providers do (not mocks of Tether code)."""

from __future__ import annotations

from tether.core import ProviderError
from tether.providers import ModelRequest, ModelResponse


class FailingModel:
    """Always fails: by default like an upstream 503 (transient); with ``retryable=False``
    and a status like a wrong key (401) or a bad request (400), with a hint."""

    def __init__(
        self,
        name: str = "broken",
        *,
        retryable: bool = True,
        status: int | None = 503,
        hint: str | None = None,
    ) -> None:
        self._name, self.retryable, self.status, self.hint = name, retryable, status, hint
        self.calls = 0

    @property
    def provider(self) -> str:
        return "test"

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        raise ProviderError(
            f"{self._name}: upstream returned {self.status}",
            hint=self.hint,
            status_code=self.status,
            retryable=self.retryable,
        )
