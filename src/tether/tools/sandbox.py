"""``kind: python_sandbox``: a tool that runs the Python code the model writes, sandboxed."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from tether.core import ToolError
from tether.sandbox.command import SandboxError
from tether.sandbox.result import SandboxResult
from tether.sandbox.runner import Sandbox
from tether.spec.model import PythonSandboxToolSpec
from tether.tools.base import SpecToolFields, ToolResult
from tether.tools.function import arguments_model, validate_arguments

DEFAULT_DESCRIPTION = (
    "Run a Python 3 program and get its exit code, stdout and stderr as JSON. It runs in a "
    "sandbox with no network, the standard library only, and a private, empty /tmp as its "
    "working directory; nothing persists between calls. Print what you want to see."
)
TIMEOUT_GRACE_S = 5.0
"""The runtime's timeout for a call is the sandbox's plus this, so the sandbox's own result
(``timed_out``, with the output so far) reaches the model rather than a bare timeout."""
_CLIP_NOTE = "\n… [clipped: {} characters in all]"


class PythonSandboxTool(SpecToolFields):
    """Runs the ``code`` argument with :class:`tether.sandbox.Sandbox` under the spec's
    limits. The result is the JSON of a :class:`SandboxResult`; a run that did not exit 0
    (failed, killed, timed out) is an error result. Where the sandbox cannot run, every call
    is an error result and no code runs."""

    def __init__(self, spec: PythonSandboxToolSpec, *, sandbox: Sandbox | None = None) -> None:
        self.spec = spec
        self.sandbox = sandbox or Sandbox(spec.sandbox_limits())
        """What runs the code (built from the spec's limits)."""
        self._args_model: type[BaseModel] = arguments_model(
            spec.name,
            {"code": (str, ..., "The complete Python 3 program to run.")},
        )
        self._parameters = self._args_model.model_json_schema()
        self._parameters.pop("title", None)

    @property
    def description(self) -> str:
        return str(self.spec.description or DEFAULT_DESCRIPTION)

    @property
    def timeout_s(self) -> float:
        return float(self.spec.timeout_s) + TIMEOUT_GRACE_S

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        code = validate_arguments(self.name, self._args_model, arguments)["code"]
        try:
            result = await self.sandbox.run(code)
        except SandboxError as exc:  # unavailable, or code too large: nothing ran
            raise ToolError(f"tool '{self.name}': {exc.message}", hint=exc.hint) from None
        content = result_text(result, self.spec.max_result_chars)
        return ToolResult(content=content, is_error=not result.ok, data=result.to_json())


def result_text(result: SandboxResult, max_chars: int) -> str:
    """The result as JSON of at most ``max_chars`` characters (when the other fields alone
    fit): the longer of stdout and stderr is clipped, ending with a note of its full size,
    until the JSON fits."""
    fields = result.to_json()
    notes = {name: _CLIP_NOTE.format(f"{len(fields[name]):,}") for name in ("stdout", "stderr")}
    text = json.dumps(fields, ensure_ascii=False)
    while len(text) > max_chars:
        name = max(notes, key=lambda n: len(fields[n]))
        if not fields[name]:
            break  # both empty: the rest does not fit, and is sent as it is
        body = fields[name].removesuffix(notes[name])
        # Escapes make one character up to six in JSON: cut by at least a quarter each time.
        keep = min(len(body) - (len(text) - max_chars), len(body) * 3 // 4)
        fields[name] = body[: max(keep, 0)] + notes[name] if body else ""
        text = json.dumps(fields, ensure_ascii=False)
    return text
