"""Runtime: the agent loop, ``RunState``, and the ``Agent`` API."""

from tether.runtime.agent import Agent, SpecCheck, check_spec
from tether.runtime.result import RunResult
from tether.runtime.state import RUN_STATE_SCHEMA_VERSION, RunState, ToolRecord

__all__ = [
    "RUN_STATE_SCHEMA_VERSION",
    "Agent",
    "RunResult",
    "RunState",
    "SpecCheck",
    "ToolRecord",
    "check_spec",
]
