"""Attribute and span names: OpenTelemetry GenAI semantic conventions (current names only).

The ``opentelemetry-semantic-conventions`` package marks the ``gen_ai.*`` names as moved and
some as replaced, so Tether keeps its own constants. Never emit a replaced name
(``gen_ai.system``, ``gen_ai.usage.prompt_tokens``, ``gen_ai.usage.completion_tokens``).
Tether's own attributes live under ``tether.*``.
"""

from __future__ import annotations

# Operation names (gen_ai.operation.name values).
OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
"""On a chat span: the messages sent, a JSON array of ``{"role", "parts"}`` (parts: ``text``
with ``content``, ``tool_call`` with ``id``/``name``/``arguments``, ``tool_call_response`` with
``id``/``response``). Tether's system prompt travels in the chat history (OpenAI chat
completions has no separate instructions field), so it is recorded here with role ``system``,
not in ``gen_ai.system_instructions``."""
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
"""On a chat span: the reply, a JSON array of ``{"role", "parts", "finish_reason"}``."""
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
"""On a chat span of a model served over HTTP: the host of its endpoint (no credentials)."""
SERVER_PORT = "server.port"
"""On a chat span of a model served over HTTP: the port of its endpoint (80/443 if unnamed)."""

# Tether's own attributes.
TETHER_AGENT_VERSION = "tether.agent.version"
TETHER_PARADIGM = "tether.agent.paradigm"
TETHER_COST_USD = "tether.cost.usd"
TETHER_COST_UNPRICED = "tether.cost.unpriced"
"""On a chat span (``true``) or a run (the number of such calls): model calls the pricing
table has no price for, so their cost is unknown, not zero."""
TETHER_USAGE_UNKNOWN = "tether.usage.unknown"
"""On a chat span (``true``): the provider reported no token usage for the call (a server
ignoring ``stream_options.include_usage``, a stream cut off before its usage came): its tokens
read 0 and its cost is unknown (``tether.cost.unpriced``), not zero."""
TETHER_PRICING_VERSION = "tether.pricing.version"
TETHER_RUN_OUTCOME = "tether.run.outcome"
TETHER_WRITER_ID = "tether.writer.id"
"""On a run: the trace writer (one per process and store) that recorded it. A run still
``running`` when that writer's process dies is closed as failed when its journal is replayed."""
TETHER_TURN = "tether.turn"
TETHER_TOOL_SIDE_EFFECTS = "tether.tool.side_effects"
TETHER_TOOL_ERROR = "tether.tool.error"
TETHER_MODEL_ATTEMPT = "tether.model.attempt"
TETHER_INPUT_MESSAGES_OMITTED = "tether.input.messages_omitted"
"""On a chat span: the oldest messages left out of ``gen_ai.input.messages`` to bound its
size (system messages and the newest messages are kept)."""
TETHER_PLAN_STEPS = "tether.plan.steps"
TETHER_PLAN_TOOLS = "tether.plan.tools"
"""On a ``plan`` span: the planned tool names, in call order."""
TETHER_CONTROL_NAME = "tether.control.name"
TETHER_CONTROL_HOOK = "tether.control.hook"
TETHER_DECISION = "tether.decision"
TETHER_DECISION_REASON = "tether.decision.reason"

# Event names.
EVENT_CONTROL_DECISION = "tether.control.decision"
EVENT_TOOL_ERROR = "tether.tool.error"
EVENT_MODEL_FALLBACK = "tether.model.fallback"
EVENT_MODEL_ERROR = "tether.model.error"
EVENT_MODEL_ATTEMPT_FAILED = "tether.model.attempt_failed"
"""An attempt of a model call failed after part of a reply came (then retried, or the call
failed): its usage and cost, charged to the run."""
EVENT_RUN_LIMIT = "tether.run.limit"
EVENT_RUN_ERROR = "tether.run.error"
EVENT_RESUME_TOOL_STARTED = "tether.resume.tool_started"
"""A resumed run is about to run its first tool call (journaled before it runs): the pause
was used, whatever the controls decided on the call."""

# Who a run is for and how it came in (on the root span and the run record).
TETHER_PROJECT = "tether.project"
TETHER_RUN_KIND = "tether.run.kind"
"""``agent_run``, ``model_request`` or ``tool_call`` (``tether.core.RunKind``)."""
TETHER_ENTRY_POINT = "tether.entry_point"
"""``runtime``, ``model_gateway``, ``tool_gateway`` or ``sdk`` (``tether.core.EntryPoint``)."""
TETHER_CALLER_KEY_ID = "tether.caller.key_id"
ENDUSER_ID = "enduser.id"
"""The application's end user the run acts for (OpenTelemetry's general attribute)."""
TETHER_RESPONDED_BY = "tether.responded_by"
"""On a chat or tool span: the control that answered in place of the call
(``Decision.respond``); no model or tool was called."""
TETHER_CALLED_BY = "tether.called_by"
"""On a chat span: the control that made this model call on the run's behalf (an LLM judge,
``HookContext.call_model``); it counts in the run's tokens and cost, not in its turns."""
