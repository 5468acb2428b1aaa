from __future__ import annotations

from fastapi import APIRouter, Request, Response

from signet.api.disconnect import cancel_on_disconnect
from signet.api.responses import problem_responses
from signet.api.score.consistency import score_consistency
from signet.api.score.protocol import ConsistencyRequest, ConsistencyResponse, UncertaintyRequest, UncertaintyResponse
from signet.api.score.uncertainty import score_uncertainty
from signet.api.state import StateDependency

router = APIRouter(tags=["scoring"])


@router.post(
    "/score/uncertainty",
    response_model=UncertaintyResponse,
    summary="How uncertain the model is about an answer (given or generated): logprob, sample and ensemble measures",
    responses=problem_responses(502, 503, 504),
)
async def uncertainty_route(
    body: UncertaintyRequest, request: Request, state: StateDependency
) -> UncertaintyResponse | Response:
    return await cancel_on_disconnect(request, score_uncertainty(state, body))


@router.post(
    "/score/consistency",
    response_model=ConsistencyResponse,
    summary="Per-sentence support of a text by the model's own samples (SelfCheckGPT) or by a source (MQAG)",
    responses=problem_responses(502, 503, 504),
)
async def consistency_route(
    body: ConsistencyRequest, request: Request, state: StateDependency
) -> ConsistencyResponse | Response:
    return await cancel_on_disconnect(request, score_consistency(state, body))
