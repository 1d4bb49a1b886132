"""The UI, OTLP ingest and Prometheus load on the first request that reaches them: a new app
has not imported Jinja2, protobuf or prometheus-client, and each part works (and is in the
OpenAPI schema) as if it had been there from the start."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from fakes.server import serving
from tether.server import ServerConfig, create_app
from tether.server.access import AccessStore
from tether.server.roles import Role

HEAVY = ("jinja2", "google.protobuf", "prometheus_client", "tether.server.otlp")


def test_a_new_app_has_not_imported_what_its_first_request_may_not_need(tmp_path: Path) -> None:
    code = f"""
import json, sys
from tether.server import ServerConfig, create_app
create_app(ServerConfig(database_url="sqlite:///{tmp_path / "t.db"}"))
print(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == dict.fromkeys(HEAVY, False)


def test_the_otlp_constants_are_the_otlp_modules() -> None:
    from tether.server import app, otlp

    assert app.OTLP_PATH == otlp.OTLP_PATH


def test_each_part_works_as_the_first_request(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    access = AccessStore(url)
    key = access.create_key("default", Role.ADMIN)[1]
    access.engine.dispose()
    bearer = {"Authorization": f"Bearer {key}"}
    # Each on an app of its own, so each is that app's first request.
    with serving(create_app(ServerConfig(database_url=url))) as base:
        assert httpx.get(f"{base}/metrics", headers=bearer).status_code == 200
    with serving(create_app(ServerConfig(database_url=url))) as base:
        answer = httpx.post(f"{base}/v1/traces", json={"resourceSpans": []}, headers=bearer)
        assert answer.status_code == 200, answer.text
        # A body over OTLP's own limit is refused before the module is asked.
        big = httpx.post(
            f"{base}/v1/traces",
            content=b"x" * (16 << 20 | 1),
            headers={**bearer, "Content-Type": "application/x-protobuf"},
        )
        assert big.status_code == 413
    with serving(create_app(ServerConfig(database_url=url))) as base:
        # Two browsers at once on a UI nobody has opened yet.
        answers: list[int] = []

        def sign_in_page() -> None:
            answers.append(httpx.get(f"{base}/login", timeout=30).status_code)

        threads = [threading.Thread(target=sign_in_page) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200] * 4
        assert httpx.get(f"{base}/nope").status_code == 404
        assert httpx.get(f"{base}/api/v1/nope", headers=bearer).json()["error"]
    with serving(create_app(ServerConfig(database_url=url))) as base:
        schema = httpx.get(f"{base}/api/v1/openapi.json", headers=bearer).json()
        assert "/v1/traces" in schema["paths"] and "/metrics" in schema["paths"]
        assert "/runs" not in schema["paths"]  # the UI's pages are not API
        # Loaded for the schema: they answer too.
        assert httpx.get(f"{base}/metrics", headers=bearer).status_code == 200
        assert httpx.get(f"{base}/login").status_code == 200
