"""The ``tool_args`` channel: what a model writes into a tool call's arguments passes the
detector guards before the chat span, the tool span, the conversation and (as the policy says)
the tool see it. Masking works value by value, so the arguments stay a JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fakes.leaks import StoredBytes, leaked
from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import Agent, Harness, ScriptedModel, ToolCall, tool
from tether.controls import PiiGuard
from tether.controls.guard_base import GUARD_CHANNEL, GUARD_EVIDENCE, GUARD_NAME
from tether.core import Outcome
from tether.guards import GuardStack
from tether.guards.arguments import check_arguments
from tether.guards.redaction import HASH_KEY_ENV
from tether.spec import GuardsPolicy
from tether.trace import semconv

EMAIL = "otto.ostrich@example.org"
TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
CARD = "4111 1111 1111 1111"

SENT: list[dict[str, Any]] = []


@tool(side_effects="write")
def send_email(to: str, body: str) -> str:
    """Send an e-mail."""
    SENT.append({"to": to, "body": body})
    return "sent"


STEPS: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {
                "name": "send_email",
                "arguments": {"to": EMAIL, "body": f"Your token is {TOKEN}. Thanks!"},
            }
        ]
    },
    {"text": "Done: {result:send_email}."},
]


@pytest.fixture(autouse=True)
def _outbox() -> None:
    SENT.clear()


def mailer(url: str, rules: list[dict[str, Any]], **kw: Any) -> Agent:
    return Agent(
        make_spec(tools=[{"name": "send_email", "side_effects": "write"}], guards={"rules": rules}),
        model=ScriptedModel(kw.pop("steps", STEPS)),
        tools=[send_email],
        trace=url,
        **kw,
    )


def stored_arguments(url: str, run_id: str) -> tuple[list[Any], list[Any], list[Any]]:
    """The arguments as the chat spans and the tool spans keep them, and the guard events."""
    _, spans, events = trace_of(url, run_id)
    in_chat = [
        part["arguments"]
        for span in spans
        if span.kind == "model"
        for message in span.attributes.get(semconv.GEN_AI_OUTPUT_MESSAGES, [])
        for part in message["parts"]
        if part["type"] == "tool_call"
    ]
    in_tool = [
        json.loads(s.attributes[semconv.GEN_AI_TOOL_CALL_ARGUMENTS])
        for s in spans
        if s.kind == "tool"
    ]
    guards = [e for e in events if e.attributes.get(GUARD_NAME) in ("pii", "secrets")]
    return in_chat, in_tool, guards


async def test_masked_arguments_reach_the_tool_and_the_trace_as_json(tmp_path: Path) -> None:
    stored = StoredBytes(tmp_path)
    agent = mailer(
        stored.url,
        [{"guard": "secrets", "action": "mask"}, {"guard": "pii", "action": "mask"}],
    )
    result = await agent.run("mail my token to me")
    assert result.outcome == "final_answer"
    masked = {"to": "<EMAIL_ADDRESS>", "body": "Your token is <GITHUB_TOKEN>. Thanks!"}
    assert [masked] == SENT  # the tool got valid, masked arguments
    (asked,) = [c for m in result.state.messages for c in m.tool_calls]
    assert asked.arguments == masked  # and so does the conversation (and a checkpoint)
    assert leaked(stored.journal_bytes(), EMAIL, TOKEN) == []
    stored.deliver()
    assert leaked(stored.all_bytes(), EMAIL, TOKEN) == []
    in_chat, in_tool, guards = stored_arguments(stored.url, result.run_id)
    assert in_chat == [masked] and in_tool == [masked]
    verdicts = {
        (e.attributes[semconv.TETHER_CONTROL_HOOK], e.attributes[GUARD_CHANNEL])
        for e in guards
        if e.attributes[semconv.TETHER_DECISION] == "modify"
    }
    # The reply's text (output) and its calls' arguments (tool_args), judged together.
    assert ("after_model", "output+tool_args") in verdicts
    evidence = [
        item for e in guards for item in e.attributes.get(GUARD_EVIDENCE, []) if "arg" in item
    ]
    assert {(item["arg"], item["kind"]) for item in evidence} == {
        ("to", "EMAIL_ADDRESS"),
        ("body", "GITHUB_TOKEN"),
    }


async def test_a_block_refuses_the_call_and_stores_the_arguments_masked(tmp_path: Path) -> None:
    stored = StoredBytes(tmp_path)
    agent = mailer(stored.url, [{"guard": "secrets", "channels": ["tool_args"]}])
    result = await agent.run("mail my token to me")
    assert SENT == []  # the tool never ran
    assert result.outcome == "final_answer"  # the run went on: the model heard why
    (refusal,) = [m.content for m in result.state.messages if m.role == "tool"]
    assert refusal == (
        "Tool call refused by policy: a credential found in the arguments of send_email: "
        "GITHUB_TOKEN"
    )
    assert TOKEN not in result.state.to_json()
    assert leaked(stored.journal_bytes(), TOKEN) == []
    stored.deliver()
    assert leaked(stored.all_bytes(), TOKEN) == []
    in_chat, in_tool, guards = stored_arguments(stored.url, result.run_id)
    masked_body = "Your token is <GITHUB_TOKEN>. Thanks!"
    assert [a["body"] for a in in_chat + in_tool] == [masked_body, masked_body]
    decided = [
        (e.attributes[semconv.TETHER_CONTROL_HOOK], e.attributes[semconv.TETHER_DECISION])
        for e in guards
    ]
    assert decided == [("after_model", "modify"), ("before_tool", "block")]


async def test_escalate_pauses_with_the_pending_call_masked(tmp_path: Path) -> None:
    stored = StoredBytes(tmp_path)
    agent = mailer(stored.url, [{"guard": "pii", "channels": ["tool_args"], "action": "escalate"}])
    result = await agent.run("mail me")
    assert result.outcome == "escalated" and SENT == []
    (pending,) = result.state.pending_tool_calls
    assert pending.arguments["to"] == "<EMAIL_ADDRESS>"
    stored.deliver()
    assert leaked(stored.all_bytes(), EMAIL) == []


async def test_log_lets_the_arguments_through_unchanged(sqlite_url: str) -> None:
    agent = mailer(sqlite_url, [{"guard": "pii", "channels": ["tool_args"], "action": "log"}])
    result = await agent.run("mail me")
    assert result.outcome == "final_answer"
    assert SENT[0]["to"] == EMAIL
    _, _, guards = stored_arguments(sqlite_url, result.run_id)
    (event,) = guards
    assert event.attributes[semconv.TETHER_DECISION_REASON].startswith("logged: ")


async def test_rules_on_other_channels_leave_the_arguments_alone(sqlite_url: str) -> None:
    channels = ["user", "tool_output", "document", "output"]
    agent = mailer(sqlite_url, [{"guard": "pii", "channels": channels, "action": "mask"}])
    await agent.run("mail me")
    assert SENT[0]["to"] == EMAIL


async def test_a_call_made_by_a_run_scope_of_ones_own_is_judged_at_before_tool(
    tmp_path: Path,
) -> None:
    stored = StoredBytes(tmp_path)
    harness = Harness(
        tools=[send_email],
        controls=[PiiGuard("secrets", channels=["tool_args"], action="block")],
        trace=stored.url,
    )
    call = ToolCall(id="c1", name="send_email", arguments={"to": "me", "body": TOKEN})
    async with harness.open_run("go") as run:
        step = await run.tool_call(call)
        assert step.value is not None and step.value.content.startswith("Tool call refused")
        run.end(Outcome.FINAL_ANSWER, output="ok")
    assert SENT == []
    stored.deliver()
    assert leaked(stored.all_bytes(), TOKEN) == []
    _, in_tool, _ = stored_arguments(stored.url, run.run_id)
    assert in_tool == [{"to": "me", "body": "<GITHUB_TOKEN>"}]


def test_only_the_detectors_take_the_tool_args_channel() -> None:
    with pytest.raises(ValidationError, match="does not run on tool_args"):
        make_spec(
            guards={"rules": [{"guard": "deny_list", "terms": ["x"], "channels": ["tool_args"]}]}
        )


# -- the arguments, value by value ------------------------------------------------------------


def masking_stack() -> GuardStack:
    return GuardStack(
        GuardsPolicy.model_validate(
            {"guards": [{"guard": "pii", "action": "mask"}, {"guard": "secrets", "action": "mask"}]}
        )
    )


def test_values_are_masked_in_place_and_the_shape_is_kept() -> None:
    arguments = {
        "customer": {"email": EMAIL, "tier": "gold", "card_number": int(CARD.replace(" ", ""))},
        "notes": ["call me", f"or mail {EMAIL}"],
        EMAIL: "a key that is an address",
        "retries": 3,
        "urgent": True,
        "nothing": None,
    }
    verdict = check_arguments(masking_stack(), arguments)
    assert verdict.changed and verdict.action == "mask"
    assert verdict.arguments == {
        "customer": {"email": "<EMAIL_ADDRESS>", "tier": "gold", "card_number": "<CREDIT_CARD>"},
        "notes": ["call me", "or mail <EMAIL_ADDRESS>"],
        "<EMAIL_ADDRESS>": "a key that is an address",
        "retries": 3,
        "urgent": True,
        "nothing": None,
    }
    json.dumps(verdict.arguments)  # still JSON
    paths = {(f.path, f.part, f.kind) for f in verdict.findings}
    assert paths == {
        ("customer.email", "value", "EMAIL_ADDRESS"),
        ("customer.card_number", "value", "CREDIT_CARD"),
        ("notes[1]", "value", "EMAIL_ADDRESS"),
        ("", "key", "EMAIL_ADDRESS"),
    }


def test_a_path_is_clipped_only_once_its_keys_are_masked() -> None:
    """Paths were clipped to 200 characters as they were built, before the keys in them were
    masked: a key that is a token, standing at the clip, stayed in the evidence as its first
    half, which the masking no longer recognized."""
    token = "ghp_" + "Q7r8A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
    for pad in (170, 180, 190):
        verdict = check_arguments(masking_stack(), {"a" * pad: {token: {"note": EMAIL}}})
        paths = [f.path for f in verdict.findings]
        assert all(len(p) <= 200 and token[:8] not in p for p in paths), paths
        assert ("a" * pad + ".<GITHUB_TOKEN>.note")[:200] in paths
    # A key too long to spell out is named by its length.
    verdict = check_arguments(masking_stack(), {"k" * 300: {"note": EMAIL}})
    assert [f.path for f in verdict.findings] == ["[a key of 300 characters].note"]


def test_the_key_gives_a_value_its_context() -> None:
    # A bare word is no password; after its key it is one.
    verdict = check_arguments(masking_stack(), {"password": "Tr0ub4dor&3", "word": "Tr0ub4dor&3"})
    assert verdict.arguments == {"password": "<PASSWORD>", "word": "Tr0ub4dor&3"}


def test_arguments_that_are_not_json_are_judged_as_one_text() -> None:
    raw = {"__raw__": f'{{"to": "{EMAIL}", broken'}
    verdict = check_arguments(masking_stack(), raw)
    assert verdict.arguments == {"__raw__": '{"to": "<EMAIL_ADDRESS>", broken'}


def test_clean_arguments_are_the_same_object() -> None:
    arguments = {"query": "shipping times", "n": 5}
    verdict = check_arguments(masking_stack(), arguments)
    assert verdict.arguments is arguments and not verdict.changed and verdict.action == "allow"


def test_deep_nesting_is_judged_as_text_past_the_depth_limit() -> None:
    deep: Any = EMAIL
    for _ in range(5000):  # deeper than json.dumps or repr can go
        deep = {"d": deep}
    verdict = check_arguments(masking_stack(), deep)
    assert EMAIL not in json.dumps(verdict.arguments)
    assert "<EMAIL_ADDRESS>" in json.dumps(verdict.arguments)


def test_many_values_and_long_ones_are_judged_in_a_few_scans() -> None:
    many = {"items": [f"item {i}" for i in range(100_000)] + [EMAIL], "blob": "x " * 5_000_000}
    verdict = check_arguments(masking_stack(), many)
    assert verdict.arguments["items"][-1] == "<EMAIL_ADDRESS>"
    assert verdict.arguments["items"][:3] == ["item 0", "item 1", "item 2"]
    assert [(f.path, f.kind) for f in verdict.findings] == [("items[100000]", "EMAIL_ADDRESS")]


async def test_hash_gives_the_tool_the_label_the_user_channel_gives(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HASH_KEY_ENV, "tool-args-hash-key-0123456789")
    agent = mailer(sqlite_url, [{"guard": "pii", "action": "hash"}])
    result = await agent.run(f"I am {EMAIL}")
    (sent,) = SENT
    assert sent["to"].startswith("<EMAIL_ADDRESS:") and EMAIL not in json.dumps(sent)
    assert result.state.input == f"I am {sent['to']}"  # the same value, the same label
