"""Generation as every endpoint family asks for it: check the request, render and tokenize
the prompt, check it fits, run the engine (whole or streamed), and report engine errors.

``/generate``, the OpenAI-compatible routes and the scores all call the engine through
here, so each speaks to it, and fails, the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from signet import metrics
from signet.api.errors import ApiError, retry_after
from signet.api.limits import check_text_size
from signet.api.protocol import WatermarkInfo
from signet.api.state import ServiceState
from signet.engine.model_store import encode_prompt
from signet.engine.protocol import (
    Completion,
    CompletionDelta,
    Engine,
    EngineError,
    EngineStatus,
    SamplingOptions,
    context_overflow,
)
from signet.keys import WatermarkKey

_HTTP_STATUS = {
    EngineStatus.INVALID: 422,
    EngineStatus.UNAVAILABLE: 503,
    EngineStatus.TIMED_OUT: 504,
    EngineStatus.FAILED: 502,
}
# The engine names its inputs; requests name the watermark key key_id. The engine's
# other names (max_tokens) are the /generate request's own.
_REQUEST_FIELDS = {"watermark_key_id": "key_id"}


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
    tenant: str | None = None  # whose share of the job queue it takes (Caller.queue_tenant)

    @property
    def input_field(self) -> str:
        return "prompt" if self.prompt is not None else "messages"


def new_generation_id() -> str:
    """A generation's id in the registry: 128 random bits (api/provenance/protocol.py's pattern)."""
    return f"gen-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class PreparedGeneration:
    prompt_token_ids: list[int]
    options: SamplingOptions
    key: WatermarkKey | None
    tenant: str | None = None
    generation_id: str = field(default_factory=new_generation_id)

    @property
    def key_id(self) -> str | None:
        return self.key.key_id if self.key is not None else None


def check_max_tokens(state: ServiceState, max_tokens: int, field: str) -> None:
    """422 for a request that asks more tokens of one sequence than SIGNET_MAX_NEW_TOKENS:
    generation and the scores' answers and samples alike."""
    if max_tokens > state.settings.max_new_tokens:
        raise ApiError(422, f"{field}: at most {state.settings.max_new_tokens}", field)


async def prepare(state: ServiceState, request: GenerationInput) -> PreparedGeneration:
    """Every check that can refuse the request, done before any token is generated (so a
    streamed response never starts for a request that cannot succeed)."""
    check_prompt_size(state, request.prompt, request.messages)
    field = request.max_tokens_field
    if request.max_tokens is not None:
        check_max_tokens(state, request.max_tokens, field)
    key = state.keys.get(request.key_id) if request.watermark else None
    if key is not None:
        _check_key_fits(state, key, request)
    engine = require_engine(state)
    prompt_ids = await run_in_threadpool(encode_prompt, state.tokenizer, request.prompt, request.messages)
    room = engine.max_model_len - len(prompt_ids)
    max_tokens = request.max_tokens if request.max_tokens is not None else min(room, state.settings.max_new_tokens)
    problem = context_overflow(len(prompt_ids), max_tokens, engine.max_model_len, field)
    if problem is not None:
        raise ApiError(422, f"{field}: {problem}", field if request.max_tokens is not None else request.input_field)
    options = SamplingOptions(
        max_tokens, request.temperature, request.top_p, request.seed, request.stop, logprobs=request.logprobs
    )
    return PreparedGeneration(prompt_ids, options, key, request.tenant)


def check_prompt_size(state: ServiceState, prompt: str | None, messages: list[dict[str, str]] | None) -> None:
    if prompt is not None:
        check_text_size("prompt", len(prompt), state.settings.max_text_chars)
    else:
        check_text_size("messages", sum(len(turn["content"]) for turn in messages), state.settings.max_text_chars)


def require_engine(state: ServiceState) -> Engine:
    """The engine, when it can take a request now; else the 503 that says why."""
    if state.engine is None:
        raise ApiError(503, "generation is unavailable: no healthy engine in this process")
    try:
        state.engine.check_available()
    except EngineError as error:
        raise engine_problem(error) from error
    return state.engine


def engine_problem(error: EngineError) -> ApiError:
    """The HTTP problem for an engine error, with the field named as requests name it."""
    field = _REQUEST_FIELDS.get(error.field, error.field)
    return ApiError(_HTTP_STATUS[error.status], error.detail, field, headers=retry_after(error.retry_after))


async def complete(state: ServiceState, prepared: PreparedGeneration) -> Completion:
    try:
        completion = await state.engine.generate(
            prepared.prompt_token_ids, prepared.options, prepared.key_id, prepared.tenant
        )
    except EngineError as error:
        raise engine_problem(error) from error
    metrics.count_generated(completion.completion_tokens, watermarked=prepared.key is not None)
    record(state, prepared, completion.text)
    return completion


def record(state: ServiceState, prepared: PreparedGeneration, text: str) -> None:
    """Hand a finished generation to the registry (queued: the response does not wait).

    Every generation is recorded, watermarked or not: provenance finds a rewording by its
    meaning, so it covers what the watermark does not (docs/PROVENANCE.md)."""
    if state.recorder is not None:
        state.recorder.submit(prepared.tenant, prepared.generation_id, text, prepared.key_id)


@dataclass(frozen=True)
class StreamedGeneration:
    """A streamed generation the engine has taken: its pieces, read once, and how to stop it."""

    prepared: PreparedGeneration
    deltas: AsyncGenerator[CompletionDelta, None]
    state: ServiceState

    async def pieces(self) -> AsyncIterator[CompletionDelta]:
        """The engine's pieces; its failures raise ApiError for the stream to report. A
        stream read to its last piece is recorded; one cut short is not."""
        texts = []
        try:
            async for delta in self.deltas:
                metrics.observe_generation_piece(delta, watermarked=self.prepared.key is not None)
                texts.append(delta.text)
                if delta.finish_reason is not None:
                    record(self.state, self.prepared, "".join(texts))
                yield delta
        except EngineError as error:
            raise engine_problem(error) from error

    async def stop(self) -> None:
        """Stop the generation (a queued job is cancelled), whether its pieces were read or not."""
        await self.deltas.aclose()


async def start_stream(state: ServiceState, prepared: PreparedGeneration) -> StreamedGeneration:
    """Have the engine take the generation. Every refusal (the queue full or unreachable,
    the tenant's share held) raises ApiError here, before the response begins, so it is
    answered with its own status and Retry-After rather than as an event of a 200 stream."""
    try:
        deltas = await state.engine.stream(
            prepared.prompt_token_ids, prepared.options, prepared.key_id, prepared.tenant
        )
    except EngineError as error:
        raise engine_problem(error) from error
    return StreamedGeneration(prepared, deltas, state)


def _check_key_fits(state: ServiceState, key: WatermarkKey, request: GenerationInput) -> None:
    tokenizer = state.tokenizers.resolve_name(key.tokenizer)
    if tokenizer != state.model_name:
        raise ApiError(
            422,
            f"key {key.key_id!r} is for tokenizer {tokenizer!r}; this service generates with {state.model_name!r}",
            "key_id",
        )
    problem = key.sampling_problem(request.temperature, request.top_p)
    if problem is not None:
        raise ApiError(422, f"{problem.field}: key {key.key_id!r} ({key.scheme}) {problem.reason}", problem.field)


def watermark_info(key: WatermarkKey | None) -> WatermarkInfo:
    """What a response may show of the key it was watermarked with: never the secret."""
    if key is None:
        return WatermarkInfo(enabled=False)
    return WatermarkInfo(enabled=True, scheme=key.scheme, key_id=key.key_id, **key.public_parameters())
