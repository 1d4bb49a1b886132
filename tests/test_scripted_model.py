"""``ScriptedModel``: deterministic, stateless replies chosen from the conversation itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tether.core import ProviderError, SpecError
from tether.providers import Message, Model, ModelRequest, ModelResponse, ToolCall
from tether.providers.scripted import Script, ScriptedModel, ScriptRule, ScriptStep

EXAMPLE_SCRIPT = (
    Path(__file__).resolve().parents[1] / "examples" / "support" / "support.script.yaml"
)


def user(text: str) -> Message:
    return Message(role="user", content=text)


def reply(response: ModelResponse) -> Message:
    return response.as_message()


def result(name: str, content: Any, call_id: str = "c") -> Message:
    text = content if isinstance(content, str) else json.dumps(content)
    return Message(role="tool", name=name, content=text, tool_call_id=call_id)


async def ask(model: ScriptedModel, *messages: Message) -> ModelResponse:
    return await model.complete(ModelRequest(messages=list(messages)))


THREE_STEPS = [
    {"tool_calls": [{"name": "search", "arguments": {"q": "{input}"}}]},
    {"tool_calls": [{"name": "fetch", "arguments": {"id": 1}}, {"name": "fetch", "arguments": {}}]},
    {"text": "done: {result:fetch}"},
]


# --- step selection ----------------------------------------------------------------------------


async def test_steps_follow_assistant_turns_since_the_user_message() -> None:
    model = ScriptedModel(THREE_STEPS)
    system = Message(role="system", content="be good")
    first = await ask(model, system, user("boots"))
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("search", {"q": "boots"})]
    assert first.finish_reason == "tool_calls"

    history = [system, user("boots"), reply(first), result("search", "3 hits")]
    second = await ask(model, *history)
    assert [c.name for c in second.tool_calls] == ["fetch", "fetch"]
    assert [c.id for c in second.tool_calls] == ["call_1_0", "call_1_1"]

    history += [reply(second), result("fetch", "A"), result("fetch", "B")]
    third = await ask(model, *history)
    assert third.tool_calls == []
    assert third.content == "done: B"  # the newest result of that tool
    assert third.finish_reason == "stop"


async def test_last_step_repeats_when_the_steps_run_out() -> None:
    model = ScriptedModel([{"text": "one"}, {"text": "last"}])
    history = [user("hi")]
    contents = []
    for _ in range(4):
        response = await ask(model, *history)
        contents.append(response.content)
        history.append(reply(response))
    assert contents == ["one", "last", "last", "last"]


async def test_a_new_user_message_starts_over() -> None:
    model = ScriptedModel([{"text": "first {input}"}, {"text": "second {input}"}])
    a = await ask(model, user("x"))
    b = await ask(model, user("x"), reply(a))
    c = await ask(model, user("x"), reply(a), reply(b), user("y"))
    assert (a.content, b.content, c.content) == ("first x", "second x", "first y")


async def test_no_user_message_is_turn_zero_with_empty_input() -> None:
    model = ScriptedModel([{"text": "[{input}]"}, {"text": "later"}])
    response = await ask(model, Message(role="system", content="sys"))
    assert response.content == "[]"


async def test_same_request_twice_gives_the_same_reply() -> None:
    model = ScriptedModel(THREE_STEPS)
    request = ModelRequest(messages=[user("boots")])
    first = await model.complete(request)
    second = await model.complete(request)
    assert first == second
    later = ModelRequest(messages=[user("boots"), reply(first), result("search", "x")])
    assert await model.complete(later) == await model.complete(later)
    assert await model.complete(request) == first


async def test_interleaved_conversations_do_not_interfere() -> None:
    model = ScriptedModel(
        Script(
            rules=[
                ScriptRule(
                    when="alpha",
                    steps=[ScriptStep(text="a1"), ScriptStep(text="a2"), ScriptStep(text="a3")],
                ),
                ScriptRule(when="beta", steps=[ScriptStep(text="b1"), ScriptStep(text="b2")]),
            ]
        )
    )
    a: list[Message] = [user("alpha")]
    b: list[Message] = [user("beta")]
    seen = []
    for conversation in (a, b, a, a, b, b):
        response = await ask(model, *conversation)
        seen.append(response.content)
        conversation.append(reply(response))
    assert seen == ["a1", "b1", "a2", "a3", "b2", "b2"]


# --- rules and placeholders --------------------------------------------------------------------

RULES = Script.model_validate(
    {
        "rules": [
            {
                "when": r"where is my order (?P<order>\d+)",
                "steps": [
                    {
                        "tool_calls": [
                            {"name": "order_status", "arguments": {"order_id": "{order}"}}
                        ]
                    },
                    {"text": "Order {order}: {result:order_status:status}"},
                ],
            },
            {"when": "order", "steps": [{"text": "which order? ({input})"}]},
            {
                "when": r"refund(?: for (?P<reason>\w+))?",
                "steps": [{"text": "refund because {reason}"}],
            },
        ],
        "steps": [{"text": "default for {input}"}],
    }
)


async def test_rules_match_case_insensitively_with_named_groups() -> None:
    model = ScriptedModel(RULES)
    first = await ask(model, user("Hi! WHERE IS MY ORDER 1042?"))
    assert first.tool_calls == [
        ToolCall(id="call_0_0", name="order_status", arguments={"order_id": "1042"})
    ]
    history = [
        user("Hi! WHERE IS MY ORDER 1042?"),
        reply(first),
        result("order_status", {"status": "shipped"}),
    ]
    assert (await ask(model, *history)).content == "Order 1042: shipped"


async def test_first_matching_rule_wins_and_default_steps_catch_the_rest() -> None:
    model = ScriptedModel(RULES)
    assert (await ask(model, user("my Order is late"))).content == "which order? (my Order is late)"
    assert (await ask(model, user("hello there"))).content == "default for hello there"


async def test_group_that_did_not_participate_is_empty() -> None:
    model = ScriptedModel(RULES)
    assert (await ask(model, user("refund for damage"))).content == "refund because damage"
    assert (await ask(model, user("a refund please"))).content == "refund because "


async def test_rule_is_chosen_from_the_latest_user_message() -> None:
    model = ScriptedModel(RULES)
    history = [user("where is my order 7"), Message(role="assistant", content="..."), user("hi")]
    assert (await ask(model, *history)).content == "default for hi"


async def test_placeholders_fill_nested_arguments_and_keep_other_values() -> None:
    model = ScriptedModel(
        [
            {
                "tool_calls": [
                    {
                        "name": "t",
                        "arguments": {
                            "text": "<{input}>",
                            "nested": {"list": ["{input}", 3, True, None], "n": 1001},
                            "missing": "{result:other}",
                            "json": '{"a": 1}',
                        },
                    }
                ]
            }
        ]
    )
    response = await ask(model, user("hello"))
    assert response.tool_calls[0].arguments == {
        "text": "<hello>",
        "nested": {"list": ["hello", 3, True, None], "n": 1001},
        "missing": "(no result from other)",
        "json": '{"a": 1}',
    }


async def test_result_field_placeholders() -> None:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "order", "arguments": {}}]},
            {
                "text": (
                    "{result:order:status}|{result:order:eta.day}|{result:order:eta}|"
                    "{result:order:count}|{result:order:ok}|{result:order:eta.missing}|"
                    "{result:order:nope}|{result:plain:field}|{result:plain}|{result:order}"
                )
            },
        ]
    )
    first = await ask(model, user("go"))
    order = {"status": "shipped", "eta": {"day": "Friday"}, "count": 3, "ok": True}
    history = [user("go"), reply(first), result("order", order), result("plain", "not json")]
    text = (await ask(model, *history)).content
    assert text.split("|") == [
        "shipped",
        "Friday",
        '{"day": "Friday"}',
        "3",
        "true",
        "(no eta.missing in the result of order)",
        "(no nope in the result of order)",
        "(no field in the result of plain)",
        "not json",
        json.dumps(order),
    ]


async def test_results_before_the_user_message_are_not_used() -> None:
    model = ScriptedModel([{"text": "r={result:t}"}])
    history = [user("one"), result("t", "old"), Message(role="assistant", content="x"), user("two")]
    assert (await ask(model, *history)).content == "r=(no result from t)"


# --- errors ------------------------------------------------------------------------------------


async def test_error_steps_raise_a_retryable_provider_error() -> None:
    model = ScriptedModel([{"text": "ok"}, {"error": "rate limited"}])
    first = await ask(model, user("x"))
    with pytest.raises(ProviderError, match="scripted model error: rate limited") as info:
        await ask(model, user("x"), reply(first))
    assert info.value.retryable is True


async def test_no_rule_matches_and_no_default_steps() -> None:
    model = ScriptedModel(Script(rules=[ScriptRule(when="^refund", steps=[ScriptStep(text="ok")])]))
    assert (await ask(model, user("Refund now"))).content == "ok"
    with pytest.raises(ProviderError) as info:
        await ask(model, user("where is my refund"))
    assert "no rule matches the input 'where is my refund'" in info.value.message
    assert "no default 'steps'" in info.value.message
    assert info.value.hint is not None
    assert "catch-all" in info.value.hint
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ({}, "a step needs 'text', 'tool_calls' or 'error'"),
        ({"error": "x", "text": "y"}, "an 'error' step cannot also reply"),
        ({"txt": "typo"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_steps_in_python(step: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ScriptedModel([step])


def test_an_empty_script_is_rejected() -> None:
    with pytest.raises(ValueError, match="a script needs 'steps' or 'rules'"):
        Script()


# --- from_yaml ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bot.script.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def yaml_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        ScriptedModel.from_yaml(path)
    assert str(path) in str(info.value)
    return str(info.value)


async def test_from_yaml_loads_the_example_script() -> None:
    model = ScriptedModel.from_yaml(EXAMPLE_SCRIPT, name="gpt-4.1-mini")
    assert isinstance(model, Model)
    assert (model.provider, model.name) == ("scripted", "gpt-4.1-mini")
    question = user("Where is my order 1042?")
    first = await ask(model, question)
    assert [(c.name, c.arguments) for c in first.tool_calls] == [
        ("order_status", {"order_id": "1042"}),
        ("kb_lookup", {"query": "shipping"}),
    ]
    status = {"status": "in transit", "carrier": "UPS", "eta": "2025-06-02"}
    second = await ask(
        model,
        question,
        reply(first),
        result("order_status", status, "call_0_0"),
        result("kb_lookup", "Standard shipping takes 3-5 business days.", "call_0_1"),
    )
    assert second.content == (
        "Your order 1042 is in transit with UPS (expected 2025-06-02). "
        "Standard shipping takes 3-5 business days."
    )
    assert second.model == "gpt-4.1-mini"
    fallback = await ask(model, user("hello"))
    assert fallback.content == "I can help with orders, shipping and returns. What do you need?"


def test_from_yaml_step_with_nothing(tmp_path: Path) -> None:
    text = "steps:\n  - text: hi\n  - {}\n"
    message = yaml_error(tmp_path, text)
    assert "bot.script.yaml:3: steps[1]:" in message
    assert "a step needs 'text', 'tool_calls' or 'error'" in message


def test_from_yaml_bad_regex(tmp_path: Path) -> None:
    text = (
        "rules:\n"
        "  - when: hi\n"
        "    steps: [{text: a}]\n"
        "  - when: '(unclosed'\n"
        "    steps: [{text: b}]\n"
    )
    message = yaml_error(tmp_path, text)
    assert "bot.script.yaml:4: rules[1].when:" in message
    assert "'when' is not a valid regular expression" in message


def test_from_yaml_nested_rule_step_error(tmp_path: Path) -> None:
    text = (
        "rules:\n"
        "  - when: x\n"
        "    steps:\n"
        "      - text: ok\n"
        "      - tool_calls:\n"
        "          - {name: t, argumens: {}}\n"
    )
    message = yaml_error(tmp_path, text)
    assert "bot.script.yaml:6: rules[0].steps[1].tool_calls[0].argumens: Extra inputs" in message


def test_from_yaml_rule_without_steps(tmp_path: Path) -> None:
    message = yaml_error(tmp_path, "rules:\n  - when: x\n    steps: []\n")
    assert "bot.script.yaml:3: rules[0].steps:" in message


def test_from_yaml_empty_and_malformed(tmp_path: Path) -> None:
    assert "expected a mapping of fields, found empty" in yaml_error(tmp_path, "")
    assert "a script needs 'steps' or 'rules'" in yaml_error(tmp_path, "rules: []\n")
    assert "bot.script.yaml:3:1: malformed YAML" in yaml_error(tmp_path, "steps:\n- text: [a\n")


def test_from_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        ScriptedModel.from_yaml(tmp_path / "nope.yaml")


# --- usage and finish reasons ------------------------------------------------------------------


async def test_usage_is_deterministic_and_non_zero() -> None:
    model = ScriptedModel([{"text": "{input}"}])
    short = await ask(model, user("hi"))
    again = await ask(model, user("hi"))
    long = await ask(model, user("hi " * 400))
    assert short.usage == again.usage
    assert short.usage.input_tokens > 0
    assert short.usage.output_tokens > 0
    assert long.usage.input_tokens > short.usage.input_tokens
    assert long.usage.output_tokens > short.usage.output_tokens
    assert long.usage.total_tokens == long.usage.input_tokens + long.usage.output_tokens


async def test_tool_call_arguments_count_as_output() -> None:
    model = ScriptedModel([{"tool_calls": [{"name": "t", "arguments": {"q": "{input}"}}]}])
    small = await ask(model, user("a"))
    big = await ask(model, user("a" * 400))
    assert big.usage.output_tokens > small.usage.output_tokens > 0


async def test_finish_reasons() -> None:
    model = ScriptedModel(
        [
            {"text": "let me check", "tool_calls": [{"name": "t"}]},
            {"tool_calls": [{"name": "t", "arguments": {"x": 1}}]},
            {"text": "answer"},
        ]
    )
    first = await ask(model, user("q"))
    assert (first.finish_reason, first.content, len(first.tool_calls)) == (
        "tool_calls",
        "let me check",
        1,
    )
    second = await ask(model, user("q"), reply(first))
    assert (second.finish_reason, second.content) == ("tool_calls", "")
    third = await ask(model, user("q"), reply(first), reply(second))
    assert (third.finish_reason, third.content, third.tool_calls) == ("stop", "answer", [])
    assert third.model == "scripted"


# --- template fields: unknown names are refused, missing results are explicit ------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "steps: [{text: 'Hi {nmae}'}]\n",
            "bot.script.yaml:1: steps: steps[0]: unknown template field {nmae}; use {input}, "
            "{result:TOOL}, {result:TOOL:field} (top-level steps have no named groups",
        ),
        (
            "rules:\n"
            "  - when: 'order (?P<order>\\d+)'\n"
            "    steps:\n"
            "      - text: ok\n"
            "      - tool_calls: [{name: t, arguments: {id: '{ordr}'}}]\n",
            "bot.script.yaml:3: rules[0].steps: steps[1]: unknown template field {ordr}; use "
            "{input}, {result:TOOL}, {result:TOOL:field} or a named group of 'when': {order}",
        ),
        (
            "rules:\n  - when: hi\n    steps: [{text: '{order}'}]\n",
            "('when' has no named groups (?P<NAME>...))",
        ),
    ],
)
def test_unknown_template_fields_are_refused_at_load(
    tmp_path: Path, text: str, problem: str
) -> None:
    assert problem in yaml_error(tmp_path, text)


def test_unknown_template_fields_are_refused_in_python() -> None:
    with pytest.raises(ValueError, match=r"unknown template field \{inptu\}"):
        ScriptedModel([{"text": "{inptu}"}])


def test_plain_braces_are_not_template_fields() -> None:
    model = ScriptedModel([{"text": '{"a": 1} { } {1} {input}'}])
    assert model.script.steps[0].text == '{"a": 1} { } {1} {input}'


async def test_a_failed_tool_renders_an_explicit_marker() -> None:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "order_status", "arguments": {"id": 42}}]},
            {"text": "Order 42 is {result:order_status:status}. {result:kb}"},
        ]
    )
    first = await ask(model, user("go"))
    failed = result("order_status", "tool 'order_status': GET /orders/42: HTTP 500: oops")
    answer = (await ask(model, user("go"), reply(first), failed)).content
    assert answer == "Order 42 is (no status in the result of order_status). (no result from kb)"


def test_alias_bomb_in_a_script_is_refused(tmp_path: Path) -> None:
    text = (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "steps: [{text: hi}]\n"
    )
    message = yaml_error(tmp_path, text)
    assert (
        "bot.script.yaml:1:4: YAML anchors (&name) and aliases (*name) are not supported" in message
    )


async def test_each_reply_has_its_own_arguments_and_follows_a_step_changed_in_place() -> None:
    """Each reply gets its own arguments (a nested value changed in one reply is not changed
    in the next), its usage counts them, and a step changed in place afterwards replies as it
    now says."""
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "fetch", "arguments": {"ids": [1, 2], "opts": {"x": 1}}}]},
            {"text": "done"},
        ]
    )
    first = await ask(model, user("go"))
    first.tool_calls[0].arguments["ids"].append(3)
    first.tool_calls[0].arguments["opts"]["x"] = 99
    second = await ask(model, user("go"))
    assert second.tool_calls[0].arguments == {"ids": [1, 2], "opts": {"x": 1}}
    assert second.tool_calls[0].id == "call_0_0"
    assert second.usage.output_tokens == len('{"ids": [1, 2], "opts": {"x": 1}}') // 4 + 1
    assert (await ask(model, user("go"), reply(second))).content == "done"

    model.script.steps[1].text = "now: {input}"  # a field now: filled in
    assert (await ask(model, user("go"), reply(second))).content == "now: go"
    model.script.steps[0].tool_calls = []
    model.script.steps[0].text = "plain"
    assert (await ask(model, user("go"))).content == "plain"
