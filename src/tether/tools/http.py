"""Declarative HTTP tools: one request built from a URL template and the model's arguments."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel

from tether.core import SpecError, ToolArgumentsError, ToolError, describe_exception
from tether.spec import HttpToolSpec
from tether.spec.model import URL_FIELD as _ARG
from tether.tools.addresses import AddressPolicy, Resolver
from tether.tools.base import DEFAULT_MAX_RESULT_CHARS, SpecToolFields, ToolResult, clip_result
from tether.tools.function import arguments_model, validate_arguments
from tether.tools.redaction import Redactor, credential_parts, is_bare_origin, userinfo

if TYPE_CHECKING:
    # httpx (and the client module built on it) load when a tool sends its first request, not
    # when a spec is checked: importing httpx costs ~60 ms here, 190+ ms where no bytecode is
    # cached, as it loads its own command line (rich, pygments) too.
    import httpx

    from tether.providers.http_client import LoopBoundClient

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
MAX_RESPONSE_CHARS = DEFAULT_MAX_RESULT_CHARS
"""The default ``max_result_chars`` of an HTTP tool."""
MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of a response (or 4 bytes per character of ``max_result_chars``
if that is more); the model sees at most ``max_result_chars`` of it."""


# The URLs whose scheme and host are plain to read: ``scheme://[userinfo@]host[:digits]``
# followed by nothing or by ``/``, ``?`` or ``#``, in printable ASCII, the host a name of
# unreserved characters or an IP address. ``httpx.URL`` reads these the same way (scheme and
# host lower-cased, brackets dropped from an IPv6 address) and accepts them all; every other
# URL is read by ``httpx.URL`` itself (see ``scheme_and_host``).
_PLAIN_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:[^@/?#]*@)?"
    r"(?:(?P<name>[A-Za-z0-9._~-]+)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::[0-9]*)?(?:[/?#].*)?"
)
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_MAX_URL_LENGTH = 65536  # httpx's limit


