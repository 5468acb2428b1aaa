"""Stop work nobody waits for: a client that hangs up cancels its generation.

Starlette does not cancel a handler when its client goes away; this watches the ASGI
channel for ``http.disconnect`` beside the work and cancels the work when it comes.
Cancelling a queued job tells its worker (see ``JobQueue.run``); cancelling an
embedded generation aborts it in vLLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

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


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
