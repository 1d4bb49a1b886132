"""The CLI through its real entry points: click in-process, and the console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tether.cli import cli

EXAMPLE = Path(__file__).parents[1] / "examples" / "support" / "agent.yaml"


def write_agent(tmp_path: Path, script: str, extra: str = "") -> Path:
    (tmp_path / "script.yaml").write_text(script)
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: cli-agent\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n" + extra
    )
    return spec


def invoke(*args: str, db: str | None = None) -> tuple[int, str]:
    """Exit code and output; with ``--json``, stdout alone (so a stray log line on stderr
    cannot break the JSON)."""
    runner = CliRunner()
    full = ["--database-url", db, *args] if db else list(args)
    result = runner.invoke(cli, full, catch_exceptions=False)
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_validate_ok_text_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_URL", "http://127.0.0.1:9")
    code, out = invoke("validate", str(EXAMPLE))
    assert code == 0 and "agent support version" in out and "order_status" in out
    code, out = invoke("validate", str(EXAMPLE), "--json")
    info = json.loads(out)
    assert info["valid"] and info["agent"] == "support" and len(info["version"]) == 16
    assert {t["name"] for t in info["tools"]} == {"kb_lookup", "order_status"}
    assert info["loop_breaker"] == {"max_repeats": 3, "exempt_tools": []}


def test_validate_reports_file_line_and_field(tmp_path: Path) -> None:
    spec = write_agent(tmp_path, "steps: [{text: hi}]\n", "limits:\n  max_turns: 0\n")
    code, out = invoke("validate", str(spec))
    assert code == 1
    assert f"{spec}:4: limits.max_turns" in out
    assert "Traceback" not in out


def test_validate_malformed_yaml(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nmodel: [unclosed\n")
    code, out = invoke("validate", str(spec))
    assert code == 1 and "malformed YAML" in out and f"{spec}:" in out


def test_run_prints_answer_and_exit_codes(tmp_path: Path, sqlite_url: str) -> None:
    spec = write_agent(
        tmp_path,
        "rules:\n  - when: loop\n    steps: [{tool_calls: [{name: echo, arguments: {t: a}}]}]\n"
        "steps: [{text: 'hello {input}'}]\n",
        "tools:\n  - name: echo\n    function: tools.py:echo\n",
    )
    (tmp_path / "tools.py").write_text("def echo(t: str) -> str:\n    return t\n")
    code, out = invoke("run", str(spec), "--input", "bob", "--json", db=sqlite_url)
    assert code == 0
    data = json.loads(out)
    assert data["output"] == "hello bob" and data["outcome"] == "final_answer"
    assert data["usage"]["total_tokens"] > 0 and data["cost_usd"] > 0
    trace_id = data["trace_id"]

    code, out = invoke("run", str(spec), "-i", "loop please", db=sqlite_url)
    assert code == 3 and "loop_detected" in out
    # The command it suggests shows this run (by its run id).
    suggested = re.search(r"traces show ([0-9a-f]{16})\b", out)
    assert suggested, out
    code, shown = invoke("traces", "show", suggested[1], "--json", db=sqlite_url)
    assert code == 0 and json.loads(shown)["run"]["input"] == "loop please"

    code, out = invoke("traces", "list", "--json", db=sqlite_url)
    runs = json.loads(out)["runs"]
    assert [r["outcome"] for r in runs] == ["loop_detected", "final_answer"]

    code, out = invoke("traces", "show", trace_id[:8], "--json", db=sqlite_url)
    trace = json.loads(out)
    assert trace["run"]["trace_id"] == trace_id
    assert trace["run"]["run_id"] == data["run_id"] == trace["spans"][0]["span_id"]
    assert [s["kind"] for s in trace["spans"]] == ["agent", "model"]

    code, out = invoke("traces", "show", trace_id, db=sqlite_url)
    assert code == 0 and "invoke_agent cli-agent" in out and "chat gpt-4.1-mini" in out


def test_traces_show_unknown_id(sqlite_url: str) -> None:
    code, out = invoke("traces", "show", "abcdef123456", db=sqlite_url)
    assert code == 1 and "no run or trace 'abcdef123456'" in out and "tether traces list" in out


def test_unreachable_database_is_a_clear_error_without_secrets() -> None:
    url = "postgresql+psycopg://admin:secret123@127.0.0.1:1/tether"
    code, out = invoke("traces", "list", db=url)
    assert code == 1
    assert "cannot open the trace store" in out and "127.0.0.1:1" in out
    assert "secret123" not in out and "Traceback" not in out


def test_validate_warns_about_unset_env_but_run_refuses(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.delenv("ORDER_API_URL", raising=False)
    code, out = invoke("validate", str(EXAMPLE))
    assert code == 0 and "warning" in out and "ORDER_API_URL" in out
    code, out = invoke("validate", str(EXAMPLE), "--json")
    assert json.loads(out)["missing_env"] == ["ORDER_API_URL"]
    code, out = invoke("run", str(EXAMPLE), "-i", "hi", db=sqlite_url)
    assert code == 1 and "ORDER_API_URL is not set" in out


def test_missing_file() -> None:
    code, out = invoke("validate", "/nonexistent/agent.yaml")
    assert code == 1 and "file not found" in out


def sandbox_available() -> bool:
    from tether.sandbox import SandboxUnavailable, find_host

    try:
        find_host()
    except SandboxUnavailable:
        return False
    return True


def test_demo_console_script(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", db, "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    scenarios = ("normal answer", "recovered tool error", "loop broken", "limit tripped")
    guards = ("injection caught", "personal data masked", "schema re-asked")
    issue_14 = (
        "refund denied by policy",
        "refund approved by a person",
        "failing upstream",
        "sandboxed calculation",
        "budget running out mid-run",
    )
    for scenario in (*scenarios, *guards, *issue_14):
        assert scenario in proc.stdout
    assert f"tether --database-url {db} traces show" in proc.stdout
    code, out = invoke("traces", "list", "--json", "-n", "100", db=db)
    assert code == 0
    outcomes = sorted(r["outcome"] for r in json.loads(out)["runs"])
    # The budget run, 5 support answers, the denied refund, the approved one resumed (its
    # paused run: escalated), 6 runs of the failing upstream, the calculation (CI has
    # bubblewrap; where the sandbox cannot run, that scenario is skipped and makes no run).
    answers = 5 + 1 + 1 + 6 + (1 if sandbox_available() else 0)
    finals = ["final_answer"] * answers
    assert outcomes == ["budget_exceeded", "escalated", *finals, "limit_exceeded", "loop_detected"]
    # Every `traces show` command the demo prints works as printed.
    shown = [
        line.split("traces show ", 1)[1].split()[0]
        for line in proc.stdout.splitlines()
        if "traces show " in line
    ]
    assert len(shown) == 11 + sandbox_available()  # one per scenario that made runs
    for run_id in shown:
        code, out = invoke("traces", "show", run_id, "--json", db=db)
        assert code == 0, out
        assert json.loads(out)["run"]["run_id"] == run_id


def test_markup_like_text_is_shown_verbatim(tmp_path: Path, sqlite_url: str) -> None:
    spec = write_agent(tmp_path, "steps: [{text: 'echo {input}'}]\n")
    nasty = "hello [/bold] [red]world"
    code, out = invoke("run", str(spec), "-i", nasty, db=sqlite_url)
    assert code == 0 and f"echo {nasty}" in out
    code, out = invoke("traces", "list", db=sqlite_url)
    assert code == 0 and "hello [/bold]" in out
    trace_id = json.loads(invoke("traces", "list", "--json", db=sqlite_url)[1])["runs"][0][
        "trace_id"
    ]
    code, out = invoke("traces", "show", trace_id, db=sqlite_url)
    assert code == 0 and nasty in out
    weird = tmp_path / "[/x].yaml"
    code, out = invoke("validate", str(weird))
    assert code == 1 and "[/x].yaml" in out and "file not found" in out


def test_json_errors_and_hints_follow_the_database_url(tmp_path: Path, sqlite_url: str) -> None:
    code, out = invoke("traces", "show", "zzzzzz", "--json", db=sqlite_url)
    assert code == 1 and json.loads(out)["error"].startswith("no run or trace 'zzzzzz'")
    spec = write_agent(tmp_path, "steps: [{text: hi}]\n")
    code, out = invoke("run", str(spec), "-i", "x", db=sqlite_url)
    assert code == 0 and f"--database-url {sqlite_url} traces show" in out
    code, out = invoke("traces", "list", "--agent", "nosuch", db=sqlite_url)
    assert "no traces of agent 'nosuch'" in out
    code, _ = invoke("traces", "list", "-n", "0", db=sqlite_url)
    assert code == 2  # a usage error


def test_in_memory_sqlite_store_works_for_a_run(tmp_path: Path) -> None:
    spec = write_agent(tmp_path, "steps: [{text: hi}]\n")
    code, out = invoke("run", str(spec), "-i", "x", "--json", db="sqlite:///:memory:")
    assert code == 0 and json.loads(out)["outcome"] == "final_answer"
    # In text, it says the trace is gone with the command, not a `traces show` that can
    # never find it.
    for db in ("sqlite:///:memory:", "sqlite://"):
        code, out = invoke("run", str(spec), "-i", "x", db=db)
        assert code == 0 and "traces show" not in out
        assert "the trace store is in memory" in out, out


def test_errors_with_long_paths_are_not_wrapped(tmp_path: Path) -> None:
    """A path or message longer than the console must stay on one line, copy-pasteable."""
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 6)
    deep.mkdir(parents=True)
    spec = write_agent(deep, "steps: [{text: hi}]\n", "limits:\n  max_turns: 0\n")
    assert len(str(spec)) > 150
    code, out = invoke("validate", str(spec))
    assert code == 1
    assert f"{spec}:4: limits.max_turns" in out


def test_validate_makes_the_same_checks_as_run(tmp_path: Path, sqlite_url: str) -> None:
    """A spec validate accepts, run must not refuse (but for missing environment variables)."""
    spec = write_agent(
        tmp_path,
        "steps: [{text: hi}]\n",
        "limits: {max_cost_usd: 0.01}\n",
    )
    spec.write_text(spec.read_text().replace("gpt-4.1-mini", "my-unpriced-model"))
    code, out = invoke("validate", str(spec))
    assert code == 1 and "no price for my-unpriced-model" in out and str(spec) in out
    code, out = invoke("run", str(spec), "-i", "hi", db=sqlite_url)
    assert code == 1 and "no price for my-unpriced-model" in out


def test_validate_an_openai_agent_without_its_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = tmp_path / "oa.yaml"
    spec.write_text("name: oa\nmodel: {provider: openai, name: gpt-4.1-mini}\n")
    code, out = invoke("validate", str(spec))
    assert code == 0, out
    assert "warning" in out and "OPENAI_API_KEY" in out
    code, out = invoke("validate", str(spec), "--json")
    assert json.loads(out)["missing_env"] == ["OPENAI_API_KEY"]
    # Running needs it: the error names the spec file and says what to do.
    code, out = invoke("run", str(spec), "-i", "hi", db=sqlite_url)
    assert code == 1
    assert f"{spec}: no API key" in out and "export OPENAI_API_KEY" in out


@pytest.mark.parametrize(
    "spec_text",
    [
        # A judge of the agent's own (OpenAI) model: validate said "the judge has no model".
        "name: oj\nmodel: {provider: openai, name: gpt-4.1-mini}\n"
        "guards:\n  rules:\n    - {guard: judge, rubric: Be kind.}\n",
        # A judge with its own OpenAI model beside a scripted agent: validate refused the key.
        "name: sj\nmodel: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        "guards:\n  rules:\n    - guard: judge\n      rubric: Be kind.\n"
        "      model: {provider: openai, name: gpt-4.1-mini}\n",
    ],
)
def test_validate_warns_about_a_judges_unset_api_key_but_run_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str, spec_text: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "script.yaml").write_text("steps: [{text: hi}]\n")
    spec = tmp_path / "judged.yaml"
    spec.write_text(spec_text)
    code, out = invoke("validate", str(spec), "--json")
    assert code == 0, out
    assert json.loads(out)["missing_env"] == ["OPENAI_API_KEY"]
    code, out = invoke("run", str(spec), "-i", "hi", db=sqlite_url)
    assert code == 1 and "OPENAI_API_KEY" in out and str(spec) in out


def test_validate_json_lists_problems_in_file_order(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: ok\n"
        "model: {provider: scripted, name: m, script: s.yaml}\n"
        "limits:\n  max_turns: 0\n  timeout_s: -1\n"
        "paradigm: nope\n"
    )
    code, out = invoke("validate", str(spec), "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert [(p["line"], p["field"]) for p in problems] == [
        (4, "limits.max_turns"),
        (5, "limits.timeout_s"),
        (6, "paradigm"),
    ]
    assert all(p["file"] == str(spec) for p in problems)


def test_usage_errors_come_as_json_when_json_is_asked(tmp_path: Path) -> None:
    """Through the real console script: click's usage errors are JSON too with --json."""
    tether = Path(sys.executable).parent / "tether"
    done = subprocess.run([str(tether), "run", "x.yaml", "--json"], capture_output=True, text=True)
    assert done.returncode == 2
    error = json.loads(done.stdout)
    assert "--input" in error["error"] and error["hint"] == "tether run --help"
    done = subprocess.run([str(tether), "run", "x.yaml"], capture_output=True, text=True)
    assert done.returncode == 2 and "Missing option" in done.stderr and not done.stdout


