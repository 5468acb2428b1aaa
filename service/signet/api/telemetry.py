"""Per-request telemetry, as pure ASGI: the request id, HTTP metrics and one access log line.

The request id is the caller's ``X-Request-ID`` when it is a plausible id (1 to 128 of
``A-Z a-z 0-9 . _ -``), else a new uuid4 hex. It is bound for the request's log lines
(``signet.logs``) and echoed in the response's ``X-Request-ID``.

The middleware wraps the whole application, outside Starlette's ServerErrorMiddleware,
so an unhandled error's 500 carries the id too, and its traceback line is logged with it.
Metrics and the access line name the matched route's template (``/detect``), never the
path itself, so neither a label nor a log line carries what a client put in a URL;
requests no route matches are ``unmatched``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signet import logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probed every few seconds: logged at DEBUG

access_logger = logging.getLogger("signet.access")


def install_telemetry(app: FastAPI) -> None:
    """Wrap ``app``'s middleware stack (built on its first request) in ``RequestTelemetry``."""
    build = app.build_middleware_stack

    def build_with_telemetry() -> ASGIApp:
        return RequestTelemetry(build(), app)

    app.build_middleware_stack = build_with_telemetry


def request_id_from(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _VALID_REQUEST_ID.fullmatch(value) else uuid.uuid4().hex
    return uuid.uuid4().hex


class RequestTelemetry:
    def __init__(self, app: ASGIApp, routed: FastAPI) -> None:
        self.app = app
        self.routed = routed  # whose routes name the template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        token = logs.bind_request_id(request_id)
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(name, value) for name, value in message.get("headers", []) if name != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("ascii"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # ServerErrorMiddleware (inside) answered 500, unless the response had begun.
            # A cancelled request (BaseException) answered nothing: its status stays None.
            status = status or 500
            raise
        finally:
            self._record(scope, status, time.perf_counter() - started)
            logs.unbind_request_id(token)

    def _record(self, scope: Scope, status: int | None, seconds: float) -> None:
        route, method = self._route(scope), scope["method"]
        metrics.observe_request(route, method, status, seconds)
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        if access_logger.isEnabledFor(level):
            duration_ms = round(seconds * 1000, 2)
            access_logger.log(
                level,
                "%s %s %s %.2f ms",
                metrics.method_label(method),
                route,
                status if status is not None else "-",
                duration_ms,
                extra={
                    "method": metrics.method_label(method),
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            # Refused before routing (a body over the size limit): match as the router would.
            route = next((item for item in self.routed.routes if item.matches(scope)[0] != Match.NONE), None)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else metrics.UNMATCHED_ROUTE