def scheme_and_host(url: str) -> tuple[str, str]:
    """The scheme and host of ``url`` as ``httpx.URL`` reads them; ``ValueError`` with
    httpx's message when it refuses the URL. A plain URL is read without importing httpx,
    which ``tether validate`` would otherwise load only for this check."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain and len(url) <= _MAX_URL_LENGTH and url.isascii() and url.isprintable():
        scheme, name, ipv6 = plain.group("scheme", "name", "ipv6")
        # An invalid address falls through to httpx, which says what is wrong with it.
        with contextlib.suppress(ValueError):
            if ipv6 is not None:
                ipaddress.IPv6Address(ipv6)
                return scheme.lower(), ipv6
            host = name.lower()
            if _IPV4_STYLE.fullmatch(host):
                ipaddress.IPv4Address(host)
            if not host.startswith("xn--"):  # httpx shows IDNA names decoded
                return scheme.lower(), host
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(str(exc)) from None
    return parsed.scheme, parsed.host


def expand_env(
    value: str, where: str, missing: list[str] | None = None, *, allow_empty: bool = True
) -> str:
    """Replace ``${VAR}`` with the environment's value. A missing variable (or, unless
    ``allow_empty``, an empty one) is a ``SpecError``, or, when a ``missing`` list is given,
    recorded there and left as it is."""

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        value = os.environ.get(var)
        if value is None or (not value and not allow_empty):
            if missing is not None:
                missing.append(var)
                return m.group(0)
            raise SpecError(
                f"{where}: environment variable {var} is "
                + ("not set" if value is None else "set but empty"),
                hint=f"export {var}=... before running the agent",
            )
        return value

    return _ENV.sub(sub, value)


class HttpTool(SpecToolFields):
    """A tool that performs one HTTP request. Only ``allowed_hosts`` are reachable, and only
    on public addresses or in ``allowed_networks`` (checked on the addresses connected to);
    redirects are followed only up to ``max_redirects``, each checked the same way; header
    values (which may carry secrets) never reach the trace.

    ``resolver`` replaces the system's name resolution (tests use it to play a DNS server)."""

    def __init__(
        self,
        spec: HttpToolSpec,
        *,
        resolver: Resolver | None = None,
        strict_env: bool = True,
    ) -> None:
        self.spec = spec
        self._addresses = AddressPolicy(spec.allowed_networks)
        self._resolver = resolver
        where = f"tool '{spec.name}'"
        self.missing_env: list[str] = []
        """With ``strict_env=False``: environment variables the tool needs but are not set."""
        missing = None if strict_env else self.missing_env
        # Fail early on a missing variable; an empty one leaves no URL to speak of.
        expand_env(spec.url, f"{where} url", missing, allow_empty=False)
        # ${ENV} values are inserted after the {arg} fields are filled, so neither a value from
        # the environment nor a model's argument can smuggle in a field of the other kind.
        self._env = {v: os.environ[v] for v in _ENV.findall(spec.url) if v in os.environ}
        self._headers = {
            k: expand_env(v, f"{where} header {k}", missing) for k, v in spec.headers.items()
        }
        self._redact_result, self._redact_error = self._redactors()
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
        self._http: LoopBoundClient | None = None  # made for the first request
        self._http_lock = threading.Lock()

    def _redactors(self) -> tuple[Redactor, Redactor]:
        """What to remove from results, and from error messages (which say less anyway).

        Secrets: every header value (and the long words in it: the token of ``Bearer
        <token>``), every ``${ENV}`` value in a header, the user info of the URL, and the
        ``${ENV}`` values in the URL except a bare ``scheme://host:port`` base. Error messages
        leave out every ``${ENV}`` value (internal host names too) and never show the
        expanded URL."""
        spec = self.spec
        url_values = [os.environ[v] for v in _ENV.findall(spec.url) if os.environ.get(v)]
        secrets: set[str] = set()
        for header in self._headers.values():
            secrets.update([header, *credential_parts(header)])
        secrets.update(
            os.environ[v] for v in _ENV.findall("".join(spec.headers.values())) if os.environ.get(v)
        )
        secrets.update(v for v in url_values if not is_bare_origin(v))
        static_url = _ENV.sub(lambda m: self._env.get(m.group(1), ""), _ARG.sub("x", spec.url))
        secrets.update(userinfo(static_url))
        return Redactor(secrets), Redactor([*secrets, *url_values], min_chars=1)

    def _check_static_url(self, where: str) -> None:
        """Refuse at build time a URL whose scheme or (argument-free) host can never pass."""

        def probe(filler: str) -> tuple[str, str]:
            url = _ARG.sub(filler, self.spec.url)
            url = _ENV.sub(lambda m: self._env.get(m.group(1), ""), url)
            try:
                return scheme_and_host(url)
            except ValueError as exc:
                raise SpecError(
                    self._redact_error(f"{where}: url is not a valid URL: {exc}{env_note}")
                ) from None

        used = sorted(set(_ENV.findall(self.spec.url)))
        # The expanded URL may hold secrets: name the variables, not their values.
        env_note = f" (after {', '.join(f'${{{v}}}' for v in used)} expanded)" if used else ""
        (scheme, host), (_, other_host) = probe("a1"), probe("b2")
        if scheme not in ("http", "https"):
            raise SpecError(
                f"{where}: url must be http or https, not {scheme or 'empty'!r}{env_note}"
            )
        if host == other_host and host.lower() not in self._allowed:
            raise SpecError(
                self._redact_error(
                    f"{where}: url host {host!r} is not in allowed_hosts "
                    f"{sorted(self._allowed)}{env_note}"
                )
            )
        if host == other_host:  # an address in the url: check it now, not at the first call
            with contextlib.suppress(ValueError):
                why = self._addresses.refusal(ipaddress.ip_address(host))
                if why is not None:
                    raise SpecError(
                        self._redact_error(f"{where}: url host {why}{env_note}"),
                        hint=f"to reach it on purpose, add allowed_networks: [{host}/"
                        f"{32 if ':' not in host else 128}] to the tool",
                    )

    def _client(self) -> httpx.AsyncClient:
        """The running loop's client (one per loop, made on first use). Its connections go
        only to addresses the tool's address policy lets through."""
        with self._http_lock:
            if self._http is None:
                import httpx

                from tether.providers.http_client import LoopBoundClient, shared_ssl_context
                from tether.tools.addresses import checked_transport

                timeout = self.spec.timeout_s
                addresses, resolver = self._addresses, self._resolver
                self._http = LoopBoundClient(
                    lambda: httpx.AsyncClient(
                        transport=checked_transport(addresses, shared_ssl_context(), resolver),
                        follow_redirects=False,
                        timeout=httpx.Timeout(timeout),
                        trust_env=False,
                    )
                )
            http = self._http
        return http.get()

    def _check_url(self, url: httpx.URL) -> None:
        """Refuse a URL that is not http(s) or whose host is not in ``allowed_hosts`` (its
        addresses are checked when the connection is made)."""
        if url.scheme not in ("http", "https"):
            raise ToolError(f"tool '{self.name}': only http and https URLs are allowed")
        if url.host.lower() not in self._allowed:
            raise ToolError(
                f"tool '{self.name}': host {url.host!r} is not in allowed_hosts "
                f"{sorted(self._allowed)}"
            )

    def build_request(self, arguments: dict[str, Any]) -> httpx.Request:
        """The request for these arguments; raises if the URL leaves the allowed hosts."""
        import httpx

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
        self._check_url(parsed)
        # An optional argument that was not given is left out, never sent as "None".
        rest = {k: v for k, v in args.items() if k not in self._path_args and v is not None}
        if self.spec.method == "GET" or self.spec.method == "DELETE":
            # Merge, so a query already in the URL template (an API key, a {arg}) is kept.
            url_with_args = parsed.copy_merge_params(rest)
            return httpx.Request(self.spec.method, url_with_args, headers=self._headers)
        return httpx.Request(self.spec.method, parsed, json=rest, headers=self._headers)

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        import httpx

        request = self.build_request(arguments)
        client = self._client()
        # Messages name the URL template, never the expanded URL: ${ENV} values may be secrets.
        where = f"tool '{self.name}': {request.method} {self.spec.url}"
        max_chars = self.spec.max_result_chars
        limit = max(MAX_RESPONSE_BYTES, 4 * max_chars)  # enough bytes for max_chars characters
        more = False
        try:
            response = await self._send(client, request)
            try:
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > limit:
                        more = True
                        break
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ToolError(f"{where} timed out after {self.spec.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            message = f"{where} failed: {describe_exception(exc)}"
            raise ToolError(self._redact_error(message)) from None
        text = raw[:limit].decode(response.encoding or "utf-8", errors="replace")
        if 300 <= response.status_code < 400:
            follows = self.spec.max_redirects
            if follows == 0:
                why = (
                    "max_redirects is 0: set it on the tool, or point the url at the final address"
                )
            elif response.next_request is None:
                why = "a redirect without a Location header"
            else:
                why = f"more than max_redirects ({follows}) redirects"
            raise ToolError(f"{where}: HTTP {response.status_code} redirect refused ({why})")
        if response.status_code >= 400:
            detail = self._redact_error(text)[:300]
            raise ToolError(f"{where}: HTTP {response.status_code}: {detail}")
        # Redacted before it is clipped, so no secret is cut in two and half of it kept (the
        # read limit leaves room for more than max_chars characters, so the clip comes first).
        body = self._redact_result(text)
        full_size = None
        if more:
            length = response.headers.get("content-length", "")
            full_size = f"{int(length):,} bytes" if length.isdigit() else f"over {limit:,} bytes"
        content = clip_result(body, max_chars, full_size=full_size)
        data: Any = content
        if response.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                data = json.loads(body)
        return ToolResult(content=content, data=data)

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and follow up to ``max_redirects`` redirects, each checked like
        the first request; the spec's headers go only to the origin of its url."""
        response = await client.send(request, stream=True, follow_redirects=False)
        for _ in range(self.spec.max_redirects):
            following = response.next_request
            if following is None:  # not a redirect, or one without a Location
                break
            await response.aclose()
            self._check_url(following.url)
            if (following.url.scheme, following.url.host, following.url.port) != (
                request.url.scheme,
                request.url.host,
                request.url.port,
            ):
                for name in self._headers:
                    following.headers.pop(name, None)
            response = await client.send(following, stream=True, follow_redirects=False)
        return response

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
