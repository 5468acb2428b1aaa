from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from signet.api.generate.protocol import GenerateRequest, GenerateResponse
from signet.api.generate.service import generate
from signet.api.state import StateDependency

router = APIRouter(tags=["generation"])


@router.post("/generate", response_model=GenerateResponse, summary="Generate text, watermarked by default")
async def generate_route(
    request: GenerateRequest,
    state: StateDependency,
    watermark: Annotated[bool, Query(description="Apply the key's watermark to the generated tokens.")] = True,
) -> GenerateResponse:
    return await generate(state, request, watermark)
