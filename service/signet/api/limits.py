"""Request body limits: size and time, enforced while the body is read.

The body is read when the app asks for it, never before: a route without a body (the
probes, /metrics, /ui, a 404) never reads one, so a caller cannot make the service hold
megabytes it will not use. The front door (api/gate.py) refuses unknown API keys before
this middleware is reached at all. What a response leaves unread, the server discards
until the same deadline (api/connections.py).
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signet.api.errors import PayloadTooLarge, problem_response
from signet.api.json_budget import JsonBudget


def has_body(scope: Scope) -> bool:
    """Whether the request declares a body: a non-zero Content-Length, or a Transfer-Encoding."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


class BodyLimits:
    """ASGI middleware: 413 for a body over ``max_bytes`` (declared or streamed), 408 for one
    that has not arrived ``timeout_seconds`` after the request's headers.

    The limits hold as the body streams in, so neither a chunked upload without
    Content-Length nor one sent a byte at a time can outgrow them. The errors are raised
    from ``receive`` as HTTPException: FastAPI lets those through its body parsing
    unchanged, and the app's handler answers them as problem+json.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout_seconds: float, json_budget: JsonBudget | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.json_budget = json_budget  # checked on the whole body before the app parses it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            detail = f"request body is {int(declared):,} bytes; the limit is {self.max_bytes:,}"
            await problem_response(413, detail)(scope, receive, send)
            return
        body = _LimitedBody(
            receive, self.max_bytes, self.timeout_seconds, expected=has_body(scope), json_budget=self.json_budget
        )
        await self.app(scope, body.receive, send)


class _LimitedBody:
    """One request's ``receive``, counting its body against the size limit and the deadline."""

    def __init__(
        self,
        receive: Receive,
        max_bytes: int,
        timeout_seconds: float,
        *,
        expected: bool,
        json_budget: JsonBudget | None = None,
    ) -> None:
        self._receive = receive
        self.json_budget = json_budget
        self._chunks: list[bytes] = []  # the body so far, kept for the budget check only
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.deadline = asyncio.get_running_loop().time() + timeout_seconds
        self.size = 0
        self.complete = not expected  # True once the last body message has been received

    async def receive(self) -> Message:
        if self.complete:  # after the body: the app waits for http.disconnect, as long as it likes
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            detail = f"the request body did not arrive within {self.timeout_seconds:g} s of its headers"
            raise HTTPException(408, detail) from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.max_bytes:  # the rest of the stream is never read
                detail = f"request body is at least {self.size:,} bytes; the limit is {self.max_bytes:,}"
                raise HTTPException(413, detail)
            self.complete = not message.get("more_body", False)
            self._check_json_budget(message)
        return message

    def _check_json_budget(self, message: Message) -> None:
        """413 for a body whose JSON shape is over the budget, raised with its last message:
        the app has only buffered the body by then, not parsed it (api/json_budget.py)."""
        if self.json_budget is None:
            return
        self._chunks.append(message.get("body", b""))
        if not self.complete:
            return
        body, self._chunks = b"".join(self._chunks), []
        encoding_problem = self.json_budget.encoding_problem(body)
        if encoding_problem is not None:
            raise HTTPException(415, encoding_problem)
        excess = self.json_budget.excess(body)
        if excess is not None:
            raise HTTPException(413, excess)


def check_text_size(field: str, length: int, limit: int, unit: str = "characters") -> None:
    if length > limit:
        raise PayloadTooLarge(field, length, limit, unit)
