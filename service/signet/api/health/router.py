from __future__ import annotations

from fastapi import APIRouter

from signet.api.errors import problem_response
from signet.api.health.protocol import HealthResponse, ReadyResponse
from signet.api.responses import problem_responses
from signet.api.state import ServiceState, StateDependency
from signet.redis_link import RedisUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    response_model_exclude_none=True,
    responses=problem_responses(503),
    summary="Ready to serve: the engine is loaded (embedded) or the API runs, maybe degraded (distributed)",
)
async def readyz(state: StateDependency):
    if state.redis is not None:
        # An API process can always serve /detect: it stays in its Service while Redis
        # or the workers are away, and says so.
        return await _distributed_readiness(state)
    if state.engine is None:
        return problem_response(503, "no engine loaded in this process")
    if not state.engine.is_healthy:
        return problem_response(503, "the engine has failed")
    return ReadyResponse(status="ready", mode="embedded", engine="loaded")


async def _distributed_readiness(state: ServiceState) -> ReadyResponse:
    down = ReadyResponse(status="degraded", mode="distributed", engine="workers", redis="down")
    if not await state.redis.ping():
        return down
    queue = state.queue
    try:
        workers = await queue.workers_alive(state.settings.job_claim_idle_seconds)
        depth = await queue.depth()
    except RedisUnavailable:
        return down
    status = "ready" if workers > 0 else "degraded"
    return ReadyResponse(
        status=status, mode="distributed", engine="workers", redis="up", workers=workers, queue_depth=depth
    )
