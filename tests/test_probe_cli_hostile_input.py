"""The CLI against hostile input and readers, through real ``tether`` processes and real SQLite
stores: numbers too large to read or to print back as JSON, and readers of stdout that stop
early (``| head``), which end a command quietly with status 0 and never fail a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TETHER = (sys.executable, "-m", "tether")


def tether(
    db: str, *args: str, cwd: Path | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "tether", "--database-url", db, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def read_a_little(db: str, *args: str, stdin: Path | None = None) -> tuple[int, bytes, bytes]:
    """Run ``tether ARGS``, read the first bytes of its output and close the pipe, as
    ``| head -c 10`` does: exit status, what was read, stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    with open(stdin or os.devnull, "rb") as source:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "--database-url", db, *args],
            stdin=source,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=120), first, err


def write_agent(folder: Path, text: str) -> Path:
    (folder / "script.yaml").write_text(json.dumps({"steps": [{"text": text}]}))
    spec = folder / "agent.yaml"
    spec.write_text(
        "name: pipes\nmodel: {provider: scripted, name: gpt-4.1-mini, script: script.yaml}\n"
    )
    return spec


# -- numbers ------------------------------------------------------------------------------------


def test_an_integer_too_long_to_read_is_a_spec_error_at_its_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_agent(tmp_path, "hi")
    spec.write_text(spec.read_text() + "limits:\n  max_turns: " + "9" * 5000 + "\n")
    done = tether(sqlite_url, "validate", str(spec))
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f"{spec}:4:" in err and "too long" in err
    assert "unexpected error" not in err and "ValueError" not in err
    as_json = json.loads(tether(sqlite_url, "validate", str(spec), "--json").stdout)
    assert f"{spec}:4:" in as_json["error"]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("9" * 5000, "the integer 99999999999999999999... is too long"),
        ("1e999", "the number 1e999 is out of range"),
        ("-Infinity", "-Infinity is not a JSON value"),
        ("NaN", "NaN is not a JSON value"),
    ],
    ids=["long-integer", "overflowing-float", "infinity", "nan"],
)
def test_scan_refuses_a_number_it_cannot_copy_back_as_json(
    sqlite_url: str, number: str, message: str
) -> None:
    lines = f'{{"text": "fine", "id": 1}}\n{{"text": "odd", "id": {number}}}\n'.encode()
    done = tether(sqlite_url, "scan", "-", "--kind", "user", stdin=lines)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert f"<stdin>:2: not JSON: {message}" in err and "Traceback" not in err
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]  # all of it JSON
    assert [v["id"] for v in verdicts] == [1]


# -- a reader that stops early ------------------------------------------------------------------


def test_traces_list_json_into_a_reader_that_stops_early_ends_quietly(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_agent(tmp_path, "ok")
    for _ in range(4):  # more than a pipe holds (64 KiB), in pieces written one run at a time
        assert tether(sqlite_url, "run", str(spec), "-i", "x" * 60_000).returncode == 0
    code, first, err = read_a_little(sqlite_url, "traces", "list", "--json")
    assert (code, err) == (0, b"")
    assert first.startswith(b"{")


def test_a_streamed_run_into_a_reader_that_stops_early_is_not_failed(
    tmp_path: Path, sqlite_url: str
) -> None:
    # Far more words than a pipe holds: the printer is still streaming when the reader goes.
    spec = write_agent(tmp_path, "{input} {input} {input}")
    code, first, err = read_a_little(
        sqlite_url, "run", str(spec), "-i", "word " * 20_000, "--stream"
    )
    assert (code, err) == (0, b""), err
    assert first == b"word word "
    listed = json.loads(tether(sqlite_url, "traces", "list", "--json").stdout)["runs"]
    assert [(r["status"], r["outcome"]) for r in listed] == [("completed", "final_answer")]


def test_scan_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path, sqlite_url: str) -> None:
    texts = b"".join(
        json.dumps({"id": i, "text": "mail jane@example.com " * 10}).encode() + b"\n"
        for i in range(2_000)
    )
    path = tmp_path / "texts.jsonl"
    path.write_bytes(texts)
    for args, stdin in ((("scan", str(path)), None), (("scan", "-"), path)):
        code, first, err = read_a_little(sqlite_url, *args, "--kind", "user", stdin=stdin)
        assert (code, err) == (0, b""), (args, err)
        assert first.startswith(b'{"id":0')


