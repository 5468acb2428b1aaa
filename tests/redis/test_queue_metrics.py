"""The queue's metrics against a real Redis, with in-process handlers: the wait a worker
reports for each job, the busy and idle workers its heartbeats show, and the time to first
token a worker's engine measures."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from signet.engine.protocol import CompletionDelta, EngineError, EngineStatus, SamplingOptions
from signet.queue import generation
from signet.queue.consumer import PiecePublisher
from signet.queue.jobs import Job
from signet.queue.stats import QueueStats, read_stats
from tests.redis.conftest import CLAIM_IDLE_SECONDS


def waits() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("signet_queue_job_wait_seconds_count") or 0.0
    return count, REGISTRY.get_sample_value("signet_queue_job_wait_seconds_sum") or 0.0


async def echo(job: Job) -> dict:
    return {"echo": job.payload}


async def refuse(job: Job) -> dict:
    raise EngineError(EngineStatus.INVALID, "no")


@pytest.mark.asyncio
async def test_the_wait_of_a_job_no_worker_took_at_once_is_observed(queue, start_worker):
    count, total = waits()
    caller = asyncio.create_task(queue.run("echo", {"n": 1}, timeout_seconds=10))
    await asyncio.sleep(0.4)  # no worker yet: the job waits
    await start_worker({"echo": echo}, name="late")
    assert await caller == {"echo": {"n": 1}}
    new_count, new_total = waits()
    assert new_count == count + 1
    assert 0.3 <= new_total - total < 5


@pytest.mark.asyncio
async def test_a_failed_job_reports_its_wait_too(queue, start_worker):
    await start_worker({"refuse": refuse}, name="refuser")
    count, _ = waits()
    with pytest.raises(EngineError):
        await queue.run("refuse", {}, timeout_seconds=10)
    assert waits()[0] == count + 1


@pytest.mark.asyncio
async def test_stats_show_busy_and_idle_workers_from_their_heartbeats(link, queue, start_worker):
    release = asyncio.Event()

    async def hold(job: Job) -> dict:
        await release.wait()
        return {}

    await start_worker({"hold": hold}, name="w-busy", concurrency=2)
    caller = asyncio.create_task(queue.run("hold", {}, timeout_seconds=10))
    await asyncio.sleep(0.3)  # the first worker has taken the job
    await start_worker({"hold": hold}, name="w-idle", concurrency=3)
    try:
        deadline = time.monotonic() + 5
        expected = QueueStats(depth=1, workers_busy=1, workers_idle=1, slots_busy=1, slots_idle=1 + 3)
        while (stats := await read_stats(queue, CLAIM_IDLE_SECONDS)) != expected:
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.1)
    finally:
        release.set()
        await caller


class _StreamingEngine:
    """A worker's engine stand-in: two pieces, the first with the time to first token."""

    max_model_len = 2048
    is_healthy = True

    async def stream(self, prompt_token_ids, options, watermark_key_id):
        return self._pieces()

    async def _pieces(self):
        yield CompletionDelta("Hello", [1, 2], time_to_first_token=0.125)
        yield CompletionDelta(" world", [3], "stop")


@pytest.mark.asyncio
async def test_a_workers_time_to_first_token_reaches_the_api_with_the_first_piece(link, queue, start_worker):
    handler = generation.generation_handler(_StreamingEngine(), None, "w-stream", PiecePublisher(link))
    await start_worker({generation.KIND: handler}, name="w-stream")
    engine = generation.RemoteEngine(queue, None, 2048, timeout_seconds=10)
    pieces = [delta async for delta in await engine.stream([5, 6], SamplingOptions(max_tokens=4), None)]
    assert [piece.time_to_first_token for piece in pieces] == [0.125, None]
    assert "".join(piece.text for piece in pieces) == "Hello world"
