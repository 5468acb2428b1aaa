"""``/generate`` logic: render the prompt, check it fits, run the engine."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from signet.api.errors import ApiError
from signet.api.generate.protocol import GenerateRequest, GenerateResponse, Usage, WatermarkInfo
from signet.api.limits import check_text_size
from signet.api.state import ServiceState
from signet.engine.model_store import encode_prompt
from signet.engine.vllm_engine import EngineUnavailableError, SamplingOptions
from signet.keys import WatermarkKey
from signet.queue.jobs import JobError
from signet.watermark.gumbel import SCHEME_NAME as GUMBEL


def _prompt_token_ids(tokenizer, request: GenerateRequest) -> list[int]:
    turns = [message.model_dump() for message in request.messages] if request.messages is not None else None
    return encode_prompt(tokenizer, request.prompt, turns)


async def generate(state: ServiceState, request: GenerateRequest, watermark: bool) -> GenerateResponse:
    check_text_size(request.input_field, request.input_chars, state.settings.max_text_chars)
    if request.max_tokens > state.settings.max_new_tokens:
        raise ApiError(422, f"max_tokens: at most {state.settings.max_new_tokens}", "max_tokens")
    key = state.keys.get(request.key_id) if watermark else None
    if key is not None:
        _check_key_fits(state, key, request)
    engine = state.engine
    if engine is None or not engine.is_healthy:
        raise _unavailable(state)

    prompt_ids = await run_in_threadpool(_prompt_token_ids, state.tokenizer, request)
    if len(prompt_ids) + request.max_tokens > engine.max_model_len:
        raise ApiError(
            422,
            f"max_tokens: the prompt is {len(prompt_ids)} tokens and max_tokens {request.max_tokens}, "
            f"together more than the model's context of {engine.max_model_len} tokens",
            "max_tokens",
        )
    options = SamplingOptions(request.max_tokens, request.temperature, request.top_p, request.seed)
    try:
        completion = await engine.generate(prompt_ids, options, key.key_id if key else None)
    except EngineUnavailableError as error:
        raise ApiError(503, f"generation failed: {error}; retry later") from error
    except JobError as error:
        raise _queue_problem(state, error) from error
    return GenerateResponse(
        text=completion.text,
        token_ids=completion.token_ids,
        finish_reason=completion.finish_reason,
        usage=Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens),
        model=state.model_name,
        watermark=_watermark_info(key),
    )


def _unavailable(state: ServiceState) -> ApiError:
    if state.redis is None:
        return ApiError(503, "generation is unavailable: no healthy engine in this process")
    return ApiError(
        503,
        f"generation is unavailable: the job queue cannot be reached ({state.redis.last_error}); retry later",
        headers=_retry_after(state.settings.queue_retry_after_seconds),
    )


def _queue_problem(state: ServiceState, error: JobError) -> ApiError:
    retry_after = error.retry_after or (state.settings.queue_retry_after_seconds if error.status == 503 else None)
    return ApiError(error.status, error.detail, error.field, headers=_retry_after(retry_after))


def _retry_after(seconds: int | None) -> dict[str, str] | None:
    return None if seconds is None else {"Retry-After": str(seconds)}


def _check_key_fits(state: ServiceState, key: WatermarkKey, request: GenerateRequest) -> None:
    tokenizer = state.tokenizers.resolve_name(key.tokenizer)
    if tokenizer != state.model_name:
        raise ApiError(
            422,
            f"key {key.key_id!r} is for tokenizer {tokenizer!r}; this service generates with {state.model_name!r}",
            "key_id",
        )
    if key.scheme == GUMBEL:
        # Gumbel-max sampling replaces the sampler: like vLLM's own, it has no greedy
        # form, and it does not apply top_p.
        if request.temperature == 0:
            raise ApiError(422, f"temperature: key {key.key_id!r} (gumbel) needs temperature > 0", "temperature")
        if request.top_p != 1.0:
            raise ApiError(422, f"top_p: key {key.key_id!r} (gumbel) samples from the whole vocabulary", "top_p")


def _watermark_info(key: WatermarkKey | None) -> WatermarkInfo:
    if key is None:
        return WatermarkInfo(enabled=False)
    return WatermarkInfo(
        enabled=True,
        scheme=key.scheme,
        key_id=key.key_id,
        gamma=getattr(key, "gamma", None),
        delta=getattr(key, "delta", None),
        context_width=getattr(key, "context_width", 1),
    )
