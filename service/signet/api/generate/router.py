from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from signet.api.disconnect import CLIENT_CLOSED_REQUEST, cancel_on_disconnect
from signet.api.generate.protocol import GenerateRequest, GenerateResponse
from signet.api.generate.service import generate
from signet.api.state import StateDependency

router = APIRouter(tags=["generation"])


@router.post("/generate", response_model=GenerateResponse, summary="Generate text, watermarked by default")
async def generate_route(
    body: GenerateRequest,
    request: Request,
    state: StateDependency,
    watermark: Annotated[bool, Query(description="Apply the key's watermark to the generated tokens.")] = True,
) -> GenerateResponse | Response:
    response = await cancel_on_disconnect(request, generate(state, body, watermark))
    return Response(status_code=CLIENT_CLOSED_REQUEST) if response is None else response
