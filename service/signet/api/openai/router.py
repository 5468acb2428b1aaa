"""OpenAI-compatible routes: point an OpenAI client's ``base_url`` at ``<signet>/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from signet.api import sse
from signet.api.auth import CallerDependency, authorize_generation
from signet.api.disconnect import cancel_on_disconnect
from signet.api.generation import start_stream
from signet.api.openai.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelList,
)
from signet.api.openai.service import (
    chat_chunks,
    chat_completion,
    completion,
    completion_chunks,
    models,
    prepare_chat,
    prepare_completion,
)
from signet.api.responses import GENERATION_RESPONSES
from signet.api.state import StateDependency

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", response_model=ModelList, summary="The served model (OpenAI-compatible)")
async def models_route(state: StateDependency) -> ModelList:
    return models(state)


@router.post(
    "/completions",
    response_model=CompletionResponse,
    responses=GENERATION_RESPONSES,
    summary="Complete a prompt, watermarked by default (OpenAI-compatible; stream for server-sent events)",
)
async def completions_route(
    body: CompletionRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> CompletionResponse | Response:
    authorize_generation(caller, state, body.key_id, body.watermark)
    prepared = await prepare_completion(state, body, caller.queue_tenant)
    if body.stream:
        generation = await start_stream(state, prepared)  # refusals answered here, with their status
        chunks = completion_chunks(state, generation, body.include_usage)
        return sse.event_stream((chunk.model_dump_json() async for chunk in chunks), generation.stop)
    return await cancel_on_disconnect(request, completion(state, prepared))


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses=GENERATION_RESPONSES,
    summary="Answer a conversation, watermarked by default (OpenAI-compatible; stream for server-sent events)",
)
async def chat_completions_route(
    body: ChatCompletionRequest, request: Request, state: StateDependency, caller: CallerDependency
) -> ChatCompletionResponse | Response:
    authorize_generation(caller, state, body.key_id, body.watermark)
    prepared = await prepare_chat(state, body, caller.queue_tenant)
    if body.stream:
        generation = await start_stream(state, prepared)  # refusals answered here, with their status
        chunks = chat_chunks(state, generation, body.include_usage)
        return sse.event_stream((chunk.model_dump_json() async for chunk in chunks), generation.stop)
    return await cancel_on_disconnect(request, chat_completion(state, prepared))
