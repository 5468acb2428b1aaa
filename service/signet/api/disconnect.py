"""Stop work nobody waits for: a client that hangs up cancels its generation.

Starlette does not cancel a handler when its client goes away; this watches the ASGI
channel for ``http.disconnect`` beside the work and cancels the work when it comes.
Cancelling a queued job tells its worker (see ``JobQueue.run``); cancelling an
embedded generation aborts it in vLLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from fastapi import Request, Response

T = TypeVar("T")

# nginx's code for "client closed request": logged, never seen by the client.
CLIENT_CLOSED_REQUEST = 499


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T | Response:
    """The work's result, or an empty 499 when the client disconnected first (the work is cancelled)."""
    work_task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work_task.done():
            work_task.cancel()
            # Let the work's own cancellation run (it tells the queue) before answering.
            await asyncio.gather(work_task, return_exceptions=True)
    if work_task.cancelled():
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return work_task.result()


async def in_thread_unless_disconnected(
    request: Request, limiter: anyio.CapacityLimiter, work: Callable[..., T], *args: object
) -> T | Response:
    """``work(*args)`` in a thread of ``limiter``; an empty 499 when the client disconnects
    while the request still waits for a thread. Work that has started runs to its end.

    Not ``cancel_on_disconnect``: a native ``Task.cancel`` ends anyio's ``run_sync`` at once
    even while its thread runs (anyio shields against its own cancel scopes only), which
    gives the thread's place in ``limiter`` back while the thread goes on. A client that
    hung up after its work started could then have as many threads running as it sent
    requests (found by review). Cancelled through an anyio cancel scope, a waiting request
    leaves the queue, and a running one keeps its place until its thread returns.
    """
    with anyio.CancelScope() as scope:
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, scope))
        try:
            return await to_thread.run_sync(work, *args, limiter=limiter)
        finally:
            watcher.cancel()
    return Response(status_code=CLIENT_CLOSED_REQUEST)  # reached only when the scope was cancelled


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    await _disconnected(request)
    scope.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
