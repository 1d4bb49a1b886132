"""Every file under examples/ does what the docs say it does. The calculator and the own loop
have their own tests (test_sandbox_tool, test_example_own_loop); this one covers the specs and
the refunds walk-through of docs/authorization.md, through the real `tether` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from fakes.cli import run_cli
from tether.runtime import check_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REFUNDS = EXAMPLES / "refunds" / "agent.yaml"


def spec_files() -> list[Path]:
    """The YAML files under examples/ that are agent specs (a script or a fixture file has no
    top-level `model`)."""
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "model" in data:
            found.append(path)
    return found


def test_the_examples_hold_the_specs_the_docs_name() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in spec_files()}
    assert names == {
        "calculator/agent.yaml",
        "refunds/agent.yaml",
        "support/agent.yaml",
        "support/order_report.yaml",
    }


@pytest.mark.parametrize("spec", spec_files(), ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_every_example_spec_validates(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_URL", "http://127.0.0.1:9")  # the support agent's HTTP tool
    check = check_spec(spec)
    assert check.missing_env == [] and check.warnings == []


def test_the_refund_policy_fixtures_pass() -> None:
    done = run_cli("policy", "test", str(EXAMPLES / "refunds" / "policies" / "fixtures.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 of 4 cases passed" in done.stdout


def test_the_refund_approval_walk_through(tmp_path: Path) -> None:
    """docs/authorization.md, "Approving an escalated call", command by command."""
    env = {**os.environ, "TETHER_HOME": str(tmp_path / "home")}
    env.pop("TETHER_DATABASE_URL", None)
    paused = run_cli("run", str(REFUNDS), "-i", "Please refund 250 on order 1002.", env=env)
    assert paused.returncode == 3, paused.stdout + paused.stderr
    assert paused.stdout.startswith(
        "This action needs a person's approval: refunds over 100 need a manager's approval"
    )
    assert "outcome escalated" in paused.stdout and "tether approvals approve " in paused.stdout
    listed = run_cli("approvals", "list", env=env)
    assert 'refunds  issue_refund(order_id="1002", amount="250")  [waiting]' in listed.stdout
    run_id = json.loads(run_cli("approvals", "list", "--json", env=env).stdout)["runs"][0]["run_id"]
    assert f"tether resume {REFUNDS} {run_id}" in paused.stdout
    approved = run_cli(
        "approvals", "approve", run_id, "--by", "alice", "--reason", "checked the order", env=env
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    resumed = run_cli("resume", str(REFUNDS), run_id, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith(
        'Order 1002 (delivered, paid 320.0): {"order_id":1002,"refunded":250.0,'
        '"refund_id":"R-1002"}'
    )
    again = run_cli("resume", str(REFUNDS), run_id, env=env)
    assert again.returncode == 1 and "was resumed already" in again.stderr
