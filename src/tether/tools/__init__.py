"""Tools: the ``Tool`` protocol, Python function tools, and declarative HTTP tools."""

from tether.tools.base import SideEffects, Tool, ToolResult, definition_of
from tether.tools.function import FunctionTool, tool, validate_arguments
from tether.tools.http import HttpTool
from tether.tools.registry import build_tools, import_function

__all__ = [
    "FunctionTool",
    "HttpTool",
    "SideEffects",
    "Tool",
    "ToolResult",
    "build_tools",
    "definition_of",
    "import_function",
    "tool",
    "validate_arguments",
]
