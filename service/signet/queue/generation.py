"""The "generate" job, both ends: the API's stand-in for an engine, and the worker's handler.

The API tokenizes the prompt and checks the request; the worker runs it on its vLLM
engine. Both ends name the watermark key by id and by fingerprint, so a worker whose
keys file differs from the API's refuses the job instead of marking text with another
secret than the one detection will test for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncGenerator, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from signet.engine.protocol import Completion, CompletionDelta, Engine, EngineError, EngineStatus, SamplingOptions
from signet.keys import KeyRegistry, UnknownKeyError
from signet.queue.consumer import Handler, PiecePublisher
from signet.queue.jobs import Job, WorkerUnfit
from signet.queue.producer import JobQueue

KIND = "generate"
SAMPLE_KIND = "sample"  # n answers to one prompt in one engine request
# One answer to each of many prompts in one engine request (the scores' judge questions).
# A worker from before this kind leaves such jobs to others, and they are dead-lettered
# after SIGNET_JOB_MAX_DELIVERIES (scores fail until workers are upgraded too).
BATCH_KIND = "batch"
# Fields a newer worker may add are left out, so API pods need not be upgraded first.
_DELTA_FIELDS = [field.name for field in dataclasses.fields(CompletionDelta)]


class GenerationJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_token_ids: list[int]
    options: dict
    watermark_key_id: str | None
    key_fingerprint: str | None


class BatchJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: list[list[int]]
    options: dict
    watermark_key_id: str | None
    key_fingerprint: str | None


JobRequest = TypeVar("JobRequest", GenerationJob, BatchJob)


class RemoteEngine:
    """The ``Engine`` an API process holds in distributed mode: workers run its requests."""

    def __init__(self, queue: JobQueue, keys: KeyRegistry, max_model_len: int, timeout_seconds: float) -> None:
        self.queue = queue
        self.max_model_len = max_model_len
        self._keys = keys
        self._timeout = timeout_seconds

    @property
    def is_healthy(self) -> bool:
        """False while Redis is known to be down: queued routes then refuse at once."""
        return self.queue.link.is_up

    def check_available(self) -> None:
        if not self.is_healthy:
            reason = self.queue.link.last_error
            detail = f"generation is unavailable: the job queue cannot be reached ({reason}); retry later"
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.queue.retry_after)

    async def generate(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> Completion:
        job = self._job(prompt_token_ids, options, watermark_key_id)
        value = await self.queue.run(KIND, job.model_dump(), self._timeout, tenant)
        return Completion.from_dict(value)

    async def sample(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> list[Completion]:
        job = self._job(prompt_token_ids, options, watermark_key_id)
        value = await self.queue.run(SAMPLE_KIND, job.model_dump(), self._timeout, tenant)
        return [Completion.from_dict(completion) for completion in value["completions"]]

    async def generate_batch(
        self,
        prompts: list[list[int]],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> list[Completion]:
        """One job: one worker slot and one place in the tenant's share, whatever the batch's size."""
        if options.n != 1:
            raise ValueError(f"generate_batch makes one answer per prompt, not n={options.n}")
        job = BatchJob(
            prompts=prompts,
            options=dataclasses.asdict(options),
            watermark_key_id=watermark_key_id,
            key_fingerprint=self._fingerprint(watermark_key_id),
        )
        value = await self.queue.run(BATCH_KIND, job.model_dump(), self._timeout, tenant)
        return [Completion.from_dict(completion) for completion in value["completions"]]

    async def stream(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> AsyncGenerator[CompletionDelta, None]:
        """Queue the job now (EngineError here when the queue refuses it), then its pieces."""
        request = self._job(prompt_token_ids, options, watermark_key_id)
        pieces = await self.queue.stream(KIND, request.model_dump(), self._timeout, tenant)
        return _Deltas(pieces)  # type: ignore[return-value]  # the part of AsyncGenerator callers use

    def _job(self, prompt_token_ids: list[int], options: SamplingOptions, watermark_key_id: str | None):
        return GenerationJob(
            prompt_token_ids=prompt_token_ids,
            options=dataclasses.asdict(options),
            watermark_key_id=watermark_key_id,
            key_fingerprint=self._fingerprint(watermark_key_id),
        )

    def _fingerprint(self, watermark_key_id: str | None) -> str | None:
        return self._keys.fingerprint(watermark_key_id) if watermark_key_id is not None else None

    def shutdown(self) -> None:
        """Nothing to stop: the workers own the engines."""


def generation_handler(engine: Engine, keys: KeyRegistry, worker_name: str, publisher: PiecePublisher) -> Handler:
    """``engine``: the worker's own (vLLM). Streaming jobs publish each piece as it comes."""

    async def generate(job: Job) -> dict:
        request, options = _checked(keys, worker_name, job)
        with _engine_failures(engine):
            if job.stream:
                completion = await _stream(engine, request, options, job, publisher)
            else:
                completion = await engine.generate(request.prompt_token_ids, options, request.watermark_key_id)
        return dataclasses.asdict(completion)

    return generate


