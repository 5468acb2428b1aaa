"""Each tenant's share of the job queue (SIGNET_QUEUE_TENANT_SHARE) against a real Redis,
with small in-process handlers in place of the engine; and a request's other jobs
cancelled when one of them fails."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import pytest
import pytest_asyncio

from harness.services import signer_for_test_keys
from signet.api.state import _tenant_share
from signet.engine.protocol import EngineError, EngineStatus, all_or_none
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.settings import Settings
from tests.redis.test_job_queue import depth_is, wait_until


@pytest_asyncio.fixture
async def shared_queue(link):
    """Four jobs in all, one per tenant (0.25 of 4)."""
    queue = JobQueue(link, max_jobs=4, retry_after_seconds=3, tenant_share=0.25, signer=signer_for_test_keys())
    yield queue
    await queue.aclose()


async def _held(queue: JobQueue, tenant: str | None) -> asyncio.Task:
    """A job that stays queued (no worker takes it) until the task is cancelled."""
    task = asyncio.create_task(queue.run("echo", {}, 30, tenant))
    await asyncio.sleep(0.1)
    return task


async def _cancel(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_tenant_over_its_share_gets_503_while_others_still_queue(shared_queue):
    held = await _held(shared_queue, "moderation")
    try:
        with pytest.raises(EngineError) as refused:
            await shared_queue.run("echo", {}, 30, "moderation")
        error = refused.value
        assert error.status is EngineStatus.UNAVAILABLE and error.retry_after == 3
        assert "tenant 'moderation' holds its share of the job queue: 1 of 4 jobs" in error.detail
        assert "SIGNET_QUEUE_TENANT_SHARE=0.25" in error.detail
        others = [await _held(shared_queue, "research"), await _held(shared_queue, None)]
        assert not any(task.done() for task in others)  # queued: their own shares, and no share at all
        assert await shared_queue.depth() == 3
        await _cancel(*others)
    finally:
        await _cancel(held)
    # The caller gone, its place is free again.
    assert await shared_queue.tenant_depth("moderation") == 0
    await _held(shared_queue, "moderation")  # no refusal


@pytest.mark.asyncio
async def test_a_finished_job_frees_its_place(shared_queue, start_worker):
    async def echo(job: Job) -> dict:
        return job.payload

    await start_worker({"echo": echo})
    for index in range(3):  # one at a time: each fits the share of one job
        assert await shared_queue.run("echo", {"i": index}, 10, "moderation") == {"i": index}
    assert await shared_queue.tenant_depth("moderation") == 0


@pytest.mark.asyncio
async def test_the_jobs_of_a_crashed_api_process_free_the_share_at_their_deadline(shared_queue):
    """An API process killed while it waited never removes its jobs from the tenant's set:
    adding the job without waiting for it leaves exactly what such a process leaves."""
    deadline = time.time() + 0.5
    await shared_queue._add(Job(uuid.uuid4().hex, "echo", {}, deadline), "moderation")
    assert await shared_queue.tenant_depth("moderation") == 1
    with pytest.raises(EngineError, match="holds its share"):
        await shared_queue.run("echo", {}, 30, "moderation")
    await asyncio.sleep(deadline - time.time() + 0.05)
    held = await _held(shared_queue, "moderation")  # the dead job was pruned as this one was added
    assert not held.done()
    assert await shared_queue.tenant_depth("moderation") == 1
    await _cancel(held)


@pytest.mark.asyncio
async def test_development_mode_has_the_whole_queue(shared_queue):
    held = [await _held(shared_queue, None) for _ in range(4)]
    try:
        assert not any(task.done() for task in held)
        with pytest.raises(EngineError, match="full"):
            await shared_queue.run("echo", {}, 30, None)
    finally:
        await _cancel(*held)


@pytest.mark.asyncio
async def test_a_failed_job_cancels_its_siblings_on_the_worker(queue, start_worker):
    """all_or_none, which the scores use for their concurrent engine requests: the first
    failure cancels the other jobs in Redis, and the worker running one stops it."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(job: Job) -> dict:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    async def failing(job: Job) -> dict:
        await started.wait()
        raise EngineError(EngineStatus.FAILED, "the engine failed this one")

    await start_worker({"forever": forever, "failing": failing})
    with pytest.raises(EngineError, match="failed this one"):
        await all_or_none([queue.run("forever", {}, 60), queue.run("failing", {}, 60)])
    await asyncio.wait_for(cancelled.wait(), 5)
    await wait_until(depth_is(queue, 0))


@pytest.mark.parametrize(("tenant_names", "share"), [((), 1.0), (("solo",), 1.0), (("one", "two"), 0.25)])
def test_the_share_protects_tenants_from_each_other_only(tenant_names, share):
    """With fewer than two tenants there is no one to protect: the share is the whole queue."""
    tenants = SimpleNamespace(tenants=dict.fromkeys(tenant_names)) if tenant_names else None
    settings = Settings(queue_tenant_share=0.25)
    assert _tenant_share(settings, SimpleNamespace(tenants=tenants)) == share