# -- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_in_scan_exits_130_like_every_other_command(sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether",
            "--database-url",
            sqlite_url,
            "scan",
            "-",
            "--kind",
            "user",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b'{"id": 1, "text": "mail jane@example.com"}\n')
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # judged: it now waits for the next line
        assert first["id"] == 1
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"aborted" not in err


@pytest.mark.parametrize(
    ("key", "found"),
    [("[a, b]", "a list"), ("{a: 1}", "a mapping")],
    ids=["list", "mapping"],
)
def test_a_complex_mapping_key_is_a_spec_error_at_its_line(
    tmp_path: Path, sqlite_url: str, key: str, found: str
) -> None:
    spec = write_agent(tmp_path, "hi")
    spec.write_text(spec.read_text() + f"? {key}\n: value\n")
    done = tether(sqlite_url, "validate", str(spec))
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f"{spec}:3:3: malformed YAML" in err and f"found a key that is {found}" in err
    assert "unexpected error" not in err and "TypeError" not in err


# -- standard streams closed or full ------------------------------------------------------------


def test_a_run_with_stdout_closed_still_runs_and_is_recorded(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_agent(tmp_path, "ok")
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DEBUG"}
    for stream in ((), ("--stream",)):
        done = subprocess.run(  # `tether run ... >&-`
            [*TETHER, "--database-url", sqlite_url, "run", str(spec), "-i", "hi", *stream],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: os.close(1),
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert b"Traceback" not in done.stderr
    listed = json.loads(tether(sqlite_url, "traces", "list", "--json").stdout)["runs"]
    assert [r["outcome"] for r in listed] == ["final_answer", "final_answer"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_streamed_run_whose_output_cannot_be_written_is_recorded_as_it_ended(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = write_agent(tmp_path, "an answer of several words")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [*TETHER, "--database-url", sqlite_url, "run", str(spec), "-i", "hi", "--stream"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert done.returncode == 1  # its result could not be printed, and it says so
    assert b"No space left on device" in done.stderr
    listed = json.loads(tether(sqlite_url, "traces", "list", "--json").stdout)["runs"]
    assert [(r["outcome"], r["error"]) for r in listed] == [("final_answer", None)]


@pytest.mark.parametrize(
    ("section", "name", "what"),
    [
        ("guards:\n  policy: pol.yaml\n", "pol.yaml", "guards policy file"),
        ("authorization:\n  policies: [p.cedar]\n", "p.cedar", "policy file"),
        ("budgets:\n  policy: b.yaml\n", "b.yaml", "budgets policy file"),
    ],
)
def test_a_file_a_spec_names_that_is_a_named_pipe_is_refused_not_waited_on(
    tmp_path: Path, sqlite_url: str, section: str, name: str, what: str
) -> None:
    """``tether validate`` of a spec whose policy file was made with ``mkfifo`` waited for a
    writer for ever; a file a spec names is a file (the spec itself may still be a pipe)."""
    os.mkfifo(tmp_path / name)
    (tmp_path / "s.yaml").write_text("steps:\n  - text: hi\n", encoding="utf-8")
    (tmp_path / "agent.yaml").write_text(
        "name: a\nmodel: {provider: scripted, name: m, script: s.yaml}\n" + section,
        encoding="utf-8",
    )
    for command in (("validate",), ("run", "-i", "hi")):
        done = tether(sqlite_url, *command[:1], str(tmp_path / "agent.yaml"), *command[1:])
        assert done.returncode != 0
        assert f"the {what} is a named pipe, not a file" in done.stderr.decode(), done.stderr
