"""What someone who reads Redis finds there: jobs whose key fingerprints reveal no key, and
no job or dead letter (prompts included) older than the retention."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from signet.engine.protocol import Completion, EngineError, EngineStatus, SamplingOptions
from signet.keys import KeyRegistry
from signet.queue import generation
from signet.queue.consumer import PiecePublisher
from signet.queue.generation import RemoteEngine, generation_handler
from signet.queue.jobs import Job, QueueKeys, entry_id_at
from signet.settings import Settings
from signet.watermark.gumbel import GumbelKey
from tests.redis.test_job_queue import wait_until
from tests.unit.test_key_secrets import (
    CANDIDATES,
    FINGERPRINT_SECRET,
    SMALL_KEY,
    keys_document,
    unkeyed_fingerprint,
    write_keys,
)

RETENTION_SECONDS = 600


class EchoEngine:
    """Stands in for vLLM in the worker's handler: answers with the prompt's token ids."""

    is_healthy = True

    async def generate(self, prompt_token_ids, options, watermark_key_id, *args, **kwargs) -> Completion:
        return Completion("echo", list(prompt_token_ids), len(prompt_token_ids), "stop")


async def _queued_job_payload(queue, keys: KeyRegistry, key_id: str) -> dict:
    """The payload of a /generate job as it waits in Redis (no worker takes it)."""
    engine = RemoteEngine(queue, keys, max_model_len=2048, timeout_seconds=30)
    caller = asyncio.create_task(engine.generate([1, 2, 3], SamplingOptions(max_tokens=4), key_id))
    try:
        await wait_until(lambda: _stream_length_is_one(queue))
        ((_, fields),) = await queue.link.async_client.xrange(queue.keys.stream)
        return json.loads(fields[b"payload"])
    finally:
        caller.cancel()
        await asyncio.gather(caller, return_exceptions=True)


async def _stream_length_is_one(queue) -> bool:
    return await queue.depth() == 1


@pytest.mark.asyncio
async def test_a_queued_job_lets_no_redis_reader_find_a_small_key(queue, tmp_path):
    # No fingerprint_secret: the derived one, the weaker of the two ways (keys.py).
    keys = KeyRegistry.load(write_keys(tmp_path, keys_document(fingerprint_secret=None)))
    stored = (await _queued_job_payload(queue, keys, "vllm"))["key_fingerprint"]
    guesses = [GumbelKey(key_id="vllm", scheme="gumbel", key=candidate) for candidate in CANDIDATES]
    found = [guess.key for guess in guesses if unkeyed_fingerprint(guess) == stored]
    assert found == [], f"the gumbel key {found} was found from the job in Redis"
    assert SMALL_KEY in CANDIDATES and stored == keys.fingerprint("vllm")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "worker_fingerprint_secret", [FINGERPRINT_SECRET, FINGERPRINT_SECRET[::-1]], ids=["same", "another"]
)
async def test_a_worker_runs_jobs_only_under_the_api_s_fingerprint_secret(
    link, queue, start_worker, tmp_path, worker_fingerprint_secret
):
    """API and worker load their keys files each: equal files agree on every fingerprint;
    another fingerprint secret makes the key look changed, and the worker refuses the job
    rather than mark text with a key detection may not hold."""
    api_keys = KeyRegistry.load(write_keys(tmp_path, keys_document(), "api.json"))
    worker_keys = KeyRegistry.load(write_keys(tmp_path, keys_document(worker_fingerprint_secret), "worker.json"))
    handler = generation_handler(EchoEngine(), worker_keys, "w1", PiecePublisher(link))
    await start_worker({generation.KIND: handler})
    api = RemoteEngine(queue, api_keys, max_model_len=2048, timeout_seconds=10)
    if worker_fingerprint_secret == FINGERPRINT_SECRET:
        assert (await api.generate([5, 6], SamplingOptions(max_tokens=4), "vllm")).token_ids == [5, 6]
        return
    with pytest.raises(EngineError) as refused:
        await api.generate([5, 6], SamplingOptions(max_tokens=4), "vllm")
    assert refused.value.status is EngineStatus.UNAVAILABLE
    assert "different version of key 'vllm'" in refused.value.detail


@pytest.mark.asyncio
async def test_jobs_and_dead_letters_older_than_the_retention_are_deleted(link, start_worker):
    keys, client, now = QueueKeys(link), link.async_client, time.time()
    old, fresh = entry_id_at(now - 2 * RETENTION_SECONDS), entry_id_at(now - 1)
    for entry_id in (old, fresh):
        job = Job(uuid.uuid4().hex, "echo", {"prompt": "a private prompt"}, now + 30)
        await client.xadd(keys.stream, job.to_fields(), id=entry_id)
        await client.xadd(keys.dead_letters, {**job.to_fields(), "reason": "for inspection"}, id=entry_id)
    # The workers' group has read past both jobs, so no worker runs (and deletes) them:
    # only the retention can take them away.
    await client.xgroup_create(keys.stream, keys.group, id=entry_id_at(now + 600))

    await start_worker({}, retention_seconds=RETENTION_SECONDS)

    async def old_entries_gone() -> bool:
        remaining = [await client.xrange(name) for name in (keys.stream, keys.dead_letters)]
        return all(old.encode() not in [entry_id for entry_id, _ in entries] for entries in remaining)

    await wait_until(old_entries_gone, timeout=5)
    for name in (keys.stream, keys.dead_letters):
        assert [entry_id for entry_id, _ in await client.xrange(name)] == [fresh.encode()]


@pytest.mark.asyncio
async def test_the_dead_letter_stream_expires_even_with_no_worker_left(link, queue, start_worker):
    await start_worker({}, retention_seconds=RETENTION_SECONDS)
    await link.async_client.xadd(queue.keys.stream, {"what": "not a job"})  # dead-lettered at once
    await wait_until(lambda: _has_dead_letters(link, queue))
    assert 0 < await link.async_client.ttl(queue.keys.dead_letters) <= RETENTION_SECONDS


async def _has_dead_letters(link, queue) -> bool:
    return await link.async_client.xlen(queue.keys.dead_letters) > 0


def test_the_retention_cannot_be_shorter_than_a_jobs_deadline():
    assert Settings(job_timeout_seconds=300, job_retention_seconds=300).job_retention_seconds == 300
    with pytest.raises(ValueError, match="SIGNET_JOB_TIMEOUT_SECONDS"):
        Settings(job_timeout_seconds=600, job_retention_seconds=300)
