from __future__ import annotations

from fastapi import APIRouter, Request, Response

from signet.api.auth import CallerDependency
from signet.api.disconnect import cancel_on_disconnect
from signet.api.responses import problem_responses
from signet.api.score.consistency import score_consistency
from signet.api.score.protocol import ConsistencyRequest, ConsistencyResponse, UncertaintyRequest, UncertaintyResponse
from signet.api.score.uncertainty import score_uncertainty
from signet.api.state import StateDependency

router = APIRouter(tags=["scoring"])

# The texts these routes generate (answers, samples, MQAG questions) are never watermarked:
# scores describe the model. A tenant that may not turn the watermark off gets the scores
# without those texts, so no route hands it unwatermarked text.
_WITHHELD = (
    " For a tenant without `may_disable_watermark`, the texts the service generates for the score "
    "(a generated answer, samples, MQAG questions and options) are withheld (`texts_withheld: true`): "
    "they are generated without the watermark. The scores are the same."
)
_CAPPED = (
    " A score runs at most SIGNET_SCORE_MAX_SEQUENCES engine sequences (answers, samples, judge questions), "
    "counted from the request before any engine work (422 over it), and has the engine read and generate at "
    "most SIGNET_SCORE_MAX_TOKENS tokens (prompt tokens plus max_tokens per sequence), checked before each "
    "engine request (422 over it); `cost` reports what it ran."
)


@router.post(
    "/score/uncertainty",
    response_model=UncertaintyResponse,
    summary="How uncertain the model is about an answer (given or generated): logprob, sample and ensemble measures",
    description="Scores an answer: the caller's `response`, or the greedy answer the service generates."
    + _WITHHELD
    + _CAPPED,
    responses=problem_responses(502, 503, 504),
)
async def uncertainty_route(
    body: UncertaintyRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> UncertaintyResponse | Response:
    return await cancel_on_disconnect(request, score_uncertainty(state, body, caller))


@router.post(
    "/score/consistency",
    response_model=ConsistencyResponse,
    summary="Per-sentence support of a text by the model's own samples (SelfCheckGPT) or by a source (MQAG)",
    description="Splits `text` into sentences and scores each against samples the service draws from "
    "`prompt`, or against `source`." + _WITHHELD + _CAPPED,
    responses=problem_responses(502, 503, 504),
)
async def consistency_route(
    body: ConsistencyRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> ConsistencyResponse | Response:
    return await cancel_on_disconnect(request, score_consistency(state, body, caller))
