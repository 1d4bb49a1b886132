"""Runtime: the run scope (``Harness``, ``RunScope``, ``Step``), ``RunState``, the agent
paradigms over the scope, and the ``Agent`` API."""

from tether.runtime.agent import Agent
from tether.runtime.chain import ModelChain
from tether.runtime.result import RunResult
from tether.runtime.scope import Harness, RunScope
from tether.runtime.spec_check import SpecCheck, check_spec
from tether.runtime.state import RUN_STATE_SCHEMA_VERSION, RunState, ToolRecord
from tether.runtime.steps import Step
from tether.runtime.structured import OutputSchema

__all__ = [
    "RUN_STATE_SCHEMA_VERSION",
    "Agent",
    "Harness",
    "ModelChain",
    "OutputSchema",
    "RunResult",
    "RunScope",
    "RunState",
    "SpecCheck",
    "Step",
    "ToolRecord",
    "check_spec",
]
