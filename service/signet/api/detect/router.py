from __future__ import annotations

from fastapi import APIRouter

from signet.api.auth import CallerDependency
from signet.api.detect.batch import detect_batch
from signet.api.detect.protocol import DetectBatchRequest, DetectBatchResponse, DetectRequest, DetectResponse
from signet.api.detect.service import detect
from signet.api.responses import problem_responses
from signet.api.state import StateDependency

router = APIRouter(tags=["detection"])


# Plain ``def``s: tokenizing and scoring are CPU work, so FastAPI runs them in its
# thread pool instead of stalling the event loop that streams generations.
@router.post(
    "/detect", response_model=DetectResponse, summary="Test a text for watermarks", responses=problem_responses(404)
)
def detect_route(request: DetectRequest, state: StateDependency, caller: CallerDependency) -> DetectResponse:
    return detect(state, request, caller)


@router.post(
    "/detect/batch",
    response_model=DetectBatchResponse,
    summary="Test several texts; each item succeeds or fails on its own",
)
def detect_batch_route(
    request: DetectBatchRequest, state: StateDependency, caller: CallerDependency
) -> DetectBatchResponse:
    return detect_batch(state, request, caller)
