"""What the CLI prints, through real ``tether`` processes against real SQLite stores: text from a
run is shown, never obeyed by the terminal; huge payloads are clipped; a closed pipe is a normal
end; bad arguments are usage errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tether.store import Store

# Control characters a terminal may act on: C0 but tab and newline, DEL, C1 (U+009B is CSI).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ESCAPES = "\x1b]0;pwned\x07 \x1b[2J \x1b]52;c;cHduZWQ=\x07 \x9b31m"
"""Retitle the terminal, clear it, write the clipboard (OSC 52), and a one-byte C1 CSI."""
HYPERLINK = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\"


def tether(
    db: str, *args: str | bytes, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """One real ``tether`` process; output as bytes, exactly as a terminal would get it."""
    argv: list[str | bytes] = [sys.executable, "-m", "tether", "--database-url", db, *args]
    return subprocess.run(
        argv,
        capture_output=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def shown(out: bytes) -> str:
    """Output as text; it must be valid UTF-8 and carry no raw control character."""
    text = out.decode("utf-8")
    raw = RAW_CONTROL.search(text)
    assert raw is None, f"raw control character {raw.group()!r} in output:\n{text!r}"
    return text


def write_agent(tmp_path: Path, script: dict[str, Any], tools: str = "") -> Path:
    # JSON is YAML: its \u escapes put any character in the script.
    (tmp_path / "script.yaml").write_text(json.dumps(script))
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "name: cli-agent\nmodel: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
        + tools
    )
    return spec


def only_trace_id(db: str) -> str:
    runs = json.loads(tether(db, "traces", "list", "--json").stdout)["runs"]
    assert len(runs) == 1
    return str(runs[0]["trace_id"])


# -- terminal escape sequences (issue 11, item 7) -------------------------------------------


def test_escape_sequences_from_a_run_are_shown_not_obeyed(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "tools.py").write_text(
        f"def echo(t: str) -> str:\n    return 'tool says ' + t + {ESCAPES!r}\n"
        f"def fail(t: str) -> str:\n    raise RuntimeError('tool broke ' + t + {ESCAPES!r})\n"
    )
    script = {
        "steps": [
            {
                "tool_calls": [
                    {"name": "echo", "arguments": {"t": "{input}"}},
                    {"name": "fail", "arguments": {"t": "{input}"}},
                    {"name": "evil\x1b[2J", "arguments": {"t": "{input}"}},
                ]
            },
            {"text": f"answer {HYPERLINK} {{input}} {{result:echo}}"},
        ]
    }
    spec = write_agent(
        tmp_path,
        script,
        "tools:\n  - {name: echo, function: tools.py:echo}\n"
        "  - {name: fail, function: tools.py:fail}\n",
    )
    user_input = f"hi {ESCAPES}"

    done = tether(sqlite_url, "run", str(spec), "-i", user_input, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = shown(done.stdout)
    shown(done.stderr)
    assert "\\x1b]0;pwned\\x07" in out and "\\x9b31m" in out  # shown, not dropped
    assert "\\x1b]8;;http://evil.example" in out

    # --json keeps the exact text, escaped as JSON escapes it (C1 and DEL too).
    done = tether(sqlite_url, "run", str(spec), "-i", user_input, "--json", cwd=tmp_path)
    answer = json.loads(shown(done.stdout))["output"]
    assert answer.startswith(f"answer {HYPERLINK} {user_input} tool says")

    listed = json.loads(tether(sqlite_url, "traces", "list", "--json").stdout)
    trace_id = listed["runs"][0]["trace_id"]
    for args in (
        ("traces", "list"),
        ("traces", "list", "--json"),
        ("traces", "show", trace_id),
        ("traces", "show", trace_id, "--json"),
    ):
        done = tether(sqlite_url, *args)
        assert done.returncode == 0, done.stderr
        out, _ = shown(done.stdout), shown(done.stderr)
        if "--json" in args:
            data = json.loads(out)
            run = data["runs"][0] if "runs" in data else data["run"]
            assert run["input"] == user_input and run["output"] == answer
    tree = shown(tether(sqlite_url, "traces", "show", trace_id).stdout)
    assert "execute_tool evil\\x1b[2J" in tree  # a tool name from the model
    assert "tool broke hi \\x1b]0;pwned\\x07" in tree  # a tool's error message
    assert 'args {"t": "hi \\u001b]0;pwned\\u0007' in tree  # tool arguments: JSON escapes


def test_emoji_codes_in_an_answer_stay_text(tmp_path: Path, sqlite_url: str) -> None:
    spec = write_agent(tmp_path, {"steps": [{"text": "done :thumbs_up: for {input}"}]})
    done = tether(sqlite_url, "run", str(spec), "-i", ":smile:", cwd=tmp_path)
    assert "done :thumbs_up: for :smile:" in shown(done.stdout)
    tree = shown(tether(sqlite_url, "traces", "show", only_trace_id(sqlite_url)).stdout)
    assert "input:  :smile:" in tree and "👍" not in tree


def test_error_messages_and_usage_errors_show_escape_sequences(
    tmp_path: Path, sqlite_url: str
) -> None:
    missing = "ev\x1b]0;pwned\x07il\x9b2J.yaml"  # a file name is outside text too
    done = tether(sqlite_url, "run", missing, "-i", "hi", cwd=tmp_path)
    assert done.returncode == 1
    assert "ev\\x1b]0;pwned\\x07il\\x9b2J.yaml: file not found" in shown(done.stderr)
    done = tether(sqlite_url, "run", missing, "-i", "hi", "--json", cwd=tmp_path)
    assert done.returncode == 1
    assert json.loads(shown(done.stdout))["error"].startswith(f"{missing}: file not found")

    tether(sqlite_url, "traces", "list")  # a store exists
    done = tether(sqlite_url, "traces", "show", "zzzzzz\x1b]0;pwned\x07")
    assert done.returncode == 1
    assert "\\x1b]0;pwned\\x07" in shown(done.stderr)
    done = tether(sqlite_url, "traces", "show", "zzzzzz\x1b]0;pwned\x07\x9b", "--json")
    assert done.returncode == 1
    assert json.loads(shown(done.stdout))["error"].startswith("no run or trace 'zzzzzz\\x1b")
    done = tether(sqlite_url, "traces", "list", "--agent", "x\x1b[2J")
    assert done.returncode == 0 and "\\x1b[2J" in shown(done.stdout)
    done = tether(sqlite_url, "traces", "list", "-n", "\x1b[2J\x9b")
    assert done.returncode == 2 and "\\x1b[2J\\x9b" in shown(done.stderr)
    done = tether(sqlite_url, "traces", "list", "-n", "\x1b[2J\x9b", "--json")
    assert done.returncode == 2 and "\\x1b[2J" in json.loads(shown(done.stdout))["error"]


# -- huge payloads (item 12) ------------------------------------------------------------------

CHUNK = 130_000
"""Characters in the input: under the 128 KiB a single argv entry may have."""
COPIES = 40
"""The answer repeats the input: 5,200,000 characters."""


def test_a_huge_answer_is_stored_and_printed_clipped(tmp_path: Path, sqlite_url: str) -> None:
    spec = write_agent(tmp_path, {"steps": [{"text": "{input}" * COPIES}]})
    marker = f"… [clipped: {CHUNK * COPIES:,} characters in all]"

    done = tether(sqlite_url, "run", str(spec), "-i", "a" * CHUNK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = shown(done.stdout)
    assert marker in out and len(out) < 20_000  # clipped for the terminal (8,000 by default)

    done = tether(sqlite_url, "run", str(spec), "-i", "b" * CHUNK, "--json", cwd=tmp_path)
    answer = json.loads(done.stdout)["output"]
    assert answer == "b" * 65_536 + marker  # as the trace stores it

    store = Store(sqlite_url)
    try:
        for run in store.list_runs():
            assert run.output is not None and run.output.endswith(marker)
            assert len(run.output) == 65_536 + len(marker)
            assert run.input.endswith(f"… [clipped: {CHUNK:,} characters in all]")
    finally:
        store.close()

    listed = tether(sqlite_url, "traces", "list", "--json", "-n", "5")
    assert len(listed.stdout) < 400_000  # was two 5 MB rows
    table = shown(tether(sqlite_url, "traces", "list").stdout)
    assert len(table.splitlines()) == 4  # a one-line brief of each input
    trace_id = json.loads(listed.stdout)["runs"][0]["trace_id"]
    tree = shown(tether(sqlite_url, "traces", "show", trace_id).stdout)
    assert marker in tree and len(tree) < 30_000


def test_payload_limits_are_settings(tmp_path: Path, sqlite_url: str) -> None:
    spec = write_agent(tmp_path, {"steps": [{"text": "{input} {input}"}]})
    small = {"TETHER_MAX_PAYLOAD_CHARS": "1000", "TETHER_MAX_DISPLAY_CHARS": "100"}
    done = tether(sqlite_url, "run", str(spec), "-i", "c" * 3000, cwd=tmp_path, env=small)
    answer = "".join(shown(done.stdout).split())  # as rich wrapped it to the terminal's width
    assert "c" * 100 + "…[clipped:6,001charactersinall]" in answer
    assert "c" * 101 not in answer
    stored = tether(sqlite_url, "traces", "show", only_trace_id(sqlite_url), "--json", env=small)
    assert json.loads(stored.stdout)["run"]["output"] == (
        "c" * 1000 + "… [clipped: 6,001 characters in all]"
    )
    bad = tether(sqlite_url, "run", str(spec), "-i", "x", env={"TETHER_MAX_PAYLOAD_CHARS": "lots"})
    assert bad.returncode == 1
    assert "TETHER_MAX_PAYLOAD_CHARS must be a whole number" in shown(bad.stderr)


# -- a closed pipe is a normal end (item 19) --------------------------------------------------


def test_a_reader_that_stops_early_ends_the_command_quietly(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_agent(tmp_path, {"steps": [{"text": "{input}" * 4}]})
    assert tether(sqlite_url, "run", str(spec), "-i", "d" * CHUNK, cwd=tmp_path).returncode == 0
    trace_id = only_trace_id(sqlite_url)
    # More output than a pipe holds (64 KiB), so the writer is still writing when the reader
    # goes away: `tether traces show ID | head -1`.
    wide = {**os.environ, "TETHER_MAX_DISPLAY_CHARS": "1000000"}
    for args in (("traces", "show", trace_id), ("traces", "show", trace_id, "--json")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "--database-url", sqlite_url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=wide,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err
        assert first and err == b""


# -- bad arguments are usage errors (item 17, item 20) ----------------------------------------


def test_out_of_range_and_undecodable_arguments_are_usage_errors(sqlite_url: str) -> None:
    tether(sqlite_url, "traces", "list")
    done = tether(sqlite_url, "traces", "list", "-n", "99999999999999999999")
    assert done.returncode == 2
    assert "1<=x<=10000" in shown(done.stderr) and "unexpected" not in shown(done.stderr)
    done = tether(sqlite_url, "traces", "list", "-n", "99999999999999999999", "--json")
    assert done.returncode == 2 and "1<=x<=10000" in json.loads(done.stdout)["error"]

    for args in ((b"traces", b"show", b"\xff\xfe"), (b"traces", b"list", b"--agent", b"\xff\xfe")):
        done = tether(sqlite_url, *args)
        assert done.returncode == 2, done.stderr
        err = shown(done.stderr)
        assert "\\xff\\xfe is not valid UTF-8" in err and "unexpected" not in err
        done = tether(sqlite_url, *args, b"--json")
        assert done.returncode == 2
        error = json.loads(shown(done.stdout))
        assert "not valid UTF-8" in error["error"] and error["hint"].endswith("--help")

    for empty in ("", "  "):
        done = tether(sqlite_url, "traces", "list", "--agent", empty)
        assert done.returncode == 2 and "must not be empty" in shown(done.stderr)


# -- traces show says why a run failed (item 18) ----------------------------------------------


def test_traces_show_says_why_a_run_failed_under_its_heading(
    tmp_path: Path, sqlite_url: str
) -> None:
    reason = "the upstream model refused: " + "because " * 40 + "END OF REASON"
    spec = write_agent(tmp_path, {"steps": [{"error": reason}]})
    done = tether(sqlite_url, "run", str(spec), "-i", "hello", cwd=tmp_path)
    assert done.returncode == 1
    lines = shown(tether(sqlite_url, "traces", "show", only_trace_id(sqlite_url)).stdout)
    lines_before_spans = lines.split("invoke_agent")[0]
    assert "error: scripted model error: the upstream model refused" in lines_before_spans
    assert "END OF REASON" in lines_before_spans  # whole, not cut at 160 characters


def test_traces_show_says_why_a_killed_run_failed(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "tools.py").write_text(
        "import time\n"
        "def fast() -> str:\n    return 'fast result'\n"
        "def hang() -> str:\n    time.sleep(600)\n    return 'never'\n"
    )
    spec = write_agent(
        tmp_path,
        {"steps": [{"tool_calls": [{"name": "fast"}]}, {"tool_calls": [{"name": "hang"}]}]},
        "tools:\n  - {name: fast, function: tools.py:fast}\n"
        "  - {name: hang, function: tools.py:hang, timeout_s: 600}\n",
    )
    run = ["run", str(spec), "-i", "go"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "--database-url", sqlite_url, *run],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _span_written(sqlite_url, "execute_tool fast"):
            assert time.monotonic() < deadline, "the fast tool's span never reached the store"
            assert proc.poll() is None, "tether run ended early"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    trace_id = only_trace_id(sqlite_url)  # reading the store records the dead run as failed
    error = json.loads(tether(sqlite_url, "traces", "show", trace_id, "--json").stdout)["run"]
    assert error["status"] == "failed" and error["error"]
    tree = shown(tether(sqlite_url, "traces", "show", trace_id).stdout)
    heading = "\n".join(tree.splitlines()[:3])
    assert f"error: {error['error'].splitlines()[0][:60]}" in heading


def _span_written(url: str, name: str) -> bool:
    if not Path(url.removeprefix("sqlite:///")).exists():
        return False
    store = Store(url)
    try:
        runs = store.list_runs()
        return bool(runs) and any(s.name == name for s in store.get_spans(runs[0].run_id))
    finally:
        store.close()


# -- ids and arguments as an operator reads them (item 20) -------------------------------------


def test_listed_run_ids_tell_runs_apart_and_arguments_keep_their_characters(
    tmp_path: Path, sqlite_url: str
) -> None:
    import asyncio

    from fakes.specs import make_spec
    from tether import Agent, ScriptedModel
    from tether.trace import close_writers

    async def runs() -> None:
        model = ScriptedModel(
            [{"tool_calls": [{"name": "lookup", "arguments": {"q": "世界"}}]}, {"text": "ok"}]
        )

        def lookup(q: str) -> str:
            """Look up."""
            return q

        agent = Agent(make_spec(), model=model, tools=[lookup], trace=sqlite_url)
        async with agent:
            for suffix in ("0" * 20, "f" * 20):  # the same first 12 characters
                await agent.run("go", trace_id="0123456789ab" + suffix)

    asyncio.run(runs())
    close_writers()
    store = Store(sqlite_url)
    try:
        run_ids = [r.run_id for r in store.list_runs()]
    finally:
        store.close()
    table = shown(tether(sqlite_url, "traces", "list").stdout)
    # Before: both rows showed the same 12 characters, "0123456789ab".
    assert len(run_ids) == 2 and all(f" {run_id} " in table for run_id in run_ids)
    for shown_id in run_ids:
        tree = tether(sqlite_url, "traces", "show", shown_id)
        assert tree.returncode == 0, tree.stderr
        assert 'args {"q": "世界"}' in shown(tree.stdout)
    store = Store(sqlite_url)
    try:
        spans = store.get_spans(store.get_run("0123456789ab" + "0" * 20).run_id)
        tool_span = next(s for s in spans if s.kind == "tool")
        assert tool_span.attributes["gen_ai.tool.call.arguments"] == '{"q": "世界"}'
    finally:
        store.close()


def test_runs_that_share_a_trace_are_listed_by_run_ids_that_show_them(sqlite_url: str) -> None:
    import asyncio

    from fakes.specs import make_spec
    from tether import Agent, ScriptedModel
    from tether.trace import close_writers

    trace_id = "ab" * 16

    async def runs() -> list[str]:
        agent = Agent(make_spec(), model=ScriptedModel([{"text": "ok"}]), trace=sqlite_url)
        async with agent:
            return [(await agent.run(text, trace_id=trace_id)).run_id for text in ("one", "two")]

    run_ids = asyncio.run(runs())
    close_writers()
    table = shown(tether(sqlite_url, "traces", "list", env={"COLUMNS": "200"}).stdout)
    rows = [line for line in table.splitlines() if any(f" {r} " in line for r in run_ids)]
    assert len(rows) == 2
    for run_id, text in zip(run_ids, ("one", "two"), strict=True):
        row = next(line for line in rows if line.split()[0] == run_id)
        assert row.rstrip().endswith(text)
        tree = tether(sqlite_url, "traces", "show", run_id)
        assert tree.returncode == 0, tree.stderr
        assert f"input:  {text}" in shown(tree.stdout)


# -- a big trace is drawn in part, its problems listed ----------------------------------------


def cedar_decision(run: Any, span_id: str, time_ns: int, verdict: str, reason: str) -> Any:
    """A Cedar decision event on one span of ``run``."""
    from tether.store import EventRecord
    from tether.trace import semconv

    return EventRecord(
        run.trace_id,
        span_id,
        semconv.EVENT_CONTROL_DECISION,
        time_ns,
        {
            semconv.TETHER_CONTROL_NAME: "authz.cedar",
            semconv.TETHER_CONTROL_HOOK: "before_tool",
            semconv.TETHER_DECISION: verdict,
            semconv.TETHER_DECISION_REASON: reason,
        },
        run_id=run.run_id,
    )


def test_a_big_trace_draws_the_first_spans_and_lists_problems_past_the_cut(
    sqlite_url: str,
) -> None:
    from tether.core import new_span_id, new_trace_id, now_ns
    from tether.store import RunRecord, SpanRecord
    from tether.trace import BatchingWriter

    store = Store(sqlite_url)
    writer = BatchingWriter(store, flush_interval_s=3600)
    run = RunRecord(new_trace_id(), "big", "v1", now_ns(), run_id=new_span_id())
    writer.run_started(run)
    root, start = new_span_id(), now_ns()
    writer.span(
        SpanRecord(
            run.trace_id,
            root,
            None,
            "invoke_agent big",
            "agent",
            start,
            start + 1,
            run_id=run.run_id,
        )
    )
    for i in range(60):
        span_id = new_span_id()
        failed = i == 45
        writer.span(
            SpanRecord(
                run.trace_id,
                span_id,
                root,
                f"step-{i:02d}",
                "tool",
                start + i,
                start + i + 1,
                run_id=run.run_id,
                status="error" if failed else "ok",
                status_message="Error: upstream said no" if failed else None,
            )
        )
        if i in (3, 52):
            verdict = "allow" if i == 3 else "block"
            writer.event(cedar_decision(run, span_id, start + i, verdict, f"policy refund-{i}"))
    assert writer.flush(60)
    writer.close()
    store.close()

    out = shown(tether(sqlite_url, "traces", "show", run.run_id, "--max-spans", "10").stdout)
    drawn = re.findall(r"step-\d\d", out.split("more spans not drawn")[0])
    assert drawn == [f"step-{i:02d}" for i in range(9)]  # the agent span and 9 steps
    assert "51 more spans not drawn (61 in all)" in out
    past_cut = out.split("more spans not drawn")[1]
    assert "step-45" in past_cut and "upstream said no" in past_cut
    assert "step-52" in past_cut and "authz.cedar block" in past_cut and "refund-52" in past_cut
    assert "step-30" not in past_cut  # only the problems are listed past the cut

    everything = shown(tether(sqlite_url, "traces", "show", run.run_id, "--max-spans", "0").stdout)
    assert "not drawn" not in everything
    assert re.findall(r"step-\d\d", everything) == [f"step-{i:02d}" for i in range(60)]
    assert "authz.cedar allow" in everything and "authz.cedar block" in everything

    bad = tether(sqlite_url, "traces", "show", run.run_id, "--max-spans", "-1")
    assert bad.returncode == 2 and b"--max-spans" in bad.stderr


def test_a_span_with_many_events_draws_its_decisions_first_and_counts_the_rest(
    sqlite_url: str,
) -> None:
    from tether.core import new_span_id, new_trace_id, now_ns
    from tether.store import RunRecord, SpanRecord
    from tether.trace import BatchingWriter

    store = Store(sqlite_url)
    writer = BatchingWriter(store, flush_interval_s=3600)
    run = RunRecord(new_trace_id(), "noisy", "v1", now_ns(), run_id=new_span_id())
    writer.run_started(run)
    span_id, start = new_span_id(), now_ns()
    writer.span(
        SpanRecord(
            run.trace_id, span_id, None, "lookup", "tool", start, start + 1, run_id=run.run_id
        )
    )
    for i in range(300):  # every sixth a block, the rest allows
        verdict = "block" if i % 6 == 5 else "allow"
        writer.event(cedar_decision(run, span_id, start + i, verdict, f"decision-{i:03d}"))
    assert writer.flush(60)
    writer.close()
    store.close()

    out = shown(tether(sqlite_url, "traces", "show", run.run_id).stdout)
    drawn = re.findall(r"decision-(\d{3})", out)
    assert len(drawn) == 100 and drawn == sorted(drawn)  # in time order
    blocks = [f"{i:03d}" for i in range(300) if i % 6 == 5]
    assert set(blocks) <= set(drawn)  # all 50 blocks, then the first allows
    assert "… 200 more events here: --json prints them all" in out
    everything = json.loads(tether(sqlite_url, "traces", "show", run.run_id, "--json").stdout)
    assert len(everything["events"]) == 300
