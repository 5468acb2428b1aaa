from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from signet.api.errors import problem_response
from signet.api.state import StateDependency

router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    engine: str


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, summary="The engine is loaded and healthy")
async def readyz(state: StateDependency):
    if state.engine is None:
        return problem_response(503, "no engine loaded in this process")
    if not state.engine.is_healthy:
        return problem_response(503, "the engine has failed")
    return ReadyResponse(status="ready", engine="loaded")
