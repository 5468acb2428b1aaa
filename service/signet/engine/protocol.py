"""The contract between Signet's callers and an engine, whichever engine it is.

Two engines implement it: ``VllmEngine`` (vLLM in this process: embedded mode and the
worker) and the queue's ``RemoteEngine`` (an API process in distributed mode, whose
jobs workers run). Callers hold an ``Engine`` and never ask which one: both take the
same value types and fail with the same ``EngineError``.

This module imports nothing but the standard library, so a process that never runs
vLLM (the API in distributed mode, the queue's tests) can use its types.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, Awaitable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")

# vLLM's default max_logprobs: the most logprobs it lists per position.
MAX_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # strings that end the generation (left out of the text)
    ignore_eos: bool = False  # fixed-length runs for benchmarks
    n: int = 1  # answers drawn in one engine request (``Engine.sample``)
    logprobs: int | None = None  # top-k logprobs at each generated token, from the model's raw distribution
    prompt_logprobs: int | None = None  # the same at each prompt token: scores given text in one pass


@dataclass(frozen=True)
class TokenLogprobs:
    """The model's log-probabilities along a token sequence, one entry per position.

    vLLM's engine runs with ``logprobs_mode="raw_logprobs"``: these come from the model's
    own distribution, before temperature, top-p or the watermark bias touch it.
    """

    chosen: list[float]  # log p of the token that is at each position
    top_ids: list[list[int]]  # the k most likely tokens at each position, most likely first
    top: list[list[float]]  # their log-probabilities


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    logprobs: TokenLogprobs | None = None  # of the generated tokens, when options.logprobs asked
    # Of prompt tokens 1.. (token 0 has no context), when options.prompt_logprobs asked.
    prompt_logprobs: TokenLogprobs | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @classmethod
    def from_dict(cls, value: dict) -> Completion:
        """Inverse of ``dataclasses.asdict``, ignoring fields a newer sender added."""
        fields = {name: value[name] for name in _COMPLETION_FIELDS if name in value}
        for name in ("logprobs", "prompt_logprobs"):
            if fields.get(name) is not None:
                fields[name] = TokenLogprobs(**fields[name])
        return cls(**fields)


_COMPLETION_FIELDS = ("text", "token_ids", "prompt_tokens", "finish_reason", "logprobs", "prompt_logprobs")


@dataclass(frozen=True)
class CompletionDelta:
    """What one engine step added to a streamed generation; the last carries finish_reason."""

    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    time_to_first_token: float | None = None  # on the first delta with tokens: seconds since the engine got it


class EngineStatus(enum.Enum):
    """Why an engine did not answer, in the engine's terms; the API maps each to an HTTP status."""

    INVALID = "invalid"  # the request cannot run as asked (it does not fit the context, say)
    UNAVAILABLE = "unavailable"  # nothing can run it now; the same request may succeed later
    TIMED_OUT = "timed_out"  # no result within the request's deadline
    FAILED = "failed"  # it failed for good (every delivery, or midway through a stream); retrying will not help


class EngineError(Exception):
    """An engine request that produced no answer, raised by every engine.

    ``field`` names the engine input at fault (``max_tokens``, ``watermark_key_id``,
    ``prompt_token_ids``), not a request field: callers map it to their own names.
    ``retry_after`` is the seconds after which a retry may succeed, where known.
    """

    def __init__(
        self, status: EngineStatus, detail: str, field: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.retry_after = retry_after


class Engine(Protocol):
    """What callers use of an engine. ``watermark_key_id`` None: no watermark.

    ``tenant`` names who the request is for: an engine whose capacity tenants share (the
    queue) gives each a bounded share of it. None: no tenant (development mode), bound
    only by the engine's own capacity. An engine in one process ignores it.
    """

    max_model_len: int  # prompt and generated tokens together

    @property
    def is_healthy(self) -> bool: ...

    def check_available(self) -> None:
        """Raise EngineError(UNAVAILABLE), saying why, when this engine can take no request now."""
        ...

    async def generate(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> Completion: ...

    async def sample(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> list[Completion]:
        """``options.n`` answers to one prompt, drawn in one engine request (one prefill)."""
        ...

    async def generate_batch(
        self,
        prompts: list[list[int]],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> list[Completion]:
        """One answer (``options.n`` must be 1) to each of ``prompts``, in order, as one engine
        request: the engine schedules them together, the queue sends them as one job."""
        ...

    async def stream(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> AsyncGenerator[CompletionDelta, None]:
        """Take the request, then return its generation as it happens, piece by piece.

        Two steps, so that every refusal (the request does not fit, the queue is full or
        unreachable, the tenant holds its share) is raised by this await, before any piece:
        a caller can still answer it with a status of its own, where a refusal from inside
        the iterator would reach a client only inside a stream already answered 200.
        Failures once the request is taken come from the iterator. Closing the iterator
        (``aclose``), iterated or not, stops the request (a queued job is cancelled)."""
        ...

    def shutdown(self) -> None:
        """Release the engine; safe to call more than once."""
        ...


def fits_context(prompt_tokens: int, max_tokens: int, max_model_len: int) -> bool:
    """The context-length rule, written once: a request fits when its prompt and the tokens
    it may generate (at least one) fit the model's context together."""
    return 1 <= max_tokens and prompt_tokens + max_tokens <= max_model_len


def context_overflow(prompt_tokens: int, max_tokens: int, max_model_len: int, max_tokens_name: str) -> str | None:
    """None when the request fits (``fits_context``); else why not, naming ``max_tokens`` as the caller does."""
    if fits_context(prompt_tokens, max_tokens, max_model_len):
        return None
    return (
        f"the prompt is {prompt_tokens} tokens and {max_tokens_name} {max_tokens}, "
        f"together more than the model's context of {max_model_len} tokens"
    )


def check_context(prompt_token_ids: list[int], options: SamplingOptions, max_model_len: int) -> None:
    """Raise EngineError(INVALID) for a request that does not fit the context (see ``context_overflow``)."""
    problem = context_overflow(len(prompt_token_ids), options.max_tokens, max_model_len, "max_tokens")
    if problem is not None:
        raise EngineError(EngineStatus.INVALID, f"max_tokens: {problem}", "max_tokens")


async def all_or_none(work: Iterable[Awaitable[T]]) -> list[T]:
    """Every result, in order; or, at the first failure, the others cancelled (a queued job
    cancelled in Redis, a vLLM request aborted) and that failure raised as itself, not as
    an ExceptionGroup, so callers handle EngineError and their own errors as usual.

    ``asyncio.gather`` would leave the others running for nobody."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(item)) for item in work]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _awaited(item: Awaitable[T]) -> T:
    return await item
