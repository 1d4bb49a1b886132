"""``OpenAIChatModel``: any OpenAI-compatible chat-completions endpoint over HTTP.

One ``httpx.AsyncClient`` per model instance, created lazily on first use (and again if the
model is used from a different event loop). Transient failures (429, 5xx, connection errors,
timeouts) are retried with full-jitter exponential backoff, honoring ``Retry-After``; anything
else fails at once with a ``ProviderError`` (``retryable`` tells the two kinds apart: a wrong
key, an unknown model or a reply that is not a completion will not get better by trying
again). The API key is sent as a bearer token and is never logged nor included in an error
message; neither is a password or a secret query parameter in ``base_url`` (messages and
``repr`` show the URL with them as ``***``). The wire format itself (request bodies, completions,
streamed completions) lives in ``openai_wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import httpx

from tether.core import ProviderError
from tether.providers import openai_wire
from tether.providers.http_client import (
    LoopBoundClient,
    ResponseTooLarge,
    display_url,
    lines_capped,
    read_capped,
    retry_after,
    shared_ssl_context,
    url_secrets,
)
from tether.providers.streaming import StreamEnd, StreamEvent, response_events
from tether.providers.types import ModelRequest, ModelResponse

if TYPE_CHECKING:
    from tether.spec import ModelConfig

__all__ = ["DEFAULT_BASE_URL", "MAX_RESPONSE_BYTES", "OpenAIChatModel"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
"""Base URL used when the config names none."""
MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024
"""Default cap on a response, streamed or not: a stream spends ~200 bytes of JSON per token,
so this leaves room for 100k+ streamed tokens, and a server gone wrong cannot fill memory."""

_LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
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
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

logger = logging.getLogger(__name__)

# Indirection so tests can observe backoff delays without waiting them out.
_sleep = asyncio.sleep


def _is_local(base_url: str) -> bool:
    try:
        host = httpx.URL(base_url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return host.lower() in _LOCAL_HOSTS


class _Transient(Exception):
    """A failure worth retrying: 429, 5xx, connection error, timeout, truncated stream."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class OpenAIChatModel:
    """A ``Model`` backed by an OpenAI-compatible ``/chat/completions`` endpoint.

    Works with OpenAI itself and with compatible servers (vLLM, Ollama, LiteLLM, llama.cpp).
    ``temperature``, ``seed`` and ``max_tokens`` are defaults; a request's ``settings`` override
    them. ``timeout_s`` bounds connecting, sending, and each read (for streams: the gap between
    two chunks). ``max_response_bytes`` caps a response, streamed or not (an error past it).
    ``stream`` makes ``complete()`` read the reply as server-sent events; ``stream()``
    streams in any case. ``last_attempts`` is the number of HTTP attempts the latest
    ``complete()`` or ``stream()`` made.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        stream: bool = False,
        temperature: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ProviderError(
                f"invalid base_url {display_url(base)!r} for model {name!r}",
                hint="use a full URL such as https://api.openai.com/v1",
            )
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        self._name = name
        self.base_url = base
        self._api_key = api_key or None
        self._api_key_env = api_key_env
        """Named in messages when no key is sent (the variable, never its value)."""
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.stream_completions = stream
        """Whether ``complete()`` reads its reply as server-sent events (the spec's
        ``model.stream``); ``stream()`` always does."""
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_response_bytes = max_response_bytes
        self.last_attempts: int = 0
        self._url = f"{base}/chat/completions"
        self._shown_url = display_url(self._url)
        """The endpoint as messages show it (credentials in ``base_url`` hidden)."""
        # Scrubbed from every message; a URL secret too short to scrub safely is still hidden
        # wherever the URL is shown.
        secrets = {s for s in url_secrets(base) if len(s) >= 4}
        if self._api_key:
            secrets.add(self._api_key)
        self._secrets = sorted(secrets, key=len, reverse=True)
        self._local = _is_local(base)
        self._wire_errors = openai_wire.WireErrors(
            error=self._error, garbage=self._garbage, url=self._shown_url
        )
        self._http = LoopBoundClient(self._new_client)

    @classmethod
    def from_config(cls, config: ModelConfig) -> OpenAIChatModel:
        """Build from a spec's ``ModelConfig``; reads the API key from ``api_key_env`` now.

        Raises ``ProviderError`` when the variable is unset, unless ``base_url`` points at
        ``localhost``/``127.0.0.1`` (local servers usually need no key).
        """
        base_url = config.base_url or DEFAULT_BASE_URL
        api_key = (os.environ.get(config.api_key_env) or "").strip() or None
        if api_key is None and not _is_local(base_url):
            raise ProviderError(
                f"no API key for model {config.name!r}: "
                f"environment variable {config.api_key_env} is not set",
                hint=(
                    f"export {config.api_key_env}=<your key>, or set model.api_key_env to the "
                    "name of the variable that holds it"
                ),
            )
        return cls(
            config.name,
            base_url=base_url,
            api_key=api_key,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            stream=config.stream,
            temperature=config.temperature,
            seed=config.seed,
            max_tokens=config.max_tokens,
        )

    @property
    def provider(self) -> str:
        return "openai"

    @property
    def name(self) -> str:
        return self._name

    @property
    def server(self) -> tuple[str, int]:
        """Host and port of the endpoint (OTel's ``server.address`` and ``server.port``), so
        the same model name on two servers can be told apart; never any credentials."""
        url = httpx.URL(self.base_url)
        return url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 443)

    def __repr__(self) -> str:
        return f"OpenAIChatModel(name={self._name!r}, base_url={display_url(self.base_url)!r})"

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        await self._http.aclose()

    # ------------------------------------------------------------------ public calls

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one chat completion, retrying transient failures. Raises ``ProviderError``."""
        body = self.request_body(request)
        self.last_attempts = 0
        for attempt in range(self.max_retries + 1):
            self.last_attempts = attempt + 1
            try:
                if not self.stream_completions:
                    return await self._attempt(body)
                end: StreamEnd | None = None
                async for event in self._stream_attempt(body):
                    if isinstance(event, StreamEnd):
                        end = event
                assert end is not None  # a stream attempt ends with StreamEnd or raises
                return end.response
            except _Transient as exc:
                await self._before_retry(attempt, exc)
        raise AssertionError("not reached: the last attempt raises")

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Run one chat completion as a stream (``stream_options.include_usage`` asked for),
        yielding its reply as it comes and ``StreamEnd`` last.

        Transient failures are retried as ``complete()`` does while nothing has been yielded
        yet; once something has, a failure (the connection cut, the stream stalled for
        ``timeout_s``, ended without ``[DONE]``, an error event, a malformed chunk) raises
        ``ProviderError`` and the events already yielded stand. A server that ignores
        ``stream`` and sends a plain completion is streamed as one piece.
        """
        body = self.request_body(request, stream=True)
        self.last_attempts = 0
        for attempt in range(self.max_retries + 1):
            self.last_attempts = attempt + 1
            yielded = 0
            try:
                async with contextlib.aclosing(self._stream_attempt(body)) as events:
                    async for event in events:
                        yielded += 1
                        yield event
                return
            except _Transient as exc:
                if yielded:
                    raise self._error(
                        f"{exc.message}; not retried, since part of the reply was already out",
                        hint="the provider broke off its reply; run again, or add fallback_models",
                        status_code=exc.status_code,
                        retryable=True,
                    ) from None
                await self._before_retry(attempt, exc)

    def request_body(self, request: ModelRequest, *, stream: bool | None = None) -> dict[str, Any]:
        """The JSON body sent for ``request``: ``complete()``'s by default, ``stream()``'s with
        ``stream=True``."""
        return openai_wire.request_body(
            request,
            model=self._name,
            temperature=self.temperature,
            seed=self.seed,
            max_tokens=self.max_tokens,
            stream=self.stream_completions if stream is None else stream,
            error=self._error,
        )

    async def _before_retry(self, attempt: int, exc: _Transient) -> None:
        """Wait before the next attempt after ``exc``; raise the final error after the last."""
        if attempt < self.max_retries:
            delay = self._backoff(attempt, exc.retry_after)
            logger.info(
                "model %s: attempt %d failed (%s); retrying in %.2fs",
                self._name,
                attempt + 1,
                self._redact(exc.message),
                delay,
            )
            await _sleep(delay)
            return
        attempts = self.last_attempts
        hint = (
            "the provider is overloaded, slow or unreachable; raise model.max_retries or "
            "model.timeout_s, or add fallback_models"
        )
        if exc.status_code is not None and self._api_key is None:
            # A server that wants a key may answer its absence with a 500 (LiteLLM does).
            hint = f"{self._no_key_hint()}; or else {hint}"
        raise self._error(
            f"{exc.message} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})",
            hint=hint,
            status_code=exc.status_code,
            retryable=True,
        )

    # ------------------------------------------------------------------ HTTP

    def _new_client(self) -> httpx.AsyncClient:
        headers = {"User-Agent": "tether", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            headers=headers,
            verify=shared_ssl_context(),
            # Proxy settings from the environment must not capture a local server.
            trust_env=not self._local,
        )

    async def _attempt(self, body: dict[str, Any]) -> ModelResponse:
        """One non-streamed attempt."""
        async with self._request_errors(), self._open(body) as response:
            raw = await read_capped(response, self.max_response_bytes)
        return self._parse_body(raw)

    async def _stream_attempt(self, body: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        """One streamed attempt: its events, ``StreamEnd`` last; ``_Transient`` for what may
        pass (before or after events), ``ProviderError`` for what will not."""
        async with self._request_errors(), self._open(body) as response:
            if response.headers.get("content-type", "").startswith("application/json"):
                # The server ignored "stream": it sent a plain completion.
                raw = await read_capped(response, self.max_response_bytes)
                for event in response_events(self._parse_body(raw)):
                    yield event
                return
            state = openai_wire.StreamState(self._wire_errors, default_model=self._name)
            try:
                async for line in lines_capped(response, self.max_response_bytes):
                    for event in state.feed_line(line):
                        yield event
                    if state.done:
                        break
            except httpx.TimeoutException as exc:
                raise _Transient(
                    f"the stream from {self._shown_url} stalled: no data for "
                    f"{self.timeout_s:g}s after {state.chunks} chunk(s)"
                ) from exc
            except httpx.TransportError as exc:
                raise _Transient(
                    f"the connection to {self._shown_url} was cut mid-stream after "
                    f"{state.chunks} chunk(s): {type(exc).__name__}: {exc or 'no detail'}"
                ) from exc
            for event in state.flush():
                yield event
            end = state.end()
            if end is None:
                raise _Transient(
                    f"the stream from {self._shown_url} ended without [DONE] after "
                    f"{state.chunks} chunk(s) (the connection closed early)"
                )
            yield end

    @contextlib.asynccontextmanager
    async def _open(self, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """The response to POSTing ``body``, its status checked (an error status raises as
        ``_raise_for_status`` says); its body not read yet."""
        client = self._http.get()
        async with client.stream("POST", self._url, json=body) as response:
            if not response.is_success:
                # An error body is read for its message, within the same cap.
                raw = await read_capped(response, self.max_response_bytes)
                self._raise_for_status(response, raw)
            yield response

    @contextlib.asynccontextmanager
    async def _request_errors(self) -> AsyncIterator[None]:
        """httpx's failures as ``_Transient`` or ``ProviderError``."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise _Transient(
                f"request to {self._shown_url} timed out after {self.timeout_s:g}s"
            ) from exc
        except httpx.TransportError as exc:
            detail = str(exc) or "connection failed"
            raise _Transient(
                f"cannot reach {self._shown_url}: {type(exc).__name__}: {detail}"
            ) from exc
        except httpx.DecodingError as exc:
            raise self._error(f"cannot decode the response from {self._shown_url}: {exc}") from exc
        except ResponseTooLarge as exc:
            raise self._error(
                f"the response from {self._shown_url} is larger than "
                f"{exc.limit:,} bytes (max_response_bytes); stopped reading it",
                hint="lower model.max_tokens, or check that model.base_url is a chat "
                "completions endpoint",
            ) from None

    def _raise_for_status(self, response: httpx.Response, raw: bytes) -> None:
        """The error for a response whose status is not a success; ``raw`` is its body."""
        status = response.status_code
        if response.is_success:
            return
        detail = openai_wire.api_error_message(raw)
        message = f"{self._shown_url} returned HTTP {status}: {detail}"
        if self._api_key is None:
            message += " (no API key was sent)"
        if status == 429 or status >= 500:
            raise _Transient(message, status_code=status, retry_after=retry_after(response.headers))
        hints = {
            400: "the server rejected the request: check model.name, the model settings "
            "(temperature, max_tokens, seed) and the tools' parameter schemas",
            401: "check the API key (model.api_key_env names the variable that holds it)",
            403: "the API key is not allowed to use this model or endpoint",
            404: "check model.name and model.base_url",
        }
        if status in (401, 403) and self._api_key is None:
            hints[status] = self._no_key_hint()
        raise self._error(
            message,
            hint=self._unknown_model_hint(message) or hints.get(status),
            status_code=status,
            misconfigured=status in (401, 403, 404),
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(self.backoff_max_s, retry_after))
        return random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    # ------------------------------------------------------------------ wire format

    def _parse_body(self, raw: bytes) -> ModelResponse:
        return openai_wire.parse_body(raw, self._wire_errors, default_model=self._name)

    # ------------------------------------------------------------------ errors

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _error(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        misconfigured: bool = False,
    ) -> ProviderError:
        # An unknown model name is a setup problem whatever the status code (servers differ).
        model_hint = self._unknown_model_hint(message)
        return ProviderError(
            self._redact(message),
            hint=hint or model_hint,
            status_code=status_code,
            retryable=retryable,
            misconfigured=misconfigured or model_hint is not None,
        )

    def _unknown_model_hint(self, message: str) -> str | None:
        """A hint naming ``model.name`` when ``message`` says the server does not know it."""
        text = message.lower()
        if self._name.lower() not in text or not any(p in text for p in _UNKNOWN_MODEL_PHRASES):
            return None
        return (
            f"check model.name: the server at {display_url(self.base_url)} does not know "
            f"{self._name!r} (for a proxy such as LiteLLM, the name must be one in its model list)"
        )

    def _no_key_hint(self) -> str:
        variable = self._api_key_env or "the variable model.api_key_env names"
        return (
            f"no API key was sent ({variable} is not set): if the server needs one, "
            f"export {variable}=<your key>"
        )

    def _garbage(self, what: str, excerpt: str) -> ProviderError:
        return self._error(
            f"unexpected response from {self._shown_url}: {what}; "
            f"body starts: {excerpt[: openai_wire.EXCERPT_CHARS]!r}",
            hint="is model.base_url an OpenAI-compatible /v1 endpoint?",
        )
