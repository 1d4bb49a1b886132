"""Guards in spec files and shared policy files: what loads, what is refused when it loads
(naming the file and the line), and a policy shared by two agents."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakes.traces import trace_of
from tether import Agent
from tether.controls.guard_base import GUARD_NAME
from tether.core import SpecError
from tether.trace import semconv

SCRIPT = "steps: [{text: 'Our partner RivalShop has it cheaper.'}]\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def agent_file(folder: Path, guards: str, name: str = "agent.yaml") -> Path:
    write(folder, "script.yaml", SCRIPT)
    return write(
        folder,
        name,
        "name: shop\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        + textwrap.dedent(guards),
    )


def load_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        Agent.from_yaml(path, trace=False)
    return info.value.message


async def test_two_agents_share_one_policy_file(tmp_path: Path, sqlite_url: str) -> None:
    write(
        tmp_path,
        "policies/shop.yaml",
        """\
        guards:
          - guard: deny_list
            terms: [RivalShop]
            action: mask
        """,
    )
    results = []
    for name in ("a.yaml", "b.yaml"):
        spec = agent_file(
            tmp_path,
            """\
            guards:
              policy: policies/shop.yaml
              rules:
                - guard: deny_list
                  terms: [cheaper]
                  action: log
            """,
            name=name,
        )
        results.append(await Agent.from_yaml(spec, trace=sqlite_url).run("price?"))
    for result in results:
        assert result.output == "Our partner [removed] has it cheaper."
        _, _, events = trace_of(sqlite_url, result.run_id)
        names = [
            e.attributes[semconv.TETHER_CONTROL_NAME] for e in events if GUARD_NAME in e.attributes
        ]
        assert names == ["guard.deny_list", "guard.deny_list#2"]  # the policy's rules first


@pytest.mark.parametrize(
    ("rule", "line", "expected"),
    [
        (
            "- guard: injection\n  threshold: 0",
            3,
            "guards[0].threshold: Input should be greater than 0",
        ),
        (
            "- guard: injection\n  threshold: high",
            3,
            "guards[0].threshold: Input should be a valid number",
        ),
        (
            "- guard: injecton\n  action: block",
            2,
            "guards[0].guard: unknown guard 'injecton'; known guards:",
        ),
        (
            "- guard: injection\n  channels: [user, email]",
            3,
            "guards[0].channels[1]: Input should be",
        ),
        (
            "- guard: injection\n  channels: [output]",
            3,
            "guards[0].channels: the injection guard does not run on output",
        ),
        (
            "- guard: deny_list\n  patterns: ['[unclosed']",
            3,
            "guards[0].patterns[0]: the pattern is not a valid regular expression",
        ),
        (
            "- guard: deny_list\n  patterns: ['(\\w+\\s?)+$']",
            3,
            "guards[0].patterns[0]: the pattern repeats a group that is itself a repetition",
        ),
        (
            "- guard: deny_list\n  patterns: ['a{100000000}']",
            3,
            "guards[0].patterns[0]: the pattern repeats too much",
        ),
        (
            "- guard: deny_list\n  terms: [x]\n  threshold: 0.5",
            4,
            "guards[0].threshold: the deny_list guard gives no score",
        ),
        (
            "- guard: topics\n  allowed: {billing: []}",
            3,
            "guards[0].allowed: topic 'billing' has no words",
        ),
        (
            "- guard: injection\n  action: hash",
            3,
            "guards[0].action: the injection guard cannot hash",
        ),
        (
            "- guard: injection\n  acton: block",
            3,
            "guards[0].acton: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_policy_file_is_refused_naming_its_file_and_line(
    tmp_path: Path, rule: str, line: int, expected: str
) -> None:
    policy = write(tmp_path, "policy.yaml", "guards:\n" + textwrap.indent(rule, "  ") + "\n")
    spec = agent_file(tmp_path, "guards: {policy: policy.yaml}\n")
    message = load_error(spec)
    assert f"{policy}:{line}: {expected}" in message, message


def test_the_same_mistakes_in_the_spec_name_the_spec_line(tmp_path: Path) -> None:
    spec = agent_file(
        tmp_path,
        """\
        guards:
          rules:
            - guard: injection
              threshold: 2
        """,
    )
    assert f"{spec}:6: guards.rules[0].threshold: Input should be less than or equal to 1" in (
        load_error(spec)
    )


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    spec = agent_file(tmp_path, "guards: {policy: nowhere.yaml}\n")
    message = load_error(spec)
    assert f"{tmp_path / 'nowhere.yaml'}: file not found" in message


def test_a_policy_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "policy.yaml", "- guard: injection\n")
    spec = agent_file(tmp_path, "guards: {policy: policy.yaml}\n")
    assert "expected a mapping of fields, found a list" in load_error(spec)


PYTHON_GUARD_SPEC = """\
guards:
  rules:
    - guard: python
      function: checks.py:no_promises
