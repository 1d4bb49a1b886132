"""The detector guards (pii, secrets) wired into real runs: masked on every channel, the
model's own replies included, and the stored trace — the SQLite file, its WAL and the journal,
read as bytes — never holds the raw values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.specs import make_spec
from fakes.traces import trace_of
from tether import Agent, ScriptedModel, tool
from tether.controls import PiiGuard
from tether.controls.guard_base import GUARD_EVIDENCE, GUARD_NAME
from tether.core import SpecError
from tether.guards import Detection, GuardType, registry
from tether.guards.redaction import HASH_KEY_ENV
from tether.trace import semconv, writer_for

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
PHONE = "+1 415 555 0199"
KEY = "test-hash-key-0123456789abcdef"


@tool(side_effects="read")
def customer(name: str) -> str:
    """A customer's record."""
    return json.dumps({"name": name, "phone": PHONE, "email": EMAIL, "tier": "gold"})


STEPS: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "customer", "arguments": {"name": "Jane"}}]},
    {"text": f"Thanks! I noted {EMAIL} and the card {CARD} for the refund."},
]


def stored_bytes(root: Path) -> bytes:
    """Every byte under ``root`` (the store, its WAL, the journal, checkpoints)."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def raw_values_in(blob: bytes) -> list[str]:
    found = []
    for value in (EMAIL, CARD, CARD.replace(" ", ""), PHONE, "555 0199"):
        for encoding in ("utf-8", "utf-16-le"):
            if value.encode(encoding) in blob:
                found.append(value)
    return found


async def test_masked_on_every_channel_and_never_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'tether.db'}"
    (tmp_path / "store").mkdir()
    agent = Agent(
        make_spec(
            tools=[{"name": "customer", "side_effects": "read"}],
            guards={"rules": [{"guard": "pii", "action": "mask"}]},
        ),
        model=ScriptedModel(STEPS),
        tools=[customer],
        trace=url,
    )
    result = await agent.run(f"Refund my order to card {CARD}, mail me at {EMAIL}")

    assert result.outcome == "final_answer"
    assert (
        result.output
        == "Thanks! I noted <EMAIL_ADDRESS> and the card <CREDIT_CARD> for the refund."
    )
    user, tool_message = (m.content for m in result.state.messages if m.role in ("user", "tool"))
    assert user == "Refund my order to card <CREDIT_CARD>, mail me at <EMAIL_ADDRESS>"
    assert EMAIL not in tool_message and "<PHONE_NUMBER>" in tool_message
    run, spans, events = trace_of(url, result.run_id)
    assert run.input == user
    last_reply = json.dumps([s for s in spans if s.kind == "model"][-1].attributes)
    assert "<CREDIT_CARD>" in last_reply  # the model's reply as the span keeps it: masked
    verdicts = [e for e in events if e.attributes.get(GUARD_NAME) == "pii"]
    hooks = {
        (e.attributes[semconv.TETHER_CONTROL_HOOK], e.attributes[semconv.TETHER_DECISION])
        for e in verdicts
    }
    assert {("on_input", "modify"), ("after_tool", "modify"), ("after_model", "modify")} <= hooks
    for event in verdicts:  # kinds and places, never values
        for item in event.attributes.get(GUARD_EVIDENCE, []):
            assert set(item) == {"kind", "start", "end", "score"}
    writer_for(url).flush()
    assert raw_values_in(stored_bytes(tmp_path)) == []


async def test_hash_links_values_across_runs_without_storing_them(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HASH_KEY_ENV, KEY)
    agent = Agent(
        make_spec(guards={"rules": [{"guard": "pii", "channels": ["user"], "action": "hash"}]}),
        model=ScriptedModel([{"text": "ok"}]),
        trace=sqlite_url,
    )
    first = await agent.run(f"I am {EMAIL}")
    second = await agent.run(f"again, {EMAIL.upper()}")
    label = first.state.input.removeprefix("I am ")
    assert label.startswith("<EMAIL_ADDRESS:") and EMAIL not in label
    assert second.state.input == f"again, {label}"


def test_hash_without_a_key_is_refused_when_the_agent_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)
    (tmp_path / "policy.yaml").write_text("guards:\n  - guard: secrets\n    action: hash\n")
    (tmp_path / "script.yaml").write_text("steps: [{text: hi}]\n")
    (tmp_path / "agent.yaml").write_text(
        "name: a\nmodel: {provider: scripted, name: m, script: script.yaml}\n"
        "guards: {policy: policy.yaml}\n"
    )
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(tmp_path / "agent.yaml", trace=False)
    assert f"{tmp_path / 'policy.yaml'}:3: " in info.value.message
    assert HASH_KEY_ENV in info.value.message


async def test_a_secret_in_the_input_blocks_and_is_not_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'tether.db'}"
    (tmp_path / "store").mkdir()
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    agent = Agent(
        make_spec(guards={"rules": [{"guard": "secrets", "channels": ["user"]}]}),
        model=ScriptedModel([{"text": "never"}]),
        trace=url,
    )
    result = await agent.run(f"my token is {token}, fix my repo")
    assert result.outcome == "blocked" and result.state.turns == 0
    run, _, _ = trace_of(url, result.run_id)
    assert token not in (run.input or "") and "<GITHUB_TOKEN>" in (run.input or "")
    writer_for(url).flush()
    assert token.encode() not in stored_bytes(tmp_path)


class _Broken:
    """A detector whose model file is missing."""

    name = "broken"

    def detect(self, text: str) -> Detection:
        raise RuntimeError("detector crashed")


@pytest.fixture
def broken_guard() -> Iterator[None]:
    before = registry.guard_types()
    registry.register_guard(GuardType("broken", lambda kinds: _Broken(), None, True, "mask", False))
    yield
    registry._GUARDS.clear()
    registry._GUARDS.update(before)


async def test_a_failing_detector_fails_closed(broken_guard: None, sqlite_url: str) -> None:
    agent = Agent(
        make_spec(guards={"rules": [{"guard": "broken", "channels": ["output"]}]}),
        model=ScriptedModel([{"text": f"mail {EMAIL}"}]),
        trace=sqlite_url,
    )
    result = await agent.run("hi")
    assert result.outcome == "control_error"
    assert EMAIL not in result.output
    assert "broken: RuntimeError: detector crashed" in (result.stop_reason or "")


async def test_without_the_guard_the_values_are_stored(tmp_path: Path) -> None:
    # The check above can fail: the same run without the guard leaves the values in the files.
    url = f"sqlite:///{tmp_path / 'store' / 'tether.db'}"
    (tmp_path / "store").mkdir()
    agent = Agent(
        make_spec(tools=[{"name": "customer", "side_effects": "read"}]),
        model=ScriptedModel(STEPS),
        tools=[customer],
        trace=url,
    )
    await agent.run(f"Refund my order to card {CARD}, mail me at {EMAIL}")
    writer_for(url).flush()
    assert set(raw_values_in(stored_bytes(tmp_path))) >= {EMAIL, CARD, PHONE}


def test_unknown_kinds_and_guards_from_python_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown pii kind"):
        PiiGuard(kinds=["PASSPORT"])
    with pytest.raises(ValueError, match="unknown guard 'antivirus'"):
        PiiGuard("antivirus")
