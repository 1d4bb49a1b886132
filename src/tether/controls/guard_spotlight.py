"""Spotlighting as a control: tool results and documents that reach the model are marked as
data with a marker that changes with every run, and the model is told so.

At ``after_tool`` the result is marked (``datamark``: every run of spaces becomes the marker
character; ``delimit``: the text is wrapped in tags carrying a random id); at
``before_model`` the instruction that explains the marker is added to the request's system
message. The marker comes from an HMAC of the run id under a secret (``TETHER_SPOTLIGHT_KEY``,
else one drawn when the process starts), so the author of a tool's output cannot know it and
cannot forge the end of the data block. Put this control after the guards: it marks only what
they let through (a withheld result is Tether's own note, not data).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Collection
from typing import TYPE_CHECKING, Literal

from tether.controls.pipeline import Control, Decision, Hook, HookContext
from tether.providers import Message, ModelRequest
from tether.tools import ToolResult

if TYPE_CHECKING:
    from tether.guards import Spotlight

SpotlightMode = Literal["datamark", "delimit"]
KEY_ENV = "TETHER_SPOTLIGHT_KEY"
"""Environment variable holding the secret the per-run markers derive from. Set it (the same
on every replica) when runs are resumed in another process than the one that started them."""

_PROCESS_KEY = secrets.token_bytes(32)


def _secret() -> bytes:
    configured = os.environ.get(KEY_ENV, "")
    return configured.encode() if configured else _PROCESS_KEY


class SpotlightControl(Control):
    """Marks tool results (and documents) as data for the model; see the module docstring.

    ``tools``: only these tools' results are marked (default: every tool's)."""

    name = "spotlight"

    def __init__(
        self,
        mode: SpotlightMode = "datamark",
        *,
        tools: Collection[str] | None = None,
        secret: bytes | None = None,
    ) -> None:
        if mode not in ("datamark", "delimit"):
            raise ValueError(f"mode must be 'datamark' or 'delimit', got {mode!r}")
        # Imported here: tether.guards loads the injection rules (a tenth of a second).
        from tether.guards import Spotlight

        self._spotlight = Spotlight
        self.mode: SpotlightMode = mode
        self.tools = None if tools is None else frozenset(tools)
        self._secret = secret

    def spotlight_for(self, run_id: str) -> Spotlight:
        """The markers of one run."""
        secret = self._secret if self._secret is not None else _secret()
        key = hmac.new(secret, run_id.encode(), hashlib.sha256).digest()
        return self._spotlight.for_run(key)

    def applies(self, ctx: HookContext) -> bool:
        if ctx.hook is not Hook.AFTER_TOOL or self.tools is None:
            return True
        return ctx.call is not None and ctx.call.name in self.tools

    async def before_model(self, ctx: HookContext, request: ModelRequest) -> Decision:
        instruction = self.spotlight_for(ctx.state.run_id).instruction(self.mode)
        messages = list(request.messages)
        if messages and messages[0].role == "system":
            first = messages[0]
            if instruction in first.content:
                return Decision.allow()
            content = f"{first.content}\n\n{instruction}" if first.content else instruction
            messages[0] = first.model_copy(update={"content": content})
        else:
            messages.insert(0, Message(role="system", content=instruction))
        return Decision.modify(
            request.model_copy(update={"messages": messages}),
            f"untrusted data is marked ({self.mode}); the model is told how",
        )

    async def after_tool(self, ctx: HookContext, result: ToolResult) -> Decision:
        marked = self.spotlight_for(ctx.state.run_id).apply(result.content, self.mode)
        return Decision.modify(
            ToolResult(marked, result.is_error, result.data), f"marked as data ({self.mode})"
        )
