"""Start-up: a command loads only what it uses (structure, not timing: what a fresh interpreter
has imported). Figures are in benchmarks/cli_startup.py and docs/benchmarks.md."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tether.cli.terminal import escape
from tether.tools.http import scheme_and_host

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


def test_validate_loads_neither_the_store_nor_httpx_nor_rich() -> None:
    """Text and JSON, with the HTTP tool's variable set (its URL is checked) and unset (a
    warning is printed), tools imported or not."""
    set_url = "import os\nos.environ['ORDER_API_URL'] = 'http://127.0.0.1:9'\n"
    for args in (
        ("validate", str(EXAMPLE)),
        ("validate", "--json", str(EXAMPLE)),
        ("validate", "--no-import", str(EXAMPLE)),
    ):
        for setup in (set_url, "import os\nos.environ.pop('ORDER_API_URL', None)\n"):
            loaded = loaded_after(setup + run_cli(*args))
            assert not {"sqlalchemy", "alembic", "httpx", "rich"} & loaded, (args, setup)


def test_an_http_tool_loads_httpx_only_for_a_url_it_cannot_read_plainly() -> None:
    build = (
        "import os\n"
        "os.environ['BASE'] = 'http://127.0.0.1:8080'\n"
        "from tether.spec import HttpToolSpec\n"
        "from tether.tools import HttpTool\n"
        "def build(url, host):\n"
        "    params = {'id': {'type': 'integer'}} if '{id}' in url else {}\n"
        "    spec = HttpToolSpec(kind='http', name='t', url=url, allowed_hosts=[host],\n"
        "                        parameters=params, allowed_networks=['127.0.0.1', '::1'])\n"
        "    HttpTool(spec)\n"
    )
    plain = build + "build('${BASE}/orders/{id}', '127.0.0.1')\nbuild('HTTPS://[::1]:8/', '::1')\n"
    assert "httpx" not in loaded_after(plain)
    # An IDNA name: httpx shows it decoded, so httpx reads it (the same check, its result).
    idna = build + "build('http://xn--fiqs8s.icom.museum/x', '中国.icom.museum')\n"
    assert "httpx" in loaded_after(idna)


URLS = [
    "http://127.0.0.1:8080/orders/a1",
    "HTTPS://API.Example.COM/v1?q=1&r=2#frag",
    "http://user:p%40ss@host.example/",
    "http://[::1]:80/",
    "http://[2001:DB8::1]/x",
    "http://host:/p",
    "http://example.com.",
    "http://1.2.3/",
    "http://1.2.3.4.5/",
    "http://0x7f.1/",
    "http://h/a path with spaces?q=a b",
    "ftp://files.example.com/x",
    "http://u@h@x/",
    "http://a b/",
    "http://%41/",
    "http://999.1.1.1/",
    "http://1.2.3.04/",
    "http://[::g]/",
    "https://[::1/v1",
    "http://[fe80::1%25eth0]/",
    "http://host:port/",
    "http://host:80:90/",
    "http://h:99999999999999999999/",
    "http://h\x00/",
    "http://h/\x7f",
    "http://\u00e9xample.com/",
    "http://xn--fiqs8s.icom.museum/",
    "http://XN--fiqs8s.icom.museum/",
    "http://b\u00fccher.example/",
    "localhost:8080/x",
    "//host/x",
    "http:///x",
    "http:x",
    "",
    "mailto:x@y",
    "http://h/" + "a" * 70_000,
]


@pytest.mark.parametrize("url", URLS, ids=range(len(URLS)))
def test_http_tool_urls_read_as_httpx_reads_them(url: str) -> None:
    """The build-time check reads scheme and host without httpx when it can: same result, and
    the same message for a URL httpx refuses."""
    import httpx

    try:
        parsed = httpx.URL(url)
        expected: tuple[str, ...] = (parsed.scheme, parsed.host)
    except httpx.InvalidURL as exc:
        expected = ("invalid", str(exc))
    try:
        got: tuple[str, ...] = scheme_and_host(url)
    except ValueError as exc:
        got = ("invalid", str(exc))
    assert got == expected


ENVIRONMENTS = [
    {},
    {"FORCE_COLOR": "1"},
    {"FORCE_COLOR": ""},
    {"FORCE_COLOR": "1", "NO_COLOR": "1"},
    {"FORCE_COLOR": "1", "TERM": "dumb"},
    {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "0"},
    {"TTY_COMPATIBLE": "1", "TERM": "xterm-256color"},
]


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda env: repr(env))
def test_validate_prints_what_rich_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """``validate`` prints with click.echo, not rich: the same text and escape codes that
    rich's console wrote for the same markup (rich's styling rules, outside text shown with
    its control characters escaped), without rich's hard wraps."""
    shutil.copytree(EXAMPLE.parent, tmp_path, dirs_exist_ok=True)
    name = "[bold]a\x1b]0;x\x07.yaml"  # markup and a terminal escape in the file name
    (tmp_path / "agent.yaml").rename(tmp_path / name)
    styling = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TERM", "COLUMNS", "LINES")
    for key in (*styling, "ORDER_API_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    done = subprocess.run(
        [sys.executable, "-m", "tether", "validate", "--no-import", name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # Given explicitly: readline, which pytest loads, puts COLUMNS and LINES in the C
        # environment (not in os.environ), which a child started without env= inherits.
        env={**{k: v for k, v in os.environ.items() if k not in styling}, **env},
        timeout=120,
        check=True,
    )
    # What the command printed through rich before (tether 085eb96), rendered here by rich
    # with the same environment and a stream that is not a terminal either.
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=120, emoji=False)
    console.print(
        f"[green]✓[/] {escape(name)}: agent [bold]support[/] version a73277e74a0823f2\n"
        "  model scripted/gpt-4.1-mini, paradigm react, 2 tool(s): kb_lookup, order_status",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "[yellow]note:[/] tool code was not checked (--no-import): kb_lookup (their "
        "references were checked; importing them may still fail)",
        highlight=False,
        soft_wrap=True,
    )
    warning = "not set in this environment: ORDER_API_URL (needed to run, not to validate)"
    console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    assert done.stdout == buffer.getvalue()
    assert "\x1b]" not in done.stdout and "\\x1b]0;x\\x07" in done.stdout


def test_the_public_api_still_loads_on_first_use() -> None:
    code = "import tether, tether.store\nassert tether.Agent.__name__ == 'Agent'\n"
    code += "assert tether.store.Store.__name__ == 'Store'"
    assert {"sqlalchemy", "pydantic"} <= loaded_after(code)


def test_the_regex_engine_loads_only_for_a_script_with_rules(tmp_path: Path) -> None:
    (tmp_path / "script.yaml").write_text("steps: [{text: hi}]\n")
    spec = tmp_path / "agent.yaml"
    spec.write_text("name: a\nmodel: {provider: scripted, name: m, script: script.yaml}\n")
    probe = "import sys\nprint('regex' in sys.modules, file=sys.stderr)\n"

    def regex_loaded(path: Path) -> bool:
        code = run_cli("validate", str(path)) + probe
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        )
        return done.stderr.strip().splitlines()[-1] == "True"

    assert not regex_loaded(spec)
    assert regex_loaded(EXAMPLE)  # its rules have 'when' patterns
