"""Request size limits enforced before any body is parsed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signet.api.errors import PayloadTooLarge, problem_response


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``, declared or streamed.

    The body is read here (bounded) and replayed to the app, so a chunked upload
    without Content-Length cannot grow past the limit either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(f"{int(declared):,}", scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:  # the rest of the stream is never read
                await self._reject(f"at least {size:,}", scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, size: str, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body is {size} bytes; the limit is {self.max_bytes:,}"
        await problem_response(413, detail)(scope, receive, send)


def check_text_size(field: str, length: int, limit: int, unit: str = "characters") -> None:
    if length > limit:
        raise PayloadTooLarge(field, length, limit, unit)
