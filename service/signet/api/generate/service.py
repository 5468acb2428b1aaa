"""Generation for ``/generate`` and the OpenAI-compatible routes: check the request,
render and tokenize the prompt, check it fits, run the engine (whole or streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from signet import metrics
from signet.api.errors import ApiError, retry_after
from signet.api.generate.protocol import GenerateChunk, GenerateRequest, GenerateResponse, Usage, WatermarkInfo
from signet.api.limits import check_text_size
from signet.api.score.answer_scores import TOP_LOGPROBS, logprob_scores
from signet.api.state import ServiceState
from signet.engine.model_store import encode_prompt
from signet.engine.vllm_engine import Completion, CompletionDelta, EngineUnavailableError, SamplingOptions
from signet.keys import WatermarkKey
from signet.queue.jobs import JobError
from signet.watermark.gumbel import SCHEME_NAME as GUMBEL


@dataclass(frozen=True)
class GenerationInput:
    """A generation request, whichever route it came by."""

    prompt: str | None
    messages: list[dict[str, str]] | None
    max_tokens: int | None  # None: as many as the context leaves, up to SIGNET_MAX_NEW_TOKENS
    temperature: float
    top_p: float
    seed: int | None
    key_id: str | None
    watermark: bool
    stop: tuple[str, ...] = ()
    max_tokens_field: str = "max_tokens"  # how the caller's API names it, for error messages
    logprobs: int | None = None  # top-k logprobs per token, for uncertainty scores

    @classmethod
    def of(cls, request: GenerateRequest, watermark: bool, uncertainty: bool = False) -> GenerationInput:
        return cls(
            logprobs=TOP_LOGPROBS if uncertainty else None,
            prompt=request.prompt,
            messages=request.turns(),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            key_id=request.key_id,
            watermark=watermark,
        )

    @property
    def input_field(self) -> str:
        return "prompt" if self.prompt is not None else "messages"


@dataclass(frozen=True)
class PreparedGeneration:
    prompt_token_ids: list[int]
    options: SamplingOptions
    key: WatermarkKey | None

    @property
    def key_id(self) -> str | None:
        return self.key.key_id if self.key is not None else None


async def prepare(state: ServiceState, request: GenerationInput) -> PreparedGeneration:
    """Every check that can refuse the request, done before any token is generated (so a
    streamed response never starts for a request that cannot succeed)."""
    check_prompt_size(state, request.prompt, request.messages)
    field = request.max_tokens_field
    if request.max_tokens is not None and request.max_tokens > state.settings.max_new_tokens:
        raise ApiError(422, f"{field}: at most {state.settings.max_new_tokens}", field)
    key = state.keys.get(request.key_id) if request.watermark else None
    if key is not None:
        _check_key_fits(state, key, request)
    engine = state.engine
    if engine is None or not engine.is_healthy:
        raise unavailable(state)
    prompt_ids = await run_in_threadpool(encode_prompt, state.tokenizer, request.prompt, request.messages)
    room = engine.max_model_len - len(prompt_ids)
    max_tokens = request.max_tokens if request.max_tokens is not None else min(room, state.settings.max_new_tokens)
    if max_tokens > room or max_tokens < 1:
        raise ApiError(
            422,
            f"{field}: the prompt is {len(prompt_ids)} tokens and {field} {max_tokens}, "
            f"together more than the model's context of {engine.max_model_len} tokens",
            field if request.max_tokens is not None else request.input_field,
        )
    options = SamplingOptions(
        max_tokens, request.temperature, request.top_p, request.seed, request.stop, logprobs=request.logprobs
    )
    return PreparedGeneration(prompt_ids, options, key)


def check_prompt_size(state: ServiceState, prompt: str | None, messages: list[dict[str, str]] | None) -> None:
    if prompt is not None:
        check_text_size("prompt", len(prompt), state.settings.max_text_chars)
    else:
        check_text_size("messages", sum(len(turn["content"]) for turn in messages), state.settings.max_text_chars)


async def complete(state: ServiceState, prepared: PreparedGeneration) -> Completion:
    try:
        completion = await state.engine.generate(prepared.prompt_token_ids, prepared.options, prepared.key_id)
    except (EngineUnavailableError, JobError) as error:
        raise engine_problem(state, error) from error
    metrics.count_generated(completion.completion_tokens, watermarked=prepared.key is not None)
    return completion


async def stream(state: ServiceState, prepared: PreparedGeneration) -> AsyncIterator[CompletionDelta]:
    """The engine's pieces; failures after the first piece raise ApiError for the stream to report."""
    try:
        async for delta in state.engine.stream(prepared.prompt_token_ids, prepared.options, prepared.key_id):
            metrics.observe_generation_piece(delta, watermarked=prepared.key is not None)
            yield delta
    except (EngineUnavailableError, JobError) as error:
        raise engine_problem(state, error) from error


async def generate(
    state: ServiceState, request: GenerateRequest, watermark: bool, uncertainty: bool = False
) -> GenerateResponse:
    prepared = await prepare(state, GenerationInput.of(request, watermark, uncertainty))
    completion = await complete(state, prepared)
    scores = None
    if uncertainty:
        # The model's own logprobs of the tokens it generated (before the watermark bias).
        scores = logprob_scores(completion.logprobs, state.vocab_size)
    return GenerateResponse(
        uncertainty=scores,
        text=completion.text,
        token_ids=completion.token_ids,
        finish_reason=completion.finish_reason,
        usage=Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens),
        model=state.model_name,
        watermark=watermark_info(prepared.key),
    )


async def generate_chunks(state: ServiceState, prepared: PreparedGeneration) -> AsyncIterator[GenerateChunk]:
    """``/generate`` with ``stream``: the pieces, the last one with usage and watermark."""
    completion_tokens = 0
    async for delta in stream(state, prepared):
        completion_tokens += len(delta.token_ids)
        chunk = GenerateChunk(text=delta.text, token_ids=delta.token_ids, finish_reason=delta.finish_reason)
        if delta.finish_reason is not None:
            chunk.usage = Usage(prompt_tokens=len(prepared.prompt_token_ids), completion_tokens=completion_tokens)
            chunk.model = state.model_name
            chunk.watermark = watermark_info(prepared.key)
        yield chunk


def engine_problem(state: ServiceState, error: EngineUnavailableError | JobError) -> ApiError:
    if isinstance(error, EngineUnavailableError):
        return ApiError(503, f"generation failed: {error}; retry later")
    return _queue_problem(state, error)


def unavailable(state: ServiceState) -> ApiError:
    if state.redis is None:
        return ApiError(503, "generation is unavailable: no healthy engine in this process")
    return ApiError(
        503,
        f"generation is unavailable: the job queue cannot be reached ({state.redis.last_error}); retry later",
        headers=retry_after(state.settings.queue_retry_after_seconds),
    )


def _queue_problem(state: ServiceState, error: JobError) -> ApiError:
    seconds = error.retry_after or (state.settings.queue_retry_after_seconds if error.status == 503 else None)
    return ApiError(error.status, error.detail, error.field, headers=retry_after(seconds))


def _check_key_fits(state: ServiceState, key: WatermarkKey, request: GenerationInput) -> None:
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


def watermark_info(key: WatermarkKey | None) -> WatermarkInfo:
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
