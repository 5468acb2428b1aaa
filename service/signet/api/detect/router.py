from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from signet.api.auth import CallerDependency
from signet.api.detect.batch import detect_batch
from signet.api.detect.budget import admit, charge
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
def detect_route(
    body: DetectRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> DetectResponse:
    admit(state, request, caller)
    response = detect(state, body, caller)
    charge(state, request, caller, [response])
    return _serialized(response)


@router.post(
    "/detect/batch",
    response_model=DetectBatchResponse,
    summary="Test several texts; each item succeeds or fails on its own",
)
def detect_batch_route(
    body: DetectBatchRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> DetectBatchResponse:
    admit(state, request, caller)
    response = detect_batch(state, body, caller)
    # One charge for the whole batch, the sum of its answered items: all or nothing, so a
    # refused batch reveals no item, and its 429 carries one Retry-After.
    charge(state, request, caller, [item.result for item in response.results if item.result is not None])
    return _serialized(response)


def _serialized(response: BaseModel) -> Response:
    """The body ``response_model`` declares, serialized in the route's own thread. A model
    returned from a plain ``def`` route is validated again by FastAPI and serialized in a
    second trip through the thread pool (``serialize_response``)."""
    return Response(response.model_dump_json(), media_type="application/json")
