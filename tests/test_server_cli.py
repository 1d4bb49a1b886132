"""``tether serve`` as a user starts it: a child process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket

import httpx

from fakes.cli import run_cli
from fakes.server import tether_serve


def test_serve_prints_a_working_url_and_key_and_stops_on_ctrl_c(sqlite_url: str) -> None:
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve("--print-key", env=env) as served:
        assert served.key is not None
        answer = httpx.get(
            f"{served.url}/api/v1/whoami", headers={"Authorization": f"Bearer {served.key}"}
        )
        assert answer.json()["role"] == "admin"
        assert httpx.get(f"{served.url}/api/v1/whoami").status_code == 401
        served.proc.send_signal(signal.SIGINT)
        assert served.proc.wait(timeout=30) == 0
        err = served.proc.stderr.read()  # type: ignore[union-attr]
        assert "stopped" in err and "Traceback" not in err
        assert served.key not in err


def test_sigterm_stops_it_cleanly_too(sqlite_url: str) -> None:
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve(env=env) as served:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0
        assert "Traceback" not in served.proc.stderr.read()  # type: ignore[union-attr]


def test_dev_mode_needs_no_key_and_says_so(sqlite_url: str) -> None:
    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    with tether_serve("--dev", env=env) as served:
        me = httpx.get(f"{served.url}/api/v1/whoami").json()
        assert me["dev"] is True and me["role"] == "admin"
        page = httpx.get(f"{served.url}/login", follow_redirects=False)
        assert page.status_code == 303  # nothing to sign in to
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(timeout=30)
        said = served.proc.stderr.read()  # type: ignore[union-attr]
        assert said.count("dev mode: no sign-in, every request acts as an admin") == 1, said


def test_dev_mode_is_refused_off_loopback(sqlite_url: str) -> None:
    for host in ("0.0.0.0", "192.0.2.1", "example.test"):
        result = run_cli("--database-url", sqlite_url, "serve", "--dev", "--host", host)
        assert result.returncode == 1
        assert "--dev serves without sign-in and only on 127.0.0.1" in result.stderr


def test_a_port_in_use_is_one_clear_error(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        result = run_cli("--database-url", sqlite_url, "serve", "--port", port, "--print-key")
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    # --print-key made an admin key before binding: nobody was shown it, yet it stayed valid
    # for a day (`make demo` on a taken port left one per try).
    keys = run_cli("--database-url", sqlite_url, "keys", "list", "--json")
    assert keys.returncode == 0 and json.loads(keys.stdout) == [], keys.stdout


def test_a_store_that_cannot_be_opened_is_said_before_serving(tmp_path: object) -> None:
    result = run_cli("--database-url", "postgresql://nobody@127.0.0.1:1/x", "serve")
    assert result.returncode == 1 and "cannot open the trace store" in result.stderr
    assert "Tether serving" not in result.stdout


def test_a_proxy_address_that_is_no_address_is_refused(sqlite_url: str) -> None:
    """A typo in --forwarded-allow-ips was taken silently: the proxy was then never believed
    and every client's address recorded as the proxy's."""
    result = run_cli(
        "--database-url",
        sqlite_url,
        "serve",
        "--port",
        "0",
        "--forwarded-allow-ips",
        "10.0.0.5,bogus",
    )
    assert result.returncode == 2, result.stdout
    assert "'bogus' is not an IP address or network" in result.stderr
    assert "Tether serving" not in result.stdout


def test_serving_beyond_loopback_over_plain_http_warns(sqlite_url: str) -> None:
    """--host 0.0.0.0 without --secure-cookies serves keys and cookies over plain HTTP to the
    network: said once on start (the server still starts: a TLS proxy may be in front)."""
    import subprocess
    import sys

    env = {**os.environ, "TETHER_DATABASE_URL": sqlite_url}
    for extra, warned in (((), True), (("--secure-cookies",), False)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "serve", "--host", "0.0.0.0", "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert "Tether serving on http://0.0.0.0:" in proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        assert ("warning: serving on 0.0.0.0 over plain HTTP" in err) is warned, err
