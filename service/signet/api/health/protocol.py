"""Response bodies of ``GET /healthz`` and ``GET /readyz``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "mode": "embedded", "engine": "loaded"},
                {
                    "status": "ready",
                    "mode": "distributed",
                    "engine": "workers",
                    "redis": "up",
                    "workers": 2,
                    "queue_depth": 0,
                },
                {"status": "degraded", "mode": "distributed", "engine": "workers", "redis": "down"},
            ]
        }
    )

    status: Literal["ready", "degraded"] = Field(
        description="'degraded': /detect works, queued routes (generation) do not: Redis is down or no worker is up."
    )
    mode: Literal["embedded", "distributed"]
    engine: Literal["loaded", "workers"]
    redis: Literal["up", "down"] | None = Field(default=None, description="Distributed mode: Redis answers a PING.")
    workers: int | None = Field(default=None, description="Distributed mode: workers with a recent heartbeat.")
    queue_depth: int | None = Field(default=None, description="Distributed mode: jobs waiting or running.")
