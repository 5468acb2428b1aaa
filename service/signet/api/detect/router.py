from __future__ import annotations

from fastapi import APIRouter

from signet.api.detect.protocol import DetectRequest, DetectResponse
from signet.api.detect.service import detect
from signet.api.state import StateDependency

router = APIRouter(tags=["detection"])


# A plain ``def``: tokenizing and scoring are CPU work, so FastAPI runs them in its
# thread pool instead of stalling the event loop that streams generations.
@router.post("/detect", response_model=DetectResponse, summary="Test a text for the watermark")
def detect_route(request: DetectRequest, state: StateDependency) -> DetectResponse:
    return detect(state, request)
