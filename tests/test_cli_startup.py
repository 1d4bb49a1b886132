"""Start-up: a command loads only what it uses (structure, not timing: what a fresh interpreter
has imported). Figures are in benchmarks/cli_startup.py and docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "support" / "agent.yaml"
HEAVY = ("sqlalchemy", "alembic", "httpx", "pydantic", "yaml", "rich")


def loaded_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter has imported after running ``code``."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def run_cli(*args: str) -> str:
    return (
        "import sys\n"
        "from tether.cli import main\n"
        f"sys.argv = ['tether', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )


def test_importing_the_cli_loads_no_store_http_or_models() -> None:
    assert loaded_after("import tether.cli") == set()
    assert loaded_after("import tether") == set()


def test_help_loads_neither_the_store_nor_rich() -> None:
    assert loaded_after(run_cli("--help")) == set()
    assert loaded_after(run_cli("traces", "--help")) == set()


def test_validate_loads_the_spec_side_only() -> None:
    loaded = loaded_after(run_cli("validate", str(EXAMPLE)))
    assert {"pydantic", "yaml"} <= loaded  # what a spec is made of
    assert not {"sqlalchemy", "alembic"} & loaded


def test_the_public_api_still_loads_on_first_use() -> None:
    code = "import tether, tether.store\nassert tether.Agent.__name__ == 'Agent'\n"
    code += "assert tether.store.Store.__name__ == 'Store'"
    assert {"sqlalchemy", "pydantic"} <= loaded_after(code)