def sample_handler(engine: Engine, keys: KeyRegistry, worker_name: str) -> Handler:
    """``engine``: the worker's own (vLLM); the job's ``options.n`` answers in one request."""

    async def sample(job: Job) -> dict:
        request, options = _checked(keys, worker_name, job)
        with _engine_failures(engine):
            completions = await engine.sample(request.prompt_token_ids, options, request.watermark_key_id)
        return {"completions": [dataclasses.asdict(completion) for completion in completions]}

    return sample


def batch_handler(engine: Engine, keys: KeyRegistry, worker_name: str) -> Handler:
    """``engine``: the worker's own (vLLM); one answer to each of the job's prompts, in one request."""

    async def batch(job: Job) -> dict:
        request, options = _checked(keys, worker_name, job, BatchJob)
        with _engine_failures(engine):
            completions = await engine.generate_batch(request.prompts, options, request.watermark_key_id)
        return {"completions": [dataclasses.asdict(completion) for completion in completions]}

    return batch


def _checked(
    keys: KeyRegistry, worker_name: str, job: Job, model: type[JobRequest] = GenerationJob
) -> tuple[JobRequest, SamplingOptions]:
    """The job's request; the engine checks that it fits its context."""
    request = model.model_validate(job.payload)
    _check_key(keys, request, worker_name)
    return request, SamplingOptions(**request.options)


@contextlib.contextmanager
def _engine_failures(engine: Engine) -> Iterator[None]:
    """A dead engine makes the worker unfit (its jobs go to others); other errors are the job's outcome."""
    try:
        yield
    except EngineError as error:
        if error.status is EngineStatus.UNAVAILABLE and not engine.is_healthy:
            raise WorkerUnfit(str(error)) from error
        raise


class _Deltas:
    """A streaming job's pieces as CompletionDelta. Not a generator: closing one that was
    never stepped must still close the job's pieces, which cancels the job."""

    def __init__(self, pieces: AsyncGenerator[dict[str, Any], None]) -> None:
        self._pieces = pieces

    def __aiter__(self) -> _Deltas:
        return self

    async def __anext__(self) -> CompletionDelta:
        piece = await anext(self._pieces)
        return CompletionDelta(**{name: piece[name] for name in _DELTA_FIELDS if name in piece})

    async def aclose(self) -> None:
        await self._pieces.aclose()


async def _stream(
    engine: Engine, request: GenerationJob, options: SamplingOptions, job: Job, publisher: PiecePublisher
) -> Completion:
    attempt, text, token_ids, finish_reason = uuid.uuid4().hex, [], [], "stop"
    # Closed however it ends: a piece Redis leaves unanswered for claim_idle_seconds aborts the generation.
    deltas = await engine.stream(request.prompt_token_ids, options, request.watermark_key_id)
    async with contextlib.aclosing(deltas):
        async for delta in deltas:
            await publisher.publish(job, attempt, len(text) + 1, dataclasses.asdict(delta))  # numbered from 1
            text.append(delta.text)
            token_ids.extend(delta.token_ids)
            finish_reason = delta.finish_reason or finish_reason
    return Completion("".join(text), token_ids, len(request.prompt_token_ids), finish_reason)


def _check_key(keys: KeyRegistry, request: GenerationJob | BatchJob, worker_name: str) -> None:
    if request.watermark_key_id is None:
        return
    try:
        fingerprint = keys.fingerprint(request.watermark_key_id)
    except UnknownKeyError:
        fingerprint = None
    if fingerprint != request.key_fingerprint:
        raise EngineError(
            EngineStatus.UNAVAILABLE,
            f"worker {worker_name} holds a different version of key {request.watermark_key_id!r} than the API "
            "(or none): deploy the same keys file to API and workers",
            "watermark_key_id",
        )
