"""Server-sent events: how streamed responses are framed, and how they end.

Each piece is one ``data:`` event holding a JSON object, and a stream that ends well
ends with ``data: [DONE]`` (as OpenAI's and vLLM's do). A failure after the response
has begun cannot change its status any more: it comes as ``event: error`` whose data
is the problem+json body, with an ``error`` member that OpenAI's client library reads.
A refusal never comes that way: the engine takes or refuses the generation before the
response begins (``generation.start_stream``), so a refusal keeps its status and Retry-After.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from signet.api.errors import ApiError
from signet.api.protocol import Problem

MEDIA_TYPE = "text/event-stream"
DONE = "data: [DONE]\n\n"
# Proxies (nginx) must pass each event on at once, and nobody may cache a stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def data_event(payload_json: str) -> str:
    return f"data: {payload_json}\n\n"


def error_event(error: ApiError) -> str:
    problem = Problem.of(error.status, error.detail, error.field).model_dump(exclude_none=True)
    problem["error"] = {"message": error.detail, "type": problem["title"], "code": error.status}
    return f"event: error\ndata: {json.dumps(problem)}\n\n"


def event_stream(payloads: AsyncIterator[str], stop: Callable[[], Awaitable[None]]) -> StreamingResponse:
    """A streaming response of ``payloads`` (JSON texts). ``stop`` (stopping the generation
    behind them) is awaited when the response ends, however it ends: Starlette cancels the
    iterator when the client disconnects, but an iterator it never began (the client gone
    before the first byte) it cannot close, and the generation, already taken, would run on."""

    async def events() -> AsyncIterator[str]:
        try:
            async for payload in payloads:
                yield data_event(payload)
        except ApiError as error:
            yield error_event(error)
            return
        yield DONE

    return _EventStream(events(), stop)


class _EventStream(StreamingResponse):
    def __init__(self, events: AsyncIterator[str], stop: Callable[[], Awaitable[None]]) -> None:
        super().__init__(events, media_type=MEDIA_TYPE, headers=HEADERS)
        self._stop = stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stop()
