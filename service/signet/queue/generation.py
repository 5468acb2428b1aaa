"""The "generate" job, both ends: the API's stand-in for an engine, and the worker's handler.

The API tokenizes the prompt and checks the request; the worker runs it on its vLLM
engine. Both ends name the watermark key by id and by fingerprint, so a worker whose
keys file differs from the API's refuses the job instead of marking text with another
secret than the one detection will test for.
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, ConfigDict

from signet.engine.vllm_engine import Completion, EngineUnavailableError, SamplingOptions
from signet.keys import KeyRegistry, UnknownKeyError
from signet.queue.consumer import Handler
from signet.queue.jobs import JobError, WorkerUnfit
from signet.queue.producer import JobQueue

KIND = "generate"


class GenerationJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_token_ids: list[int]
    options: dict
    watermark_key_id: str | None
    key_fingerprint: str | None


class RemoteEngine:
    """What the API holds in distributed mode: ``VllmEngine``'s interface, run by workers."""

    def __init__(self, queue: JobQueue, keys: KeyRegistry, max_model_len: int, timeout_seconds: float) -> None:
        self.queue = queue
        self.max_model_len = max_model_len
        self._keys = keys
        self._timeout = timeout_seconds

    @property
    def is_healthy(self) -> bool:
        """False while Redis is known to be down: queued routes then refuse at once."""
        return self.queue.link.is_up

    async def generate(
        self, prompt_token_ids: list[int], options: SamplingOptions, watermark_key_id: str | None
    ) -> Completion:
        fingerprint = self._keys.get(watermark_key_id).fingerprint if watermark_key_id is not None else None
        job = GenerationJob(
            prompt_token_ids=prompt_token_ids,
            options=dataclasses.asdict(options),
            watermark_key_id=watermark_key_id,
            key_fingerprint=fingerprint,
        )
        value = await self.queue.run(KIND, job.model_dump(), self._timeout)
        return Completion(**value)

    def shutdown(self) -> None:
        """Nothing to stop: the workers own the engines."""


def generation_handler(engine, keys: KeyRegistry, worker_name: str) -> Handler:  # engine: VllmEngine
    async def generate(payload: dict) -> dict:
        job = GenerationJob.model_validate(payload)
        _check_key(keys, job, worker_name)
        options = SamplingOptions(**job.options)
        if len(job.prompt_token_ids) + options.max_tokens > engine.max_model_len:
            raise JobError(
                422,
                f"max_tokens: the prompt is {len(job.prompt_token_ids)} tokens and max_tokens {options.max_tokens}, "
                f"together more than the model's context of {engine.max_model_len} tokens",
                "max_tokens",
            )
        try:
            completion = await engine.generate(job.prompt_token_ids, options, job.watermark_key_id)
        except EngineUnavailableError as error:
            if not engine.is_healthy:
                raise WorkerUnfit(str(error)) from error
            raise JobError(503, f"generation failed: {error}; retry later", retry_after=1) from error
        return dataclasses.asdict(completion)

    return generate


def _check_key(keys: KeyRegistry, job: GenerationJob, worker_name: str) -> None:
    if job.watermark_key_id is None:
        return
    try:
        fingerprint = keys.get(job.watermark_key_id).fingerprint
    except UnknownKeyError:
        fingerprint = None
    if fingerprint != job.key_fingerprint:
        raise JobError(
            503,
            f"worker {worker_name} holds a different version of key {job.watermark_key_id!r} than the API "
            "(or none): deploy the same keys file to API and workers",
            "key_id",
        )