def test_traces_list_shows_an_unpriced_run_as_unknown_cost(tmp_path: Path, sqlite_url: str) -> None:
    spec = write_agent(tmp_path, "steps: [{text: hi}]\n")
    spec.write_text(spec.read_text().replace("gpt-4.1-mini", "my-own-model"))
    code, out = invoke("run", str(spec), "-i", "hi", "--json", db=sqlite_url)
    assert code == 0 and json.loads(out)["cost_usd"] is None
    code, out = invoke("traces", "list", "--json", db=sqlite_url)
    assert json.loads(out)["runs"][0]["cost_usd"] is None
    code, out = invoke("traces", "list", db=sqlite_url)
    assert "unpriced" in out and "$0.000000" not in out


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_help_fits_one_screen() -> None:
    """`--help` of every command fits an 80x24 terminal (the conventions' one screen)."""
    too_big = {}
    for path in _commands(cli):
        result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, path
        lines = result.output.rstrip("\n").split("\n")
        if len(lines) > 24 or max(len(line) for line in lines) > 80:
            too_big[" ".join(path) or "tether"] = len(lines)
    assert too_big == {}


def test_demo_on_a_store_with_a_password_says_how_to_give_it_back(pg_url: str) -> None:
    """The inspect commands hold the URL with its password as ``***`` (never printed), so as
    printed they could not open the store; the demo says what to do."""
    db = pg_url.replace("postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:hunter2@")
    assert "hunter2" in db  # (trust authentication on this machine takes any password)
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", db, "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TETHER_DATABASE_URL": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "hunter2" not in proc.stdout + proc.stderr
    assert "traces show" in proc.stdout and ":***@" in proc.stdout
    assert "put yours in its place, or set TETHER_DATABASE_URL" in proc.stdout


def test_demo_on_an_in_memory_store_says_its_traces_go_with_it(tmp_path: Path) -> None:
    """``tether demo --database-url sqlite://`` printed twelve ``traces show`` commands that
    could never find anything: the store went with the process."""
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", "sqlite://", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TETHER_DATABASE_URL": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "normal answer" in proc.stdout and "traces show" not in proc.stdout
    assert "The trace store is in memory" in proc.stdout
