from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from signet.api.generate.protocol import GenerateRequest, GenerateResponse
from signet.api.generate.service import generate
from signet.api.state import ServiceState, get_state

router = APIRouter(tags=["generation"])


@router.post("/generate", response_model=GenerateResponse, summary="Generate text, watermarked by default")
async def generate_route(
    request: GenerateRequest,
    watermark: bool = Query(default=True, description="Apply the key's watermark to the generated tokens."),
    state: ServiceState = Depends(get_state),
) -> GenerateResponse:
    return await generate(state, request, watermark)
