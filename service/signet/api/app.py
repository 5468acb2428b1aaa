"""The FastAPI application factory, and the OpenAPI document of an app with default settings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

import signet
from signet.api.auth import authenticate
from signet.api.detect.router import router as detect_router
from signet.api.docs import router as docs_router
from signet.api.errors import install_error_handlers
from signet.api.gate import AuthenticateFirst, HostCheck
from signet.api.generate.router import router as generate_router
from signet.api.health.router import router as health_router
from signet.api.json_budget import JsonBudget
from signet.api.limits import BodyLimits
from signet.api.metrics import router as metrics_router
from signet.api.openai.router import router as openai_router
from signet.api.openapi import install_openapi, limits_description
from signet.api.provenance.recorder import Recorder
from signet.api.provenance.router import router as provenance_router
from signet.api.rate_limit import enforce_rate_limit
from signet.api.responses import problem_responses
from signet.api.score.router import router as score_router
from signet.api.state import ServiceState
from signet.api.telemetry import install_telemetry
from signet.api.ui.router import router as ui_router
from signet.settings import Settings


def create_app(state: ServiceState, allowed_hosts: frozenset[str] | None = None) -> FastAPI:
    """The application over ``state``.

    ``allowed_hosts``: the host names it answers besides IP addresses (gate.allowed_hosts);
    None: any. ``signet serve`` passes the deployment's; in-process tests pass none, their
    client's Host being "testserver".
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recorder = None
        if state.generation_store is not None and state.engine is not None:
            recorder = state.recorder = Recorder(state)
            recorder.start()
        yield
        if recorder is not None:
            await recorder.stop()  # what is queued is written before the process ends
        # Here, not after uvicorn returns: on SIGTERM uvicorn re-raises the signal once
        # it has shut down, which ends the process before any code after serve() runs,
        # and vLLM's engine-core process would outlive us.
        if state.engine is not None:
            state.engine.shutdown()
        if state.redis is not None:
            await state.redis.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="Signet",
        version=signet.__version__,
        description="Watermark LLM text on a vLLM engine and detect it with exact statistics."
        + limits_description(state.settings),
        docs_url=None,  # api/docs.py serves /docs without a CDN
        redoc_url=None,
    )
    app.state.signet = state
    install_error_handlers(app)
    # Added innermost first: a request meets the Host check, then authentication from its
    # headers alone (gate.py), and only then is its body read, within the limits.
    settings = state.settings
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
        json_budget=JsonBudget.from_settings(settings),
    )
    app.add_middleware(AuthenticateFirst, routed=app)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, names=allowed_hosts)
    for router in (generate_router, detect_router, score_router, openai_router, provenance_router):
        # in this order: a request without a known API key gets 401 before it is counted
        app.include_router(
            router,
            dependencies=[Depends(authenticate), Depends(enforce_rate_limit)],
            responses=problem_responses(400, 401, 403, 408, 413, 415, 422, 429),
        )
    app.include_router(health_router)  # probes are never limited
    app.include_router(metrics_router)  # nor is /metrics
    app.include_router(ui_router)  # the web page: no API key (it holds none; its calls send the user's)
    app.include_router(docs_router)  # the same for the API's
    install_telemetry(app)  # request ids, HTTP metrics, access log: around everything, errors included
    install_openapi(app)
    return app


def write_document(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(openapi_document(), indent=2) + "\n", encoding="utf-8")


def openapi_document() -> dict[str, Any]:
    """The document of an app with the default settings, whatever this process's environment."""
    settings = Settings.model_construct()  # defaults only: SIGNET_* variables must not change the spec
    return create_app(ServiceState(settings, keys=None, tokenizers=None)).openapi()
