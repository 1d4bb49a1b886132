"""What README.md and docs/*.md show a user holds for the code: every YAML snippet of an agent
spec (or of a policy file agents point at) loads, every ``TETHER_*`` variable the code reads is
documented, and every field of ``AgentSpec`` is named in the docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from tether import AgentSpec
from tether.runtime import check_spec

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = "steps: [{text: hi}]\n"
CEDAR = '@id("{name}")\npermit(principal, action, resource);\n'


def _yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for match in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 1
            blocks.append((f"{doc.name}:{line}", match.group(1)))
    return blocks


def _spec_blocks() -> list[tuple[str, str]]:
    """The blocks whose keys are all fields of ``AgentSpec``: specs or parts of one, and policy
    files (their one key, ``guards`` or ``budgets``, is a spec field too)."""
    fields = set(AgentSpec.model_fields)
    return [
        (where, block)
        for where, block in _yaml_blocks()
        if isinstance(data := yaml.safe_load(block), dict) and set(data) <= fields
    ]


def _stub(path: Path, content: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _python_stub(base: Path, reference: str) -> None:
    """A module for ``file.py:function`` defining that function (appended to)."""
    file, _, function = reference.partition(":")
    path = base / file
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as module:
        module.write(f"\ndef {function}(query: str) -> str:\n    return query\n")


def _lay_out(agent_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write the files the snippet ``data`` names next to it, and complete it into a spec:
    a name and a model where it has none, and a tool for each name its guards or loop breaker
    refer to that it does not declare (a snippet of one section shows no tools)."""
    data = dict(data)
    data.setdefault("name", "snippet")
    data.setdefault("model", {"provider": "scripted", "name": "gpt-4.1-mini", "script": "s.yaml"})
    for model in [data["model"], *data.get("fallback_models", [])]:
        if model.get("script"):
            _stub(agent_dir / model["script"], SCRIPT)
    tools = data.setdefault("tools", [])
    for tool in tools:
        if "function" in tool and ".py:" in tool["function"]:
            _python_stub(agent_dir, tool["function"])
    guards = data.get("guards")
    if isinstance(guards, list):  # a guards policy file: point a spec at it
        (agent_dir / "policy.yaml").write_text(yaml.safe_dump({"guards": guards}))
        data["guards"] = guards = {"policy": "policy.yaml"}
    if isinstance(guards, dict):
        if guards.get("policy"):
            _stub(agent_dir / guards["policy"], "guards: []\n")
        for rule in guards.get("rules", []):
            if rule.get("guard") == "python" and ".py:" in rule.get("function", ""):
                _python_stub(agent_dir, rule["function"])
    named = {t["name"] for t in tools}
    referenced = list((guards or {}).get("documents", []) if isinstance(guards, dict) else [])
    referenced += (data.get("loop_breaker") or {}).get("exempt_tools", [])
    for name in dict.fromkeys(referenced):
        if name not in named:
            _python_stub(agent_dir, f"snippet_tools.py:{name.replace('-', '_')}")
            tools.append({"name": name, "function": f"snippet_tools.py:{name.replace('-', '_')}"})
    output = data.get("output") or {}
    if isinstance(output.get("json_schema"), str):
        _stub(agent_dir / output["json_schema"], '{"type": "string"}')
    authorization = data.get("authorization") or {}
    if authorization and not tools:  # Cedar validates the policies against the tools' actions
        _python_stub(agent_dir, "snippet_tools.py:lookup")
        tools.append({"name": "lookup", "function": "snippet_tools.py:lookup"})
    policies = authorization.get("policies", [])
    for policy in [policies] if isinstance(policies, str) else policies:
        _stub(agent_dir / policy, CEDAR.format(name=Path(policy).stem))
    budgets = data.get("budgets") or {}
    if budgets.get("policy"):
        _stub(agent_dir / budgets["policy"], "budgets:\n  limits: [{scope: run, usd: 1}]\n")
    return data


@pytest.mark.parametrize("where,block", [pytest.param(w, b, id=w) for w, b in _spec_blocks()])
def test_a_documented_spec_snippet_loads(
    where: str, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDER_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TETHER_GUARD_HASH_KEY", "a key of sixteen characters or more")
    agent_dir = tmp_path / "project" / "agent"
    agent_dir.mkdir(parents=True)
    spec = _lay_out(agent_dir, yaml.safe_load(block))
    path = agent_dir / "agent.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    check = check_spec(path)
    assert check.spec.name == spec["name"], where


def test_every_spec_snippet_kind_is_covered() -> None:
    """The snippets above include the README's annotated spec and the policy files of
    guards.md: a change to how blocks are found must not quietly test nothing."""
    where = [w for w, _ in _spec_blocks()]
    assert "README.md:81" in where or any(w.startswith("README.md") for w in where)
    assert sum(w.startswith("guards.md") for w in where) >= 3
    assert any(w.startswith("budgets.md") for w in where)


def _docs_text() -> str:
    return "\n".join(doc.read_text() for doc in DOCS if doc.name != "benchmarks.md")


def test_every_tether_variable_the_code_reads_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "tether").rglob("*.py"))
    read = set(re.findall(r"[\"'](TETHER_[A-Z0-9_]+)[\"']", source))
    assert read, "no TETHER_* variable found in src: the pattern is wrong"
    docs = _docs_text()
    assert sorted(v for v in read if v not in docs) == []


def test_every_documented_tether_variable_is_read_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "tether").rglob("*.py"))
    documented = set(re.findall(r"\b(TETHER_[A-Z0-9_]+)\b", _docs_text()))
    assert sorted(v for v in documented if v not in source) == []


def _spec_fields(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        found[f"{prefix}{key}"] = key
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found.update(_spec_fields(annotation, f"{prefix}{key}."))
            stack.extend(get_args(annotation))
    return found


def test_every_spec_field_is_named_in_the_docs() -> None:
    docs = _docs_text()
    missing = [
        path
        for path, key in _spec_fields(AgentSpec).items()
        if not re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", docs)
    ]
    assert missing == []
