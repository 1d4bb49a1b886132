"""Tools: the ``Tool`` protocol, Python function tools, declarative HTTP tools, and the
sandboxed code tool."""

from tether.tools.base import SideEffects, Tool, ToolResult, definition_of
from tether.tools.function import FunctionTool, tool, validate_arguments
from tether.tools.http import HttpTool
from tether.tools.loading import import_function
from tether.tools.registry import ToolCheck, build_tools, check_tools
from tether.tools.sandbox import PythonSandboxTool

__all__ = [
    "FunctionTool",
    "HttpTool",
    "PythonSandboxTool",
    "SideEffects",
    "Tool",
    "ToolCheck",
    "ToolResult",
    "build_tools",
    "check_tools",
    "definition_of",
    "import_function",
    "tool",
    "validate_arguments",
]
