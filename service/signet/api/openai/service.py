"""OpenAI-compatible completions on Signet's generation: the same checks, engine and
watermark as ``/generate``, in OpenAI's shapes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from signet.api.errors import ApiError
from signet.api.generation import (
    GenerationInput,
    PreparedGeneration,
    StreamedGeneration,
    complete,
    prepare,
    watermark_info,
)
from signet.api.openai.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatResponseMessage,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    CompletionUsage,
    ModelCard,
    ModelList,
    SignetExtension,
)
from signet.api.state import ServiceState

_STARTED = int(time.time())


def models(state: ServiceState) -> ModelList:
    return ModelList(data=[ModelCard(id=state.model_name, created=_STARTED)])


def _check_model(state: ServiceState, model: str) -> None:
    if model != state.model_name:
        raise ApiError(404, f"model {model!r} is not served here; GET /v1/models lists {state.model_name!r}", "model")


async def prepare_completion(state: ServiceState, request: CompletionRequest, tenant: str | None) -> PreparedGeneration:
    _check_model(state, request.model)
    generation = _generation_input(request, prompt=request.prompt, max_tokens=request.max_tokens, tenant=tenant)
    return await prepare(state, generation)


async def prepare_chat(state: ServiceState, request: ChatCompletionRequest, tenant: str | None) -> PreparedGeneration:
    _check_model(state, request.model)
    # The chat template knows system, user and assistant; OpenAI's "developer" is its system role.
    turns = [
        {"role": "system" if message.role == "developer" else message.role, "content": message.content}
        for message in request.messages
    ]
    generation = _generation_input(
        request,
        messages=turns,
        max_tokens=request.token_limit,
        max_tokens_field=request.token_limit_field,
        tenant=tenant,
    )
    return await prepare(state, generation)


def _generation_input(request: CompletionRequest | ChatCompletionRequest, **specific) -> GenerationInput:
    """What both OpenAI routes share; ``specific``: the prompt or messages, the token limit and the tenant."""
    shared = {
        "prompt": None,
        "messages": None,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "key_id": request.key_id,
        "watermark": request.watermark,
        "stop": request.stop_sequences,
    }
    return GenerationInput(**{**shared, **specific})


async def completion(state: ServiceState, prepared: PreparedGeneration) -> CompletionResponse:
    result = await complete(state, prepared)
    return CompletionResponse(
        model=state.model_name,
        choices=[CompletionChoice(text=result.text, finish_reason=result.finish_reason)],
        usage=CompletionUsage.of(result.prompt_tokens, result.completion_tokens),
        signet=SignetExtension(
            watermark=watermark_info(prepared.key), token_ids=result.token_ids, generation_id=prepared.generation_id
        ),
    )


async def chat_completion(state: ServiceState, prepared: PreparedGeneration) -> ChatCompletionResponse:
    result = await complete(state, prepared)
    return ChatCompletionResponse(
        model=state.model_name,
        choices=[ChatChoice(message=ChatResponseMessage(content=result.text), finish_reason=result.finish_reason)],
        usage=CompletionUsage.of(result.prompt_tokens, result.completion_tokens),
        signet=SignetExtension(
            watermark=watermark_info(prepared.key), token_ids=result.token_ids, generation_id=prepared.generation_id
        ),
    )


async def completion_chunks(
    state: ServiceState, generation: StreamedGeneration, include_usage: bool
) -> AsyncIterator[CompletionResponse]:
    prepared = generation.prepared
    first = CompletionResponse(model=state.model_name, choices=[])
    watermark = watermark_info(prepared.key)
    generated = 0
    async for delta in generation.pieces():
        generated += len(delta.token_ids)
        yield first.model_copy(
            update={
                "choices": [CompletionChoice(text=delta.text, finish_reason=delta.finish_reason)],
                "signet": SignetExtension(
                    watermark=watermark, token_ids=delta.token_ids, generation_id=prepared.generation_id
                ),
            }
        )
    if include_usage:
        yield first.model_copy(update={"usage": CompletionUsage.of(len(prepared.prompt_token_ids), generated)})


async def chat_chunks(
    state: ServiceState, generation: StreamedGeneration, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """OpenAI's order: a first chunk with the role, then content pieces, the last with finish_reason."""
    prepared = generation.prepared
    first = ChatCompletionChunk(
        model=state.model_name,
        choices=[ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))],
    )
    yield first
    watermark = watermark_info(prepared.key)
    generated = 0
    async for delta in generation.pieces():
        generated += len(delta.token_ids)
        yield first.model_copy(
            update={
                "choices": [ChatChunkChoice(delta=ChatDelta(content=delta.text), finish_reason=delta.finish_reason)],
                "signet": SignetExtension(
                    watermark=watermark, token_ids=delta.token_ids, generation_id=prepared.generation_id
                ),
            }
        )
    if include_usage:
        usage = CompletionUsage.of(len(prepared.prompt_token_ids), generated)
        yield first.model_copy(update={"choices": [], "usage": usage})
