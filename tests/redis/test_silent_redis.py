"""A Redis that goes silent without a reset (a proxy that stops forwarding): callers still
hear by their deadline, workers resume once it answers again; and a caller that leaves
cancels its job for as long as the job could still run.

The silence is real: harness/tcp_proxy.py between the code and the test Redis, on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from harness.services import redis_test_url, signer_for_test_keys
from harness.tcp_proxy import TcpProxy
from signet.engine.protocol import EngineError, EngineStatus
from signet.queue.consumer import PiecePublisher
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink
from tests.redis.test_job_queue import depth_is, echo, wait_until

DEADLINE_SECONDS = 2.0
# What a caller may wait past its deadline: the bound. The code needs about 0.75 s:
# a grace for Redis' own late answer (0.25 s) and the cancellation timing out (0.5 s).
LATE_BOUND_SECONDS = 1.0


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy.to_url(redis_test_url()) as proxy:
        yield proxy


@pytest_asyncio.fixture
async def proxied_link(proxy, redis_namespace) -> AsyncIterator[RedisLink]:
    """The fixtures' link, but through the proxy (same namespace: ``queue`` sees its keys)."""
    link = RedisLink(proxy.url(redis_test_url()), redis_namespace, timeout_seconds=0.5)
    yield link
    await link.aclose()


@pytest_asyncio.fixture
async def proxied_queue(proxied_link) -> AsyncIterator[JobQueue]:
    queue = JobQueue(proxied_link, max_jobs=10, retry_after_seconds=2, signer=signer_for_test_keys())
    yield queue
    await queue.aclose()


async def _silenced_while_waiting(proxy: TcpProxy, queue: JobQueue, caller) -> tuple[EngineError, float]:
    """Start ``caller`` (it queues one job, which no worker takes), silence Redis once the
    job is queued, and return the error it ends with and the seconds it took."""
    started = time.monotonic()
    task = asyncio.ensure_future(caller)
    await wait_until(depth_is(queue, 1), timeout=5.0)
    proxy.blackhole()
    with pytest.raises(EngineError) as failed:
        # A bound far past the deadline: a caller that hangs fails here, not the whole run.
        await asyncio.wait_for(task, DEADLINE_SECONDS + 8)
    return failed.value, time.monotonic() - started


@pytest.mark.asyncio
async def test_a_caller_hears_504_by_its_deadline_when_redis_goes_silent(proxy, queue, proxied_queue):
    error, elapsed = await _silenced_while_waiting(
        proxy, queue, proxied_queue.run("echo", {}, DEADLINE_SECONDS, tenant="t")
    )
    assert error.status is EngineStatus.TIMED_OUT and "deadline" in error.detail
    assert DEADLINE_SECONDS - 0.05 <= elapsed < DEADLINE_SECONDS + LATE_BOUND_SECONDS, elapsed


@pytest.mark.asyncio
async def test_a_streaming_caller_hears_504_by_its_deadline_when_redis_goes_silent(proxy, queue, proxied_queue):
    async def read_all() -> None:
        async for _ in await proxied_queue.stream("stream", {}, DEADLINE_SECONDS):
            pass

    error, elapsed = await _silenced_while_waiting(proxy, queue, read_all())
    assert error.status is EngineStatus.TIMED_OUT and "deadline" in error.detail
    assert DEADLINE_SECONDS - 0.05 <= elapsed < DEADLINE_SECONDS + LATE_BOUND_SECONDS, elapsed


@pytest.mark.asyncio
async def test_a_caller_still_gets_its_result_when_redis_answers_again(proxy, link, queue, proxied_queue, start_worker):
    """Its wait times out on the silent connection, and it asks again on a new one; the
    reply the silence swallowed (BLPOP removed it from Redis) is read from the stored result."""
    caller = asyncio.ensure_future(proxied_queue.run("echo", {"n": 1}, 8))
    await wait_until(depth_is(queue, 1), timeout=5.0)
    proxy.blackhole()
    await start_worker({"echo": echo})  # on the direct link: it answers at once
    await wait_until(depth_is(queue, 0), timeout=5.0)  # answered, and the answer lost on the silent connection
    proxy.heal()
    healed = time.monotonic()
    assert await asyncio.wait_for(caller, 8) == {"echo": {"n": 1}}
    # The wait in flight times out 2.5 s after it was sent (a 2 s block and the link's 0.5 s).
    assert time.monotonic() - healed < 3.5


@pytest.mark.asyncio
async def test_a_worker_resumes_taking_jobs_after_redis_was_silent(proxy, proxied_link, queue, start_worker):
    await start_worker({"echo": echo}, on=proxied_link)
    assert await queue.run("echo", {"before": True}, 5) == {"echo": {"before": True}}
    proxy.blackhole()
    # Longer than the worker's 1 s block: the answer to the read in flight is lost for
    # good, and a worker without a read timeout would wait for it forever.
    await asyncio.sleep(1.5)
    proxy.heal()
    healed = time.monotonic()
    assert await queue.run("echo", {"after": True}, 8) == {"echo": {"after": True}}
    # The lost read times out 2.5 s after it was sent (2 s block limit and the link's
    # 0.5 s), and the backoff after two such timeouts is at most 0.2 s.
    assert time.monotonic() - healed < 3.5


