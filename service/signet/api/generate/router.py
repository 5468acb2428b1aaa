from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from signet.api import sse
from signet.api.auth import CallerDependency, authorize_generation
from signet.api.disconnect import cancel_on_disconnect
from signet.api.errors import ApiError
from signet.api.generate.protocol import GenerateChunk, GenerateRequest, GenerateResponse
from signet.api.generate.service import generate, generate_chunks, generation_input
from signet.api.generation import prepare, start_stream
from signet.api.responses import GENERATION_RESPONSES
from signet.api.state import StateDependency

router = APIRouter(tags=["generation"])


@router.post(
    "/generate",
    response_model=GenerateResponse,
    summary="Generate text, watermarked by default (stream for server-sent events)",
    responses=GENERATION_RESPONSES,
)
async def generate_route(
    body: GenerateRequest,
    request: Request,
    state: StateDependency,
    caller: CallerDependency,
    watermark: Annotated[bool, Query(description="Apply the key's watermark to the generated tokens.")] = True,
    uncertainty: Annotated[
        bool,
        Query(
            description="Attach uncertainty scores computed from the answer's own logprobs "
            "(sequence probability, perplexity, token entropy): no extra forward pass. Not with stream."
        ),
    ] = False,
) -> GenerateResponse | Response:
    authorize_generation(caller, state, body.key_id, watermark)
    if uncertainty and body.stream:
        raise ApiError(422, "uncertainty: scores describe the whole answer; ask for them without stream", "stream")
    if body.stream:
        prepared = await prepare(state, generation_input(body, watermark, tenant=caller.queue_tenant))
        generation = await start_stream(state, prepared)  # refusals answered here, with their status
        chunks = generate_chunks(state, generation)
        return sse.event_stream((_chunk_json(chunk) async for chunk in chunks), generation.stop)
    return await cancel_on_disconnect(request, generate(state, body, watermark, uncertainty, caller.queue_tenant))


def _chunk_json(chunk: GenerateChunk) -> str:
    """A chunk without its unset last-piece fields, but with its ``watermark`` whole: the same
    object the non-streamed answer gives (its null fields included)."""
    fields = {name: value for name, value in chunk.model_dump(mode="json").items() if value is not None}
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
