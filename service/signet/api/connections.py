"""The HTTP server of ``signet serve``: uvicorn, with the connection limits it lacks.

Measured on uvicorn 0.55 with httptools (its default wherever httptools is installed):

- a connection that sends nothing, or its request line and headers a byte at a time, is
  never closed: the keep-alive timer is armed only after a response, so such a connection
  holds its place (and a slot of ``limit_concurrency``) for as long as the client likes;
- the headers have no size limit: a 20 MB header was read in full and answered 200
  (h11 stops at 16 KiB, ``h11_max_incomplete_event_size``, but spent 1.5 to 3 times the
  server CPU of httptools on a small POST: 310 to 650 against 190 to 340 us; the limits
  below add no difference we could measure);
- uvicorn has no body timeout.

``GuardedHttpToolsProtocol`` adds both limits to uvicorn's httptools protocol. The request
head (request line and headers) must arrive within SIGNET_HEADER_TIMEOUT_SECONDS of the
connection opening, or of its first byte for a later request on a kept-alive connection:
else 408 (or, before a single byte, the connection is closed without an answer). A head
over SIGNET_MAX_HEADER_BYTES gets 431. Either way the connection is closed.

A response sent before its request's body was read (a 401 from the front door, a 413 for
a declared size) leaves the rest of the body on the connection. Closing at once would
make the kernel reset the connection over the unread bytes, and a client still sending
would never see its answer; uvicorn instead reads and discards the rest, but for as long
as the client takes. So the rest is discarded until SIGNET_BODY_TIMEOUT_SECONDS after the
headers, the deadline the app holds a body it reads to (api/limits.py), and the
connection is closed if it has not ended by then.

Over SIGNET_MAX_CONNECTIONS open connections or running requests a request gets 503, as
with uvicorn's own ``limit_concurrency``, but as problem+json with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from signet.api.errors import PROBLEM_MEDIA_TYPE, problem_response
from signet.api.protocol import Problem
from signet.settings import Settings

logger = logging.getLogger(__name__)

BUSY_RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_seconds: float
    max_header_bytes: int
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.header_timeout_seconds,
            settings.max_header_bytes,
            settings.body_timeout_seconds,
            settings.max_connections,
        )


def server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration ``signet serve`` runs ``app`` with."""
    return uvicorn.Config(
        app,
        http=functools.partial(GuardedHttpToolsProtocol, limits=ConnectionLimits.of(settings)),
        timeout_keep_alive=settings.keep_alive_seconds,
        log_level=settings.log_level,
        lifespan="on",
        # uvicorn's loggers reach ours (JSON); its access log is replaced by signet.access
        # lines (route template, status, duration, request id) from the app.
        log_config=None,
        access_log=False,
    )


_PROBE_PATHS = frozenset({b"/healthz", b"/readyz"})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for the request head, a
    deadline for a body the app did not read, and a connection limit that answers problem+json."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.served_app = self.app
        self.head_timer: asyncio.TimerHandle | None = None
        self.in_head = True  # from the connection's start, or a request's first byte, to its headers' end
        self.head_begun = False  # a byte of the current head has arrived
        self.head_bytes = 0
        self.body_deadline = 0.0  # on the loop's clock
        self.body_done = True  # the current request's body has ended (or there was none)
        self.drain_timer: asyncio.TimerHandle | None = None

    # The head: from the connection opening or a request's first byte to the end of its headers.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self.in_head:  # a later request on a kept-alive connection
            self.in_head, self.head_bytes = True, 0
            self._arm_head_timer()
        self.head_begun = True

    def data_received(self, data: bytes) -> None:
        counted = self.in_head  # bytes of a chunk that began inside a head and did not end it
        super().data_received(data)
        if counted and self.in_head and not self.transport.is_closing():
            # A chunk in which a head begins is not counted: the limit may be passed by one
            # read (at most 256 KiB), never reached early by a body's bytes.
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                limit = f"{self.limits.max_header_bytes:,}"
                self._refuse(431, f"the request line and headers are over {limit} bytes (SIGNET_MAX_HEADER_BYTES)")

    def on_headers_complete(self) -> None:
        self.in_head, self.head_begun = False, False
        self._disarm_head_timer()
        self.body_deadline = self.loop.time() + self.limits.body_timeout_seconds
        self.body_done = False
        self.app = self._busy if self._is_full() and not self._is_probe() else self.served_app
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_drain_timer()
        super().connection_lost(exc)

    # A body answered before it was read: discarded (by uvicorn) until the body deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.body_done and not self.transport.is_closing():
            self.drain_timer = self.loop.call_at(self.body_deadline, self._drain_timed_out)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.body_done = True
        if self.drain_timer is not None:  # the unread body has ended: wait for the next request
            self._disarm_drain_timer()
            self.in_head, self.head_bytes = True, 0
            self._arm_head_timer()  # uvicorn's keep-alive timer went with the body's first bytes

    def _drain_timed_out(self) -> None:
        self.drain_timer = None
        logger.info("closed a connection from %s: its unread body outlasted the body deadline", self._peer())
        self.transport.close()

    def _disarm_drain_timer(self) -> None:
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self.head_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if not self.head_begun:  # nothing sent: nobody to answer
            self.transport.close()
            return
        seconds = f"{self.limits.header_timeout_seconds:g}"
        self._refuse(
            408, f"the request line and headers did not arrive within {seconds} s (SIGNET_HEADER_TIMEOUT_SECONDS)"
        )

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` as problem+json and close: what else the client sent cannot be framed as requests."""
        logger.info("closed a connection from %s: %s", self._peer(), detail)
        body = Problem.of(status, detail).model_dump_json(exclude_none=True).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {PROBLEM_MEDIA_TYPE}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()

    def _peer(self) -> str:
        return self.client[0] if self.client else "unknown"

    # The connection limit

    def _is_probe(self) -> bool:
        # The health probes pass a full server: refused, the liveness probe would have the
        # pod restarted, and every stream in flight with it, by whoever holds the connections.
        return self.url.partition(b"?")[0] in _PROBE_PATHS

    def _is_full(self) -> bool:
        # uvicorn's rule for limit_concurrency: open connections, this one included, or running requests
        limit = self.limits.max_connections
        return len(self.connections) >= limit or len(self.tasks) >= limit

    async def _busy(self, scope: Any, receive: Any, send: Any) -> None:
        logger.warning("over SIGNET_MAX_CONNECTIONS (%d): answered 503", self.limits.max_connections)
        detail = f"the server is at its limit of {self.limits.max_connections:,} connections; retry shortly"
        headers = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS), "Connection": "close"}
        await problem_response(503, detail, headers=headers)(scope, receive, send)
