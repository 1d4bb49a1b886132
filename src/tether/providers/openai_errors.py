"""How an OpenAI-compatible endpoint's failures become errors: ``Transient`` for what may pass
on a retry (429, 5xx, connection errors, timeouts, a stream cut short), ``ProviderError`` for
the rest, with a hint; the API key and secrets in ``base_url`` scrubbed from every message.

Servers differ in how they say the same thing (an unknown model is a 404 from OpenAI and vLLM,
a 400 from LiteLLM), so hints read the error text, not the status alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import httpx

from tether.core import ProviderError
from tether.providers import openai_wire
from tether.providers.http_client import (
    LineTooLong,
    ResponseTooLarge,
    display_url,
    retry_after,
    url_secrets,
)

_REDACTED: Final = "[REDACTED]"
_UNKNOWN_MODEL_PHRASES: Final = (
    "invalid model",
    "unknown model",
    "no such model",
    "not a valid model",
    "model_not_found",
    "not found",
    "does not exist",
)
"""How servers say a model name is unknown (OpenAI and vLLM: 404 "does not exist", LiteLLM:
400 "Invalid model name passed in model=...", Ollama: 404 "not found"); the error text must
also name the model, so "This model's maximum context length..." is not taken for one."""
_STATUS_HINTS: Final = {
    400: "the server rejected the request: check model.name, the model settings "
    "(temperature, max_tokens, seed) and the tools' parameter schemas",
    401: "check the API key (model.api_key_env names the variable that holds it)",
    403: "the API key is not allowed to use this model or endpoint",
    404: "check model.name and model.base_url",
}
_OUT_OF_QUOTA_PHRASES: Final = ("insufficient_quota", "exceeded your current quota")
"""How OpenAI says, with a 429, that the account has no quota or credit left: unlike a rate
limit, it does not pass by waiting."""
_OUT_OF_QUOTA_HINT: Final = (
    "the account behind the API key has run out of quota or credit: check its plan and "
    "billing (waiting or retrying will not help), or add fallback_models"
)
_GAVE_UP_HINT: Final = (
    "the provider is overloaded, slow or unreachable; raise model.max_retries or "
    "model.timeout_s, or add fallback_models"
)


_TRANSIENT_ERROR_TYPES: Final = frozenset(
    {
        "server_error",
        "internal_server_error",
        "internalservererror",
        "api_error",
        "overloaded_error",
        "service_unavailable",
        "rate_limit_error",
        "rate_limit_exceeded",
        "timeout",
    }
)
"""Error types (``error.type``, ``error.code``) servers use for a failure of their own or a
busy moment: OpenAI's ``server_error`` mid-stream, vLLM's ``InternalServerError``, the
``overloaded_error`` and ``rate_limit_error`` of Anthropic-style proxies."""


def transient_status(error: Any) -> int | None:
    """Whether an ``error`` member says the server failed or was busy (which a retry may get
    past): its status (``code`` or ``status``, a number or digits) when that is 429 or 5xx, 0
    when only its type says so, else ``None`` (the request's fault, or no telling)."""
    if not isinstance(error, Mapping):
        return None
    for key in ("code", "status", "status_code"):
        value = error.get(key)
        if isinstance(value, str) and value.isdigit() and len(value) == 3:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value if value == 429 or value >= 500 else None
    for key in ("type", "code"):
        value = error.get(key)
        if isinstance(value, str) and value.lower() in _TRANSIENT_ERROR_TYPES:
            return 0
    return None


_AUTH_ERROR_TYPES: Final = {
    "invalid_api_key": 401,
    "authentication_error": 401,
    "authenticationerror": 401,
    "unauthorized": 401,
    "auth_error": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "permissiondeniederror": 403,
    "forbidden": 403,
}
"""Error types and codes servers use, inside a 200 (an error event mid-stream), for a key
refused or not allowed: OpenAI's ``invalid_api_key``, Anthropic-style proxies'
``authentication_error`` and ``permission_error``, LiteLLM's ``auth_error``."""


def auth_status(error: Any) -> int | None:
    """401 or 403 when an ``error`` member says the key was refused or is not allowed (its
    status, ``code`` or ``status``, a number or digits; else its type or code), else
    ``None``."""
    if not isinstance(error, Mapping):
        return None
    for key in ("code", "status", "status_code"):
        value = error.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if value in (401, 403) and not isinstance(value, bool):
            return int(value)
    for key in ("type", "code"):
        value = error.get(key)
        if isinstance(value, str) and value.lower() in _AUTH_ERROR_TYPES:
            return _AUTH_ERROR_TYPES[value.lower()]
    return None


class Transient(Exception):
    """A failure worth retrying: 429, 5xx, connection error, timeout, truncated stream."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class OpenAIErrors:
    """The errors of one model: its name, endpoint and key are what messages name or hide."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        url: str,
        api_key: str | None,
        api_key_env: str | None,
        timeout_s: float,
    ) -> None:
        self._model = model
        self._base_url = base_url
        self.shown_url = display_url(url)
        """The endpoint as messages show it (credentials in ``base_url`` hidden)."""
        self._key_sent = api_key is not None
        self._api_key_env = api_key_env
        """Named in messages when no key is sent (the variable, never its value)."""
        self._timeout_s = timeout_s
        # Scrubbed from every message; a URL secret too short to scrub safely is still hidden
        # wherever the URL is shown.
        secrets = {s for s in url_secrets(base_url) if len(s) >= 4}
        if api_key:
            secrets.add(api_key)
        self._secrets = sorted(secrets, key=len, reverse=True)
        self.wire = openai_wire.WireErrors(
            error=self.error,
            garbage=self.garbage,
            reported=self.reported,
            too_long=self.event_too_long,
        )
        """The same errors, as the wire format's parsers take them."""

    def redact(self, text: str) -> str:
        """``text`` with the API key and ``base_url`` secrets replaced."""
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def error(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        misconfigured: bool = False,
    ) -> ProviderError:
        """The ``ProviderError`` for ``message`` (and its hint), redacted."""
        # An unknown model name is a setup problem whatever the status code (servers differ).
        model_hint = self._unknown_model_hint(message)
        hint = hint or model_hint
        return ProviderError(
            self.redact(message),
            hint=None if hint is None else self.redact(hint),
            status_code=status_code,
            retryable=retryable,
            misconfigured=misconfigured or model_hint is not None,
        )

    def garbage(self, what: str, excerpt: str) -> ProviderError:
        """The error for a response that is not what an OpenAI-compatible server sends."""
        return self.error(
            f"unexpected response from {self.shown_url}: {what}; "
            f"body starts: {self.redact(excerpt)[: openai_wire.EXCERPT_CHARS]!r}",
            hint="is model.base_url an OpenAI-compatible /v1 endpoint?",
        )

    def for_status(self, response: httpx.Response, raw: bytes) -> Exception:
        """What to raise for a response whose status is not a success (``raw``: its body):
        ``Transient`` for 429 and 5xx, else ``ProviderError`` (a 429 that says the account
        is out of quota too: no retry will help)."""
        status = response.status_code
        text = self.redact(raw.decode("utf-8", errors="replace"))
        detail = openai_wire.api_error_message(text)
        message = f"{self.shown_url} returned HTTP {status}: {detail}"
        if not self._key_sent:
            message += " (no API key was sent)"
        if status == 429 and any(p in text.lower() for p in _OUT_OF_QUOTA_PHRASES):
            return self.error(
                message, hint=_OUT_OF_QUOTA_HINT, status_code=status, misconfigured=True
            )
        if status == 429 or status >= 500:
            return Transient(message, status_code=status, retry_after=retry_after(response.headers))
        hint = self._auth_hint(status) if status in (401, 403) else _STATUS_HINTS.get(status)
        redirect = 300 <= status < 400
        if redirect:
            hint = self._redirect_hint(response)
        return self.error(
            message,
            hint=self._unknown_model_hint(message) or hint,
            status_code=status,
            misconfigured=redirect or status in (401, 403, 404),
        )

    def _redirect_hint(self, response: httpx.Response) -> str:
        """Redirects are not followed (the API key would go wherever the server says)."""
        try:
            target = display_url(str(response.url.join(response.headers["location"])))
        except (KeyError, httpx.InvalidURL, TypeError, ValueError):
            return "the server answered with a redirect: check model.base_url"
        return (
            f"the server redirects to {target}: if that is the endpoint, set model.base_url "
            "to match it (redirects are not followed, so the API key goes nowhere else)"
        )

    def reported(self, error: Any, where: str) -> Exception:
        """The failure for an ``error`` member the server sent inside a 200 (``where``:
        "returned an error", say): ``Transient`` when it says the server failed or was busy
        (``transient_status``), as a 5xx or 429 response is; else ``ProviderError``."""
        message = f"{self.shown_url} {where}: {openai_wire.error_text(error, self.redact)}"
        status = transient_status(error)
        if status is not None:
            return Transient(self.redact(message), status_code=status or None)
        status = auth_status(error)
        if status is None:
            return self.error(message)
        # A key refused inside a 200 (an error event mid-stream, an error body): the same
        # diagnosis as the 401 or 403 status it stands for.
        return self.error(
            message, hint=self._auth_hint(status), status_code=status, misconfigured=True
        )

    def gave_up(self, last: Transient, attempts: int) -> ProviderError:
        """The error once every attempt failed, ``last`` the last failure."""
        hint = _GAVE_UP_HINT
        if last.status_code is not None and not self._key_sent:
            # A server that wants a key may answer its absence with a 500 (LiteLLM does).
            hint = f"{self._no_key_hint()}; or else {hint}"
        return self.error(
            f"{last.message} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})",
            hint=hint,
            status_code=last.status_code,
            retryable=True,
        )

    def broke_off(self, exc: Transient) -> ProviderError:
        """The error for a stream that failed after part of its reply was yielded."""
        return self.error(
            f"{exc.message}; not retried, since part of the reply was already out",
            hint="the provider broke off its reply; run again, or add fallback_models",
            status_code=exc.status_code,
            retryable=True,
        )

    def timed_out(self) -> Transient:
        """The failure of an attempt that took longer than ``timeout_s``."""
        return Transient(f"request to {self.shown_url} timed out after {self._timeout_s:g}s")

    @contextlib.asynccontextmanager
    async def from_httpx(self) -> AsyncIterator[None]:
        """httpx's failures, and a body past its cap, as ``Transient`` or ``ProviderError``."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise self.timed_out() from exc
        except httpx.TransportError as exc:
            if _broke_protocol(exc):
                raise self.malformed_http(exc) from exc
            raise Transient(
                f"cannot reach {self.shown_url}: {type(exc).__name__}: "
                f"{_detail(exc, 'connection failed')}"
            ) from exc
        except httpx.DecodingError as exc:
            raise self.error(f"cannot decode the response from {self.shown_url}: {exc}") from exc
        except ResponseTooLarge as exc:
            raise self.error(
                f"the response from {self.shown_url} is larger than "
                f"{exc.limit:,} bytes (max_response_bytes); stopped reading it",
                hint="lower model.max_tokens, or check that model.base_url is a chat "
                "completions endpoint",
            ) from None
        except LineTooLong as exc:
            raise self.event_too_long(exc.limit) from None

    def malformed_http(self, exc: httpx.TransportError) -> ProviderError:
        """The error for a reply that breaks HTTP itself (``_broke_protocol``): the server's
        doing, which a retry only repeats (it was retried, and said to be a provider
        "overloaded, slow or unreachable")."""
        detail = _detail(exc, "not valid HTTP")
        if detail == _HEAD_TOO_LONG:
            detail = (
                f"its head (status line and headers) is longer than the {_MAX_HEAD_BYTES:,} "
                "bytes the HTTP client reads"
            )
        return self.error(
            f"malformed reply from {self.shown_url}: {detail}; not retried",
            hint=f"the server at {display_url(self._base_url)} (model.base_url) does not "
            "answer as an HTTP server should: check that model.base_url points at an "
            "OpenAI-compatible server, and any proxy between",
        )

    def event_too_long(self, limit: int) -> ProviderError:
        """The error for a stream event longer than ``limit`` characters."""
        return self.error(
            f"a stream event from {self.shown_url} is longer than {limit:,} characters "
            "(the most Tether reads of one event); stopped reading it",
            hint="check that model.base_url is an OpenAI-compatible chat completions endpoint",
        )

    @contextlib.asynccontextmanager
    async def mid_stream(self, chunks: Callable[[], int]) -> AsyncIterator[None]:
        """A stall or a cut while a stream's lines are read, as ``Transient`` naming how many
        chunks (``chunks()``) had come."""
        try:
            yield
        except (httpx.TimeoutException, TimeoutError) as exc:
            # TimeoutError: bytes kept coming, but no event among them (``lines_capped``),
            # or only chunks that carried nothing.
            raise Transient(
                f"the stream from {self.shown_url} stalled: no event for "
                f"{self._timeout_s:g}s after {chunks()} chunk(s) (a chunk without text, a "
                "tool call, usage or a finish reason does not count)"
            ) from exc
        except httpx.TransportError as exc:
            if _broke_protocol(exc):
                raise self.malformed_http(exc) from exc
            raise Transient(
                f"the connection to {self.shown_url} was cut mid-stream after "
                f"{chunks()} chunk(s): {type(exc).__name__}: {_detail(exc, 'no detail')}"
            ) from exc

    def _unknown_model_hint(self, message: str) -> str | None:
        """A hint naming ``model.name`` when ``message`` says the server does not know it."""
        text = message.lower()
        if self._model.lower() not in text or not any(p in text for p in _UNKNOWN_MODEL_PHRASES):
            return None
        return (
            f"check model.name: the server at {display_url(self._base_url)} does not know "
            f"{self._model!r} (for a proxy such as LiteLLM, the name must be one in its model list)"
        )

    def _auth_hint(self, status: int) -> str:
        """The hint for a key refused (401) or not allowed (403)."""
        return self._no_key_hint() if not self._key_sent else _STATUS_HINTS[status]

    def _no_key_hint(self) -> str:
        variable = self._api_key_env or "the variable model.api_key_env names"
        return (
            f"no API key was sent ({variable} is not set): if the server needs one, "
            f"export {variable}=<your key>"
        )


_HEAD_TOO_LONG: Final = "Receive buffer too long"
"""What h11 says of a response head past ``_MAX_HEAD_BYTES``."""
_MAX_HEAD_BYTES: Final = 100 * 1024
"""The longest response head httpcore lets h11 read (``MAX_INCOMPLETE_EVENT_SIZE``)."""
_CONNECTION_CUT: Final = ("closed connection", "disconnected")
"""How httpcore and h11 word a ``RemoteProtocolError`` that is a connection cut short ("Server
disconnected without sending a response", "peer closed connection without sending complete
message body", "peer unexpectedly closed connection"): worth a retry. Every other one is
bytes that break HTTP (a head too long, an illegal header line, a bad Content-Length)."""


def _broke_protocol(exc: httpx.TransportError) -> bool:
    """The server sent what is not HTTP (a ``RemoteProtocolError`` that is not a connection
    cut: ``_CONNECTION_CUT``)."""
    if not isinstance(exc, httpx.RemoteProtocolError):
        return False
    text = _detail(exc, "").lower()
    return bool(text) and not any(cut in text for cut in _CONNECTION_CUT)


def _detail(exc: BaseException, default: str) -> str:
    """The text of ``exc``, else of the first exception behind it that has one: httpx's
    ``ReadError`` for a reset connection says nothing; the ``ConnectionResetError`` behind it
    says "[Errno 104] Connection reset by peer"."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if str(cause):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return default
