"""``OpenAIChatModel``: any OpenAI-compatible chat-completions endpoint over HTTP.

One ``httpx.AsyncClient`` per model instance, created lazily on first use (and again if the
model is used from a different event loop). Transient failures (429, 5xx, connection errors,
timeouts) are retried with full-jitter exponential backoff, honoring ``Retry-After``; anything
else fails at once with a ``ProviderError`` (``retryable`` tells the two kinds apart: a wrong
key, an unknown model or a reply that is not a completion will not get better by trying
again). The API key is sent as a bearer token and is never logged nor included in an error
message; neither is a password or a secret query parameter in ``base_url`` (messages and
``repr`` show the URL with them as ``***``). ``stream()`` yields the reply as it comes
(``tether.providers.streaming``); a response, streamed or not, is capped at
``max_response_bytes``. The wire format itself (request bodies, completions, streamed
completions) lives in ``openai_wire``; how failures become errors, in ``openai_errors``.
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

from tether.core import ProviderError, describe_exception
from tether.providers import openai_wire
from tether.providers.call_events import report_spent
from tether.providers.http_client import (
    LoopBoundClient,
    display_url,
    lines_capped,
    read_capped,
    read_head,
    shared_ssl_context,
)
from tether.providers.openai_errors import OpenAIErrors, Transient
from tether.providers.streaming import StreamAccumulator, StreamEvent, response_events
from tether.providers.types import ModelRequest, ModelResponse

_JSON: Final = {"Content-Type": "application/json"}

if TYPE_CHECKING:
    from tether.spec import ModelConfig

__all__ = ["DEFAULT_BASE_URL", "MAX_RESPONSE_BYTES", "OpenAIChatModel"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
"""Base URL used when the config names none."""
MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024
"""Default cap on a response, streamed or not: a stream spends ~200 bytes of JSON per token,
so this leaves room for 100k+ streamed tokens, and a server gone wrong cannot fill memory."""

MAX_EVENT_CHARS: Final = 4 * 1024 * 1024
"""Cap on one server-sent event of a stream (a line of it, or its ``data:`` lines together):
an event is one chunk of a reply, a few hundred bytes; a server that sends a whole reply as
one event (a proxy faking a stream) stays far below this. A longer one is an error naming
this limit, read no further (it was held whole up to ``max_response_bytes``)."""

ERROR_BODY_BYTES: Final = 64 * 1024
"""How much of an error response is read for its message (the rest is not read)."""

_LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

logger = logging.getLogger(__name__)

# Indirection so tests can observe backoff delays without waiting them out.
_sleep = asyncio.sleep


def _is_json(response: httpx.Response) -> bool:
    """Whether a response is a JSON document (media types are case-insensitive)."""
    media_type = str(response.headers.get("content-type", "")).partition(";")[0]
    return media_type.strip().lower() == "application/json"


def _is_local(base_url: str) -> bool:
    try:
        host = httpx.URL(base_url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return host.lower() in _LOCAL_HOSTS


class OpenAIChatModel:
    """A ``Model`` backed by an OpenAI-compatible ``/chat/completions`` endpoint.

    Works with OpenAI itself and with compatible servers (vLLM, Ollama, LiteLLM, llama.cpp).
    ``temperature``, ``seed`` and ``max_tokens`` are defaults; a request's ``settings`` override
    them. ``timeout_s`` is the per-call timeout of each HTTP attempt: a reply that is not
    streamed must arrive whole within it; a stream its head, then each next event.
    ``max_response_bytes`` caps a response, streamed or not (an error past it). ``stream``
    makes ``complete()`` read the reply as server-sent events; ``stream()`` streams in any
    case. ``last_attempts`` is the number of HTTP attempts the latest ``complete()`` or
    ``stream()`` made.
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
        self._local = _is_local(base)
        self._errors = OpenAIErrors(
            model=name,
            base_url=base,
            url=self._url,
            api_key=self._api_key,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
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
            if not self.stream_completions:
                try:
                    return await self._attempt(body)
                except Transient as exc:
                    await self._before_retry(attempt, exc)
                continue
            reply = StreamAccumulator(model=self._name)
            try:
                async with contextlib.aclosing(self._stream_attempt(body)) as events:
                    async for event in events:
                        reply.add(event)
                assert reply.ended  # a stream attempt ends with StreamEnd or raises
                return reply.response()
            except BaseException as exc:
                # Usage (or text) that came before the failure was spent: it was dropped
                # with the attempt (retried, failed, or cancelled by the run's timeout), and
                # the run was charged only for an attempt that answered.
                self._report_spent(reply, attempt, exc)
                if not isinstance(exc, Transient):
                    raise
                await self._before_retry(attempt, exc)
        raise AssertionError("not reached: the last attempt raises")

    def _report_spent(self, reply: StreamAccumulator, attempt: int, exc: BaseException) -> None:
        """Report a failed streamed attempt's partial reply (``report_spent``), if it got one."""
        if reply.usage_known or reply.text or reply.tool_calls():
            said = exc.message if isinstance(exc, Transient | ProviderError) else None
            report_spent(
                reply.response(),
                {
                    "attempt": attempt + 1,
                    "message": self._errors.redact(said or describe_exception(exc)),
                },
            )

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
            except Transient as exc:
                if yielded:
                    raise self._errors.broke_off(exc) from None
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
            error=self._errors.error,
        )

    async def _before_retry(self, attempt: int, exc: Transient) -> None:
        """Wait before the next attempt after ``exc``; raise the final error after the last."""
        if attempt == self.max_retries:
            raise self._errors.gave_up(exc, self.last_attempts)
        delay = self._backoff(attempt, exc.retry_after)
        logger.info(
            "model %s: attempt %d failed (%s); retrying in %.2fs",
            self._name,
            attempt + 1,
            self._errors.redact(exc.message),
            delay,
        )
        await _sleep(delay)

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
        """One non-streamed attempt, whole within ``timeout_s``: httpx bounds each wait for
        data, which a server trickling its body a byte at a time never trips."""
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._errors.from_httpx(), self._open(body) as response:
                    raw = await read_capped(response, self.max_response_bytes)
        except TimeoutError as exc:
            raise self._errors.timed_out() from exc
        return self._parse_body(raw)

    async def _stream_attempt(self, body: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        """One streamed attempt: its events, ``StreamEnd`` last; ``Transient`` for what may
        pass (before or after events), ``ProviderError`` for what will not.

        The answer's head (and a plain completion sent in place of a stream) must arrive
        whole within ``timeout_s``, then each next event of the stream within ``timeout_s``
        of the one before: httpx bounds each wait for bytes, which a server trickling them
        (its head, keep-alive comments, blanks) never trips, and the stream hung until the
        run's own timeout, the chain never falling back. Only an event that carries
        something counts (``StreamState.progress``: text, reasoning text, a tool-call delta,
        usage, a finish reason): chunks without any (``data: {}``, empty deltas) sent for
        ever kept the stream alive as well. There is no overall deadline here: a stream
        that keeps making progress is bounded by ``max_response_bytes`` and the run's own
        ``limits.timeout_s``."""
        loop = asyncio.get_running_loop()
        async with self._errors.from_httpx(), contextlib.AsyncExitStack() as stack:
            raw: bytes | None = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await stack.enter_async_context(self._open(body))
                    if _is_json(response):
                        # The server ignored "stream": it sent a plain completion.
                        raw = await read_capped(response, self.max_response_bytes)
            except TimeoutError as exc:
                raise self._errors.timed_out() from exc
            if raw is not None:
                for event in response_events(self._parse_body(raw)):
                    yield event
                return
            max_event = min(MAX_EVENT_CHARS, self.max_response_bytes)
            state = openai_wire.StreamState(
                self._errors.wire, default_model=self._name, max_event_chars=max_event
            )
            due = loop.time() + self.timeout_s  # when the next event is late
            async with self._errors.mid_stream(lambda: state.chunks):
                lines = lines_capped(
                    response, self.max_response_bytes, due=lambda: due, max_line=max_event
                )
                async with contextlib.aclosing(lines):
                    async for line in lines:
                        progress = state.progress
                        for event in state.feed_line(line):
                            yield event
                        if state.done:
                            break
                        if state.progress != progress:
                            # From now: the consumer's time with the events is not the
                            # server's.
                            due = loop.time() + self.timeout_s
            for event in state.flush():
                yield event
            end = state.end()
            if end is None:
                raise Transient(
                    f"the stream from {self._errors.shown_url} ended without [DONE] after "
                    f"{state.chunks} chunk(s) (the connection closed early)"
                )
            yield end

    @contextlib.asynccontextmanager
    async def _open(self, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """The response to POSTing ``body``, its status checked (an error status raises as
        ``OpenAIErrors.for_status`` says); its body not read yet."""
        client = self._http.get()
        content = openai_wire.body_bytes(body)
        async with client.stream("POST", self._url, content=content, headers=_JSON) as response:
            if not response.is_success:
                # An error body is read for its message, no further: a 503 whose body passed
                # max_response_bytes was a "response too large", neither retried nor
                # counted by a circuit breaker as the 503 it is.
                raw = await read_head(response, min(ERROR_BODY_BYTES, self.max_response_bytes))
                raise self._errors.for_status(response, raw)
            yield response

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(self.backoff_max_s, retry_after))
        return random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    # ------------------------------------------------------------------ wire format

    def _parse_body(self, raw: bytes) -> ModelResponse:
        return openai_wire.parse_body(raw, self._errors.wire, default_model=self._name)
