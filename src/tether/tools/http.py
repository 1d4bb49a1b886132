"""Declarative HTTP tools: one request built from a URL template and the model's arguments."""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
from pydantic import BaseModel

from tether.core import SpecError, ToolArgumentsError, ToolError
from tether.providers.http_client import LoopBoundClient, shared_ssl_context
from tether.spec import HttpToolSpec
from tether.spec.model import URL_FIELD as _ARG
from tether.tools.base import SideEffects, ToolResult
from tether.tools.function import arguments_model, validate_arguments

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
MAX_RESPONSE_CHARS = 16_000
MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of a response; the model sees at most MAX_RESPONSE_CHARS of it."""


def expand_env(value: str, where: str, missing: list[str] | None = None) -> str:
    """Replace ``${VAR}`` with the environment's value. A missing variable is a ``SpecError``,
    or, when a ``missing`` list is given, recorded there and left as it is."""

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in os.environ:
            if missing is not None:
                missing.append(var)
                return m.group(0)
            raise SpecError(
                f"{where}: environment variable {var} is not set",
                hint=f"export {var}=... before running the agent",
            )
        return os.environ[var]

    return _ENV.sub(sub, value)


class HttpTool:
    """A tool that performs one HTTP request. Only ``allowed_hosts`` are reachable, redirects
    are not followed, and header values (which may carry secrets) never reach the trace."""

    def __init__(
        self,
        spec: HttpToolSpec,
        *,
        client: httpx.AsyncClient | None = None,
        strict_env: bool = True,
    ) -> None:
        self.spec = spec
        where = f"tool '{spec.name}'"
        self.missing_env: list[str] = []
        """With ``strict_env=False``: environment variables the tool needs but are not set."""
        missing = None if strict_env else self.missing_env
        expand_env(spec.url, f"{where} url", missing)  # fail early on a missing variable
        # ${ENV} values are inserted after the {arg} fields are filled, so neither a value from
        # the environment nor a model's argument can smuggle in a field of the other kind.
        self._env = {v: os.environ[v] for v in _ENV.findall(spec.url) if v in os.environ}
        self._headers = {
            k: expand_env(v, f"{where} header {k}", missing) for k, v in spec.headers.items()
        }
        # The spec has checked that these are declared, required parameters.
        self._path_args = set(_ARG.findall(spec.url))
        self._allowed = {h.lower() for h in spec.allowed_hosts}
        if not self.missing_env:
            self._check_static_url(where)
        self._args_model: type[BaseModel] = arguments_model(
            spec.name,
            {
                pname: (
                    _TYPES[p.type] if p.required else _TYPES[p.type] | None,
                    ... if p.required else None,
                    p.description or None,
                )
                for pname, p in spec.parameters.items()
            },
        )
        self._parameters = self._args_model.model_json_schema()
        self._parameters.pop("title", None)
        self._given_client = client
        self._http = LoopBoundClient(
            lambda: httpx.AsyncClient(
                follow_redirects=False,
                verify=shared_ssl_context(),
                timeout=httpx.Timeout(spec.timeout_s),
            )
        )
        # Values that came from the environment (tokens, internal hosts) never reach a message,
        # neither as they are nor percent-encoded.
        secrets = {
            os.environ[v]
            for v in _ENV.findall(spec.url + "".join(spec.headers.values()))
            if os.environ.get(v)
        }
        variants = {form for s in secrets for form in (s, quote(s, safe=""), quote_plus(s))}
        self._env_values = sorted(variants, key=len, reverse=True)

    def _check_static_url(self, where: str) -> None:
        """Refuse at build time a URL whose scheme or (argument-free) host can never pass."""

        def probe(filler: str) -> httpx.URL:
            url = _ARG.sub(filler, self.spec.url)
            url = _ENV.sub(lambda m: self._env.get(m.group(1), ""), url)
            try:
                return httpx.URL(url)
            except httpx.InvalidURL as exc:
                raise SpecError(f"{where}: url is not a valid URL: {exc}") from None

        first, second = probe("a1"), probe("b2")
        if first.scheme not in ("http", "https"):
            raise SpecError(f"{where}: url must be http or https, not {first.scheme or 'empty'!r}")
        if first.host == second.host and first.host.lower() not in self._allowed:
            raise SpecError(
                f"{where}: url host {first.host!r} is not in allowed_hosts {sorted(self._allowed)}"
            )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    @property
    def side_effects(self) -> SideEffects:
        return self.spec.side_effects

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.spec.scopes)

    @property
    def timeout_s(self) -> float:
        return self.spec.timeout_s

    def build_request(self, arguments: dict[str, Any]) -> httpx.Request:
        """The request for these arguments; raises if the URL leaves the allowed hosts."""
        args = validate_arguments(self.name, self._args_model, arguments)
        for name in self._path_args:
            if str(args[name]).strip(".") == "":
                raise ToolArgumentsError(
                    f"invalid arguments for tool '{self.name}': {name}: "
                    f"{args[name]!r} is not allowed in a URL path"
                )
        url = _ARG.sub(lambda m: quote(str(args[m.group(1)]), safe=""), self.spec.url)
        url = _ENV.sub(lambda m: self._env.get(m.group(1), m.group(0)), url)
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ToolError(f"tool '{self.name}': invalid URL: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise ToolError(f"tool '{self.name}': only http and https URLs are allowed")
        if parsed.host.lower() not in self._allowed:
            raise ToolError(
                f"tool '{self.name}': host {parsed.host!r} is not in allowed_hosts "
                f"{sorted(self._allowed)}"
            )
        # An optional argument that was not given is left out, never sent as "None".
        rest = {k: v for k, v in args.items() if k not in self._path_args and v is not None}
        if self.spec.method == "GET" or self.spec.method == "DELETE":
            # Merge, so a query already in the URL template (an API key, a {arg}) is kept.
            url_with_args = parsed.copy_merge_params(rest)
            return httpx.Request(self.spec.method, url_with_args, headers=self._headers)
        return httpx.Request(self.spec.method, parsed, json=rest, headers=self._headers)

    def _redact(self, text: str) -> str:
        for secret in self._env_values:
            text = text.replace(secret, "***")
        return text

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        request = self.build_request(arguments)
        client = self._given_client or self._http.get()
        # Messages name the URL template, never the expanded URL: ${ENV} values may be secrets.
        where = f"tool '{self.name}': {request.method} {self.spec.url}"
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ToolError(f"{where} timed out after {self.spec.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise ToolError(self._redact(f"{where} failed: {type(exc).__name__}: {exc}")) from None
        body = raw[:MAX_RESPONSE_BYTES].decode(response.encoding or "utf-8", errors="replace")
        body = body[:MAX_RESPONSE_CHARS]
        if 300 <= response.status_code < 400:
            raise ToolError(
                f"{where}: HTTP {response.status_code} redirect refused (HTTP tools do not "
                "follow redirects; point the url at the final address)"
            )
        if response.status_code >= 400:
            raise ToolError(self._redact(f"{where}: HTTP {response.status_code}: {body[:300]}"))
        data: Any = body
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(body)
            except ValueError:
                data = body
        return ToolResult(content=body, data=data)

    async def aclose(self) -> None:
        await self._http.aclose()