@pytest.mark.asyncio
async def test_a_cancellation_outlives_a_deadline_longer_than_a_minute(link, queue, start_worker):
    calls = []

    async def record(job: Job) -> dict:
        calls.append(job.payload)
        return job.payload

    caller = asyncio.ensure_future(queue.run("record", {}, 300))
    await wait_until(depth_is(queue, 1), timeout=5.0)  # no worker yet: it waits in the queue
    caller.cancel()  # the caller leaves
    await asyncio.gather(caller, return_exceptions=True)
    marks = await link.async_client.keys(queue.keys.cancelled("*"))
    assert len(marks) == 1
    assert await link.async_client.ttl(marks[0]) >= 300 - 5  # the job's remaining time, not a fixed minute
    await start_worker({"record": record})
    await wait_until(depth_is(queue, 0), timeout=5.0)
    assert calls == []  # the worker dropped it


@pytest.mark.asyncio
async def test_a_caller_that_hangs_up_stops_waiting_at_once(link, queue):
    """Cancelled at any moment of its wait, even as a command is being written (on Python
    3.11 a socket timeout's asyncio.wait_for could lose the cancellation there), the caller
    stops at once instead of waiting to its deadline. A fresh queue each time: its first
    wait also connects, the moment measured most at risk (1.5 to 4 ms in)."""
    for tenths_of_ms in range(0, 60, 3):
        caller_queue = JobQueue(link, max_jobs=100, retry_after_seconds=2, signer=signer_for_test_keys())
        try:
            caller = asyncio.ensure_future(caller_queue.run("echo", {}, 30))
            await asyncio.sleep(tenths_of_ms / 10_000)
            caller.cancel()
            ended = await asyncio.wait_for(asyncio.gather(caller, return_exceptions=True), 2)
            assert isinstance(ended[0], asyncio.CancelledError), (tenths_of_ms, ended)
        finally:
            await caller_queue.aclose()


@pytest.mark.asyncio
async def test_a_job_whose_caller_heard_503_is_not_added_when_its_command_arrives_late(
    proxy, link, queue, proxied_link, proxied_queue
):
    """A network that holds the command adding a job past the link's timeout, then delivers
    it (a partition that heals, the kernel sending it again): the caller heard 503, so the
    job must not run. The queue marks it cancelled as soon as Redis answers, and the enqueue
    script refuses a marked job. Without the mark the job was added 1.5 s after its 503."""
    await proxied_link.call_async(lambda client: client.ping())  # a connection made before the delay
    proxy.delay = 1.5  # the adding command reaches Redis 1.5 s after it was sent
    with pytest.raises(EngineError) as refused:
        await proxied_queue.run("echo", {}, 20)
    assert refused.value.status is EngineStatus.UNAVAILABLE
    proxy.delay = 0.0  # what is sent from now on arrives at once: the mark, before the late command
    await asyncio.sleep(2.0)  # the late command has arrived
    assert await queue.depth() == 0
    assert len(await link.async_client.keys(queue.keys.cancelled("*"))) == 1


@pytest.mark.asyncio
async def test_a_piece_redis_took_but_left_unanswered_is_written_again_and_read_once(proxy, proxied_link, link, queue):
    """The worker's side (the publisher) goes through the proxy, the caller's does not. A
    piece's answer comes later than the link's timeout, though Redis took the piece: the
    worker writes it again instead of giving the stream up, and the caller reads it once.
    Before, the first timeout failed the job, and the stream of a job taken over breaks (502)."""
    publisher = PiecePublisher(proxied_link, retry_seconds=10)
    stream = await queue.stream("stream", {}, 20)
    first = asyncio.ensure_future(stream.__anext__())
    await wait_until(depth_is(queue, 1))
    job = Job.from_fields((await link.async_client.xrange(queue.keys.stream))[0][1])
    deltas = queue.keys.deltas(job.request_id)
    await publisher.publish(job, "attempt-1", 1, {"index": 0})
    assert await asyncio.wait_for(first, 5) == {"index": 0}

    async def entries_are(count: int):
        return await link.async_client.xlen(deltas) == count

    proxy.delay = 0.6  # each way: past the link's 0.5 s, the piece arrives and its answer is too late
    second = asyncio.ensure_future(publisher.publish(job, "attempt-1", 2, {"index": 1}))
    await wait_until(lambda: entries_are(2))  # the first try arrived
    proxy.delay = 0.0  # the next try (one timeout after the first failed) is answered at once
    await asyncio.wait_for(second, 10)
    assert await link.async_client.xlen(deltas) >= 3  # piece 2 is there twice, or more
    await publisher.publish(job, "attempt-1", 3, {"index": 2})
    assert [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(2)] == [{"index": 1}, {"index": 2}]
    await stream.aclose()


@pytest.mark.asyncio
async def test_an_outcome_lost_on_the_way_is_written_again_and_the_job_runs_once(
    proxy, proxied_link, queue, start_worker
):
    """The worker goes through the proxy. The network drops the write of a job's outcome
    (no reset) and heals 0.7 s later: the worker writes it again, so the job is answered by
    its one run. Before, the first timeout left the job pending, and it ran a second time
    once it had been idle for claim_idle_seconds."""
    runs = []

    async def once(job: Job) -> dict:
        runs.append(job.request_id)
        proxy.blackhole()
        threading.Timer(0.7, proxy.heal).start()
        return {"runs": len(runs)}

    # Its own claim idle time: the tries of the outcome fit in it (the fixtures' 0.6 s allows one).
    await start_worker({"once": once}, on=proxied_link, claim_idle_seconds=3.0)
    assert await queue.run("once", {}, 10) == {"runs": 1}
    assert await queue.depth() == 0  # answered and acknowledged: nothing left to run again
    assert runs == [runs[0]]
