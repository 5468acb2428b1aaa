"""``Signet``: the HTTP API from Python, with typed responses, sync and async.

Every route has a sync method and an async twin named with an ``a`` in front (``detect`` and
``adetect``). Requests are checked against the service's own request models before they
are sent, so a wrong field fails at once and names itself; responses are parsed into the
service's response models.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

import signet
from signet.api.detect.protocol import DetectBatchResponse, DetectRequest, DetectResponse
from signet.api.generate.protocol import GenerateChunk, GenerateRequest, GenerateResponse
from signet.api.health.protocol import ReadyResponse
from signet.api.protocol import Problem
from signet.api.score.protocol import (
    ConsistencyRequest,
    ConsistencyResponse,
    UncertaintyRequest,
    UncertaintyResponse,
)
from signet.api.validation import describe_validation_errors
from signet.client.errors import SignetError
from signet.client.events import EventReader
from signet.client.retry import RETRYABLE_STATUSES, RetryPolicy

DEFAULT_URL = "http://127.0.0.1:8000"
Response = TypeVar("Response", bound=BaseModel)


@dataclass(frozen=True)
class Call:
    """One request, ready for either transport."""

    method: str
    path: str
    response_model: type[BaseModel]
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    retry: bool = True


class Signet:
    """A client of one Signet service.

    >>> signet = Signet("http://127.0.0.1:8000", api_key="sk-signet-...")
    >>> signet.detect("Some text to test").verdict
    'not_watermarked'

    429 and 503 answers are retried (``retry``: at most 4 times, honouring ``Retry-After``),
    as are connections refused; other failures raise :class:`SignetError`. Use it as a
    context manager, or call ``close()`` / ``await aclose()``, to release connections.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._headers = {"user-agent": f"signet-client/{signet.__version__}"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        # Generation and scoring take minutes on a CPU: the read timeout is the caller's;
        # a service that does not even accept the connection is known within seconds.
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._sync_client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None

    # --- the routes ---------------------------------------------------------------------

    def detect(self, text: str | None = None, /, **fields: Any) -> DetectResponse:
        """``POST /detect``: ``text`` or ``token_ids=``, and any other DetectRequest field."""
        return self._send(detect_call(text, fields))

    async def adetect(self, text: str | None = None, /, **fields: Any) -> DetectResponse:
        return await self._asend(detect_call(text, fields))

    def detect_batch(self, items: Sequence[DetectRequest | Mapping[str, Any]]) -> DetectBatchResponse:
        """``POST /detect/batch``: each item is answered on its own (``results[i].error`` or ``.result``)."""
        return self._send(detect_batch_call(items))

    async def adetect_batch(self, items: Sequence[DetectRequest | Mapping[str, Any]]) -> DetectBatchResponse:
        return await self._asend(detect_batch_call(items))

    def generate(self, prompt: str | None = None, /, *, watermark: bool = True, **fields: Any) -> GenerateResponse:
        """``POST /generate``: ``prompt`` or ``messages=``; ``uncertainty=True`` adds the logprob scores."""
        return self._send(generate_call(prompt, watermark, fields))

    async def agenerate(
        self, prompt: str | None = None, /, *, watermark: bool = True, **fields: Any
    ) -> GenerateResponse:
        return await self._asend(generate_call(prompt, watermark, fields))

    def generate_stream(
        self, prompt: str | None = None, /, *, watermark: bool = True, **fields: Any
    ) -> Iterator[GenerateChunk]:
        """``POST /generate`` with ``stream``: the pieces as they are generated; the last one
        carries ``finish_reason``, ``usage`` and ``watermark``."""
        call = generate_call(prompt, watermark, {**fields, "stream": True}, response_model=GenerateChunk)
        attempt = 0
        while True:
            with self._sync().stream(call.method, call.path, json=call.body, params=call.params) as response:
                delay = self._retry_delay(response, attempt)
                if delay is None:
                    if response.is_error:
                        response.read()
                        raise error_of(response)
                    yield from _chunks(response.iter_lines())
                    return
            time.sleep(delay)
            attempt += 1

    async def agenerate_stream(
        self, prompt: str | None = None, /, *, watermark: bool = True, **fields: Any
    ) -> AsyncIterator[GenerateChunk]:
        call = generate_call(prompt, watermark, {**fields, "stream": True}, response_model=GenerateChunk)
        attempt = 0
        while True:
            async with self._async().stream(call.method, call.path, json=call.body, params=call.params) as response:
                delay = self._retry_delay(response, attempt)
                if delay is None:
                    if response.is_error:
                        await response.aread()
                        raise error_of(response)
                    reader = EventReader()
                    async for line in response.aiter_lines():
                        if chunk := reader.feed(line):
                            yield chunk
                        if reader.done:
                            return
                    reader.check_complete()
                    return
            await asyncio.sleep(delay)
            attempt += 1

    def score_uncertainty(self, prompt: str | None = None, /, **fields: Any) -> UncertaintyResponse:
        """``POST /score/uncertainty``: ``prompt`` or ``messages=``, with ``response=`` to score a given answer."""
        return self._send(uncertainty_call(prompt, fields))

    async def ascore_uncertainty(self, prompt: str | None = None, /, **fields: Any) -> UncertaintyResponse:
        return await self._asend(uncertainty_call(prompt, fields))

    def score_consistency(self, text: str, /, **fields: Any) -> ConsistencyResponse:
        """``POST /score/consistency``: ``text`` against ``prompt=`` (self-consistency) or ``source=``."""
        return self._send(consistency_call(text, fields))

    async def ascore_consistency(self, text: str, /, **fields: Any) -> ConsistencyResponse:
        return await self._asend(consistency_call(text, fields))

    def ready(self) -> ReadyResponse:
        """``GET /readyz``; raises SignetError (503) while no engine is ready. Not retried."""
        return self._send(READY_CALL)

    async def aready(self) -> ReadyResponse:
        return await self._asend(READY_CALL)

    # --- transport ----------------------------------------------------------------------

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._sync().request(call.method, call.path, json=call.body, params=call.params)
            except httpx.TransportError as error:
                delay = self._connect_retry_delay(call, error, attempt)
            else:
                delay = self._retry_delay(response, attempt) if call.retry else None
                if delay is None:
                    return parsed(response, call.response_model)
            time.sleep(delay)
            attempt += 1

    async def _asend(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._async().request(call.method, call.path, json=call.body, params=call.params)
            except httpx.TransportError as error:
                delay = self._connect_retry_delay(call, error, attempt)
            else:
                delay = self._retry_delay(response, attempt) if call.retry else None
                if delay is None:
                    return parsed(response, call.response_model)
            await asyncio.sleep(delay)
            attempt += 1

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        if response.status_code not in RETRYABLE_STATUSES:
            return None
        return self.retry.delay(attempt, response.headers.get("retry-after"))

    def _connect_retry_delay(self, call: Call, error: httpx.TransportError, attempt: int) -> float:
        """A connection never made sent nothing, so it is safe to retry; any other failure
        may have reached the service, and is the caller's to judge."""
        never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
        delay = self.retry.delay(attempt, None) if never_sent and call.retry else None
        if delay is None:
            raise SignetError(f"cannot reach Signet at {self.url}: {error or type(error).__name__}") from error
        return delay

    def _sync(self) -> httpx.Client:
        if self._sync_client is None:
            self._sync_client = httpx.Client(base_url=self.url, headers=self._headers, timeout=self._timeout)
        return self._sync_client

    def _async(self) -> httpx.AsyncClient:
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=self._timeout)
        return self._async_client

    def close(self) -> None:
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None

    async def aclose(self) -> None:
        self.close()
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def __enter__(self) -> Signet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Signet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


READY_CALL = Call("GET", "/readyz", ReadyResponse, retry=False)


def detect_call(text: str | None, fields: Mapping[str, Any]) -> Call:
    request = _request(DetectRequest, _with(fields, text=text))
    return Call("POST", "/detect", DetectResponse, request)


def detect_batch_call(items: Sequence[DetectRequest | Mapping[str, Any]]) -> Call:
    # Items are not checked here: the service answers each bad item with its own error
    # entry, and one bad item must not cost the others their answers.
    body = [_body(item) if isinstance(item, BaseModel) else dict(item) for item in items]
    return Call("POST", "/detect/batch", DetectBatchResponse, {"items": body})


def generate_call(
    prompt: str | None,
    watermark: bool,
    fields: Mapping[str, Any],
    response_model: type[BaseModel] = GenerateResponse,
) -> Call:
    fields = dict(fields)
    params = {"watermark": str(watermark).lower()}
    if fields.pop("uncertainty", False):
        params["uncertainty"] = "true"
    if fields.get("stream") and response_model is GenerateResponse:
        raise ValueError("use generate_stream() (or agenerate_stream()) to stream")
    request = _request(GenerateRequest, _with(fields, prompt=prompt))
    return Call("POST", "/generate", response_model, request, params)


def uncertainty_call(prompt: str | None, fields: Mapping[str, Any]) -> Call:
    request = _request(UncertaintyRequest, _with(fields, prompt=prompt))
    return Call("POST", "/score/uncertainty", UncertaintyResponse, request)


def consistency_call(text: str, fields: Mapping[str, Any]) -> Call:
    request = _request(ConsistencyRequest, {**fields, "text": text})
    return Call("POST", "/score/consistency", ConsistencyResponse, request)


def _with(fields: Mapping[str, Any], **positional: Any) -> dict[str, Any]:
    """The fields, plus the positional argument when one was given."""
    return {**fields, **{name: value for name, value in positional.items() if value is not None}}


def _request(model: type[BaseModel], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Checked with the service's own model, so the mistake is named before anything is sent,
    in the words the service's 422 would use."""
    try:
        return _body(model.model_validate(fields))
    except ValidationError as error:
        detail, field = describe_validation_errors(error.errors(include_url=False))
        raise SignetError.of(Problem.of(422, detail, field)) from None


def _body(request: BaseModel) -> dict[str, Any]:
    # Only what the caller set: the service applies its own defaults, which may be configured.
    return request.model_dump(mode="json", exclude_unset=True)


def parsed(response: httpx.Response, model: type[Response]) -> Response:
    if response.is_error:
        raise error_of(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise SignetError(f"unexpected response from {response.request.url}: {error}", response.status_code) from None


def error_of(response: httpx.Response) -> SignetError:
    """The service's problem+json as an exception; anything else (a proxy's page) as its text."""
    try:
        return SignetError.of(Problem.model_validate_json(response.content))
    except ValidationError:
        reason = response.reason_phrase or "error"
        return SignetError(f"{response.status_code} {reason}: {response.text[:200]}", response.status_code)


def _chunks(lines: Iterator[str]) -> Iterator[GenerateChunk]:
    reader = EventReader()
    for line in lines:
        if chunk := reader.feed(line):
            yield chunk
        if reader.done:
            return
    reader.check_complete()