"""


def test_a_python_guard_that_cannot_be_imported_names_the_spec_line(tmp_path: Path) -> None:
    write(tmp_path, "checks.py", "raise RuntimeError('no database')\n")
    spec = agent_file(tmp_path, PYTHON_GUARD_SPEC)
    message = load_error(spec)
    assert f"{spec}: guards.rules[0] (line 5): function 'checks.py:no_promises'" in message
    assert "RuntimeError: no database" in message


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("def no_promises(text, strict):\n    return True\n", "cannot be called with one text"),
        ("def no_promises():\n    return True\n", "cannot be called with one text"),
        ("async def no_promises(text):\n    yield True\n", "is a generator"),
    ],
)
def test_a_python_guard_that_cannot_take_a_text_names_the_spec_line(
    tmp_path: Path, source: str, said: str
) -> None:
    """A function of the wrong shape loaded, and every request then failed closed with a
    TypeError: the mistake showed only at request time."""
    write(tmp_path, "checks.py", source)
    spec = agent_file(tmp_path, PYTHON_GUARD_SPEC)
    message = load_error(spec)
    assert f"{spec}: guards.rules[0] (line 5): " in message and said in message


def test_documents_must_be_tools_of_the_agent(tmp_path: Path) -> None:
    spec = agent_file(tmp_path, "guards: {documents: [fetch_page]}\n")
    assert "documents[0]: 'fetch_page' is not a tool of this agent" in load_error(spec)


def test_tether_validate_reports_a_bad_policy_without_a_traceback(tmp_path: Path) -> None:
    write(tmp_path, "policy.yaml", "guards:\n  - guard: injection\n    threshold: 7\n")
    spec = agent_file(tmp_path, "guards: {policy: policy.yaml}\n")
    done = subprocess.run(
        [sys.executable, "-m", "tether", "validate", str(spec), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    error = json.loads(done.stdout)
    assert f"{tmp_path / 'policy.yaml'}:3: guards[0].threshold" in error["error"]
    assert error["problems"] == [
        {
            "file": str(tmp_path / "policy.yaml"),
            "line": 3,
            "field": "guards[0].threshold",
            "message": "Input should be less than or equal to 1",
        }
    ]
    assert "Traceback" not in done.stderr


def test_tether_validate_accepts_a_good_policy(tmp_path: Path) -> None:
    write(tmp_path, "policy.yaml", "guards:\n  - guard: injection\n    channels: [user]\n")
    spec = agent_file(tmp_path, "guards: {policy: policy.yaml, spotlight: delimit}\n")
    done = subprocess.run(
        [sys.executable, "-m", "tether", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_configuration_examples_in_the_docs_load() -> None:
    import re

    import yaml

    from tether.spec import GuardsConfig, GuardsPolicy, OutputConfig

    docs = (Path(__file__).parents[1] / "docs" / "guards.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.S)
    agent, policy = (yaml.safe_load(b) for b in blocks[:2])
    GuardsConfig.model_validate(agent["guards"])
    OutputConfig.model_validate(agent["output"])
    GuardsPolicy.model_validate(policy)


def test_an_empty_guards_section_keeps_the_version(tmp_path: Path) -> None:
    from tether.spec import load_spec

    plain = agent_file(tmp_path, "", name="plain.yaml")
    empty = agent_file(tmp_path, "guards: {rules: [], spotlight: 'off'}\n", name="empty.yaml")
    guarded = agent_file(tmp_path, "guards: {spotlight: delimit}\n", name="guarded.yaml")
    assert load_spec(plain).version == load_spec(empty).version
    assert load_spec(guarded).version != load_spec(plain).version
