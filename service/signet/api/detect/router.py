from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from signet.api.auth import Caller, CallerDependency
from signet.api.detect.batch import detect_batch
from signet.api.detect.budget import admit, charge
from signet.api.detect.protocol import DetectBatchRequest, DetectBatchResponse, DetectRequest, DetectResponse
from signet.api.detect.service import detect
from signet.api.disconnect import in_thread_unless_disconnected
from signet.api.responses import problem_responses
from signet.api.state import ServiceState, StateDependency

router = APIRouter(tags=["detection"])


# Tokenizing and scoring are CPU work, so they run in threads, never on the event loop
# that streams generations: in a pool of their own, SIGNET_DETECT_THREADS (8) wide, not in
# the default pool of 40 that plain ``def`` routes get. The tokenizer lets go of the GIL,
# so with 16 requests in flight forty threads kept handing it to each other. A thread also
# waits on Redis (the budget's two round trips, the cache's), so too narrow a pool idles
# the CPU behind a distant Redis. On the 2-core dev machine (bench/detect_threads.py,
# docs/BENCHMARKS.md), against 40 threads: with Redis on the same host 8 threads answered
# 1.05x the requests a second (p99 41 ms against 49) and 2 threads 1.13x; with Redis 1 ms
# away each way, 8 threads 0.94x and 2 threads 0.54x. The price of any limit: a request
# waits for a free thread rather than sharing the GIL with the running ones, behind at
# most as many of the largest detections (100,000 characters with per-token details and
# three keys: 0.5 s). The detection budget bounds how many of those one tenant can send
# (a refused answer is paid for too: api/detect/budget.py). A request whose client leaves
# while it waits for a thread is dropped (499); one already running finishes in its
# thread, which it keeps until then, and is charged.
@router.post(
    "/detect", response_model=DetectResponse, summary="Test a text for watermarks", responses=problem_responses(404)
)
async def detect_route(
    body: DetectRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> Response:
    return await in_thread_unless_disconnected(request, state.detect_threads, _detect, state, request, caller, body)


@router.post(
    "/detect/batch",
    response_model=DetectBatchResponse,
    summary="Test several texts; each item succeeds or fails on its own",
)
async def detect_batch_route(
    body: DetectBatchRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> Response:
    threads = state.detect_threads
    return await in_thread_unless_disconnected(request, threads, _detect_batch, state, request, caller, body)


def _detect(state: ServiceState, request: Request, caller: Caller, body: DetectRequest) -> Response:
    admit(state, request, caller)
    response = detect(state, body, caller)
    charge(state, request, caller, [response])
    return _serialized(response)


def _detect_batch(state: ServiceState, request: Request, caller: Caller, body: DetectBatchRequest) -> Response:
    admit(state, request, caller)
    response = detect_batch(state, body, caller)
    # One charge for the whole batch, the sum of its answered items: all or nothing, so a
    # refused batch reveals no item, and its 429 carries one Retry-After.
    charge(state, request, caller, [item.result for item in response.results if item.result is not None])
    return _serialized(response)


def _serialized(response: BaseModel) -> Response:
    """The body ``response_model`` declares, serialized in the detection thread. A model
    returned to FastAPI would be validated again and serialized on the event loop
    (``serialize_response``)."""
    return Response(response.model_dump_json(), media_type="application/json")
