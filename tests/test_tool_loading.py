"""Loading the Python tools a spec names, through the real CLI in a subprocess: what
``tether validate`` runs, how import failures of every kind are reported, and what names the
user's code carries."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from fakes.cli import run_cli
from fakes.specs import make_spec
from tether import Agent, ScriptedModel
from tether.spec import PythonToolSpec


def tether(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    return run_cli(*args, cwd=cwd, env=env)


def write_agent(folder: Path, function: str, tool_source: str | None = None) -> Path:
    """An agent whose one tool is ``function``; ``tool_source`` is written to tools.py."""
    if tool_source is not None:
        (folder / "tools.py").write_text(textwrap.dedent(tool_source))
    (folder / "script.yaml").write_text("steps: [{text: hi}]\n")
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: loader\n"
        "model: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        f"tools:\n  - name: probe\n    function: {function}\n"
    )
    return spec


MARKING_TOOL = """\
    from pathlib import Path

    Path(__file__).with_name("imported.marker").write_text("the module ran")


    def probe(q: str) -> str:
        return q
    """


def test_validate_runs_tool_code_and_says_so(tmp_path: Path) -> None:
    spec = write_agent(tmp_path, "tools.py:probe", MARKING_TOOL)
    done = tether("validate", "--help", cwd=tmp_path)
    assert "RUNS THEIR CODE" in done.stdout and "--no-import" in done.stdout
    done = tether("validate", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "imported.marker").exists()  # what --no-import is there to avoid


def test_validate_no_import_runs_no_tool_code(tmp_path: Path) -> None:
    spec = write_agent(tmp_path, "tools.py:probe", MARKING_TOOL)
    done = tether("validate", str(spec), "--no-import", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "imported.marker").exists()
    assert "tool code was not checked" in done.stdout and "probe" in done.stdout
    done = tether("validate", str(spec), "--no-import", "--json", cwd=tmp_path)
    info = json.loads(done.stdout)
    assert info["tool_code_checked"] is False
    assert info["tools"] == [{"name": "probe", "side_effects": "external", "scopes": []}]
    assert not (tmp_path / "imported.marker").exists()


@pytest.mark.parametrize(
    ("function", "source", "expected"),
    [
        ("missing.py:probe", None, "missing.py not found"),
        ("tools.py:probe", "def probe(:\n", "tools.py:1: not valid Python"),
        ("tools.py:no-such", MARKING_TOOL, "'no-such' is not a Python name"),
        ("no_such_package_xyz.tools:probe", None, "no module named 'no_such_package_xyz'"),
        ("bad module:probe", None, "'bad module' is not a module name"),
    ],
)
def test_validate_no_import_still_checks_references(
    tmp_path: Path, function: str, source: str | None, expected: str
) -> None:
    spec = write_agent(tmp_path, function, source)
    done = tether("validate", str(spec), "--no-import", cwd=tmp_path)
    assert done.returncode == 1
    assert f"{spec}: tools[0] 'probe' (line 5)" in done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "imported.marker").exists()


def test_validate_no_import_warns_of_a_function_it_cannot_see(tmp_path: Path) -> None:
    spec = write_agent(tmp_path, "tools.py:made_later", MARKING_TOOL)
    done = tether("validate", str(spec), "--no-import", cwd=tmp_path)
    assert done.returncode == 0
    assert "has no top-level definition of 'made_later'" in done.stdout


@pytest.mark.parametrize(
    ("command", "statement", "expected"),
    [
        ("validate", "import sys\nsys.exit()", "called sys.exit(None)"),
        ("validate", "import sys\nsys.exit(4)", "called sys.exit(4)"),
        ("validate", "raise KeyboardInterrupt", "was interrupted (KeyboardInterrupt"),
        ("validate", "raise RuntimeError('no config')", "RuntimeError: no config"),
        ("validate", "import no_such_dependency_xyz", "No module named 'no_such_dependency_xyz'"),
        ("run", "import sys\nsys.exit(4)", "called sys.exit(4)"),
        ("run", "raise KeyboardInterrupt", "was interrupted (KeyboardInterrupt"),
    ],
)
def test_any_failure_importing_a_tool_module_is_a_spec_error(
    tmp_path: Path, command: str, statement: str, expected: str
) -> None:
    spec = write_agent(tmp_path, "tools.py:probe", f"{statement}\n\ndef probe() -> str:\n    ...\n")
    args = ["--database-url", f"sqlite:///{tmp_path / 't.db'}", "run", str(spec), "-i", "hi"]
    done = tether(*(args if command == "run" else ["validate", str(spec)]), cwd=tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    # Names the spec, the tool's line in it, and the module file and line that failed.
    assert f"error: {spec}: tools[0] 'probe' (line 5)" in done.stderr
    line = statement.count("\n") + 1
    assert f"{tmp_path / 'tools.py'}:{line}" in done.stderr
    assert expected in done.stderr
    assert "unfinished run" not in done.stderr and "Traceback" not in done.stderr


def test_a_failing_module_by_name_names_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mytools_exiting"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "calls.py").write_text("import sys\n\nsys.exit(4)\n")
    spec = write_agent(tmp_path, "mytools_exiting.calls:probe")
    done = tether("validate", str(spec), cwd=tmp_path)
    assert done.returncode == 1
    assert "importing module 'mytools_exiting.calls' called sys.exit(4)" in done.stderr
    assert f"{package / 'calls.py'}:3" in done.stderr


async def test_errors_name_the_tool_file_not_an_internal_module(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(
        textwrap.dedent(
            """\
            class Opaque:
                pass


            def give() -> object:
                return Opaque()


            def fail() -> str:
                raise ValueError(Opaque())
            """
        )
    )
    spec = make_spec(
        tools=[
            PythonToolSpec(name="give", function="tools.py:give"),
            PythonToolSpec(name="fail", function="tools.py:fail"),
        ]
    )
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "give"}, {"name": "fail"}]},
            {"text": "{result:give} / {result:fail}"},
        ]
    )
    agent = Agent(spec, model=model, base_dir=tmp_path, trace=False)
    result = await agent.run("x")
    path = str(tmp_path / "tools.py")
    give, fail = (result.output or "").split(" / ")
    assert give.startswith("Error: tool 'give' returned a value that cannot be turned into JSON")
    assert f"{path}.Opaque" in give
    assert fail.startswith(f"Error: ValueError: <{path}.Opaque object at")
    assert "tether_user_tools" not in (result.output or "")
